"""The spec language's data model: frozen dataclasses whose field metadata *is* the schema.

Field metadata keys (read by the validator and the JSON Schema writer, so they cannot drift apart):
``help`` (one line for editors), ``min``/``max`` (inclusive bounds), ``odd`` (kernel sizes),
``choices`` (closed set of names, usually a registry).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Tuple

from .registry import ACTIVATIONS, MIXERS, NORMS


def opt(default, help: str, **constraints):
    """A dataclass field with a default, a help line and validation constraints."""
    return field(default=default, metadata={"help": help, **constraints})


def req(help: str, **constraints):
    """A required dataclass field with a help line and validation constraints."""
    return field(metadata={"help": help, "required": True, **constraints})


MAX_KERNEL = 31
MAX_WIDTH = 8192
MAX_DEPTH = 128
MAX_RES = 4096


@dataclass(frozen=True)
class DownsampleSpec:
    """Patch embedding at the start of a stage (stride-2 reduction and width change)."""

    type: Literal["replk", "conv", "conv_bn"] = opt(
        "replk", "replk: FastViT depthwise large-kernel conv with a small parallel branch, then a 1x1 "
        "MobileOne block; conv: one dense conv (PoolFormer/MetaFormer); conv_bn: dense conv + BN "
        "(EfficientFormer)", choices=("replk", "conv", "conv_bn"))
    kernel: int = opt(7, "kernel size of the (large) conv", min=1, max=MAX_KERNEL, odd=True)
    small_kernel: Optional[int] = opt(
        3, "replk only: kernel of the parallel small branch (null: none); must not exceed kernel",
        min=1, max=MAX_KERNEL, odd=True)
    stride: int = opt(2, "spatial reduction", min=1, max=8)


@dataclass(frozen=True)
class PosEncSpec:
    """Conditional positional encoding placed after the stage's downsample."""

    type: Literal["repcpe"] = opt("repcpe", "repcpe: x + depthwise conv(x), folds to one conv",
                                  choices=("repcpe",))
    kernel: int = opt(7, "depthwise kernel size", min=1, max=MAX_KERNEL, odd=True)


@dataclass(frozen=True)
class StageSpec:
    """One stage: optional downsample, optional positional encoding, then ``depth`` blocks."""

    depth: int = req("number of blocks", min=1, max=MAX_DEPTH)
    width: int = req("channels in this stage", min=1, max=MAX_WIDTH)
    mixer: str = req("token mixer", choices=tuple(MIXERS))
    mlp_ratio: float = opt(4.0, "FFN hidden width / stage width", min=0.0625, max=16.0)
    mixer_kernel: int = opt(3, "repmixer: depthwise kernel of the mixer", min=1, max=MAX_KERNEL, odd=True)
    pool_size: int = opt(3, "pool: average-pooling window", min=1, max=MAX_KERNEL, odd=True)
    ffn: Literal["convffn", "mlp"] = opt(
        "convffn", "convffn: depthwise conv + BN, fc1, act, fc2 (FastViT); mlp: norm, fc1, act, fc2 (MetaFormer)",
        choices=("convffn", "mlp"))
    ffn_kernel: int = opt(7, "convffn: depthwise kernel size", min=1, max=MAX_KERNEL, odd=True)
    head_dim: int = opt(32, "attention: channels per head (width must be a multiple)", min=1, max=1024)
    conv_branches: int = opt(1, "train-time kxk conv branches of the stage's MobileOne blocks", min=0, max=16)
    scale_branch: bool = opt(True, "train-time 1x1 scale branch of the stage's MobileOne blocks")
    downsample: Optional[DownsampleSpec] = opt(
        None, "patch embedding at the stage start (null: none; stage 0 has none unless set)")
    pos_enc: Optional[PosEncSpec] = opt(None, "positional encoding after the downsample (null: none)")
    meta3d: int = opt(0, "meta4d, last stage only: how many of the last blocks are Meta3D (EfficientFormer's "
                      "MetaPath; a Flat turns the map into tokens before them)", min=0, max=MAX_DEPTH)


@dataclass(frozen=True)
class StemSpec:
    """The input stem: reduces resolution by 4 before stage 0."""

    type: Literal["mobileone", "conv", "conv_relu"] = opt(
        "mobileone", "mobileone: FastViT's three MobileOne blocks (kxk s2, depthwise kxk s2, 1x1); "
        "conv: one dense conv (PoolFormer); conv_relu: two kxk s2 conv + BN + ReLU (EfficientFormer)",
        choices=("mobileone", "conv", "conv_relu"))
    width: Optional[int] = opt(None, "output channels (null: stages[0].width)", min=1, max=MAX_WIDTH)
    kernel: int = opt(3, "kernel size (mobileone: of the two stride-2 blocks)", min=1, max=MAX_KERNEL, odd=True)
    stride: int = opt(4, "conv only: stride (mobileone is always 2 x 2)", min=1, max=16)
    padding: Optional[int] = opt(None, "conv only: padding (null: (stride - 1 + kernel - 1) // 2)", min=0, max=MAX_KERNEL)
    conv_branches: int = opt(1, "mobileone: train-time kxk conv branches per block", min=1, max=16)
    scale_branch: bool = opt(True, "mobileone: train-time 1x1 scale branch")


@dataclass(frozen=True)
class HeadSpec:
    """The classifier head."""

    type: Literal["mobileone_se", "norm_linear", "distilled"] = opt(
        "mobileone_se", "mobileone_se: depthwise MobileOne block C->expansion*C with squeeze-excite, "
        "global pool, linear (FastViT); norm_linear: norm, global pool, linear (PoolFormer); distilled: "
        "LayerNorm on tokens, mean, average of a classifier and a distillation Linear (EfficientFormer)",
        choices=("mobileone_se", "norm_linear", "distilled"))
    expansion: float = opt(2.0, "mobileone_se: output width / last stage width (integer multiple)",
                           min=1.0, max=16.0)
    kernel: int = opt(3, "mobileone_se: depthwise kernel", min=1, max=MAX_KERNEL, odd=True)
    se_ratio: float = opt(0.0625, "mobileone_se: squeeze-excite reduction ratio", min=0.001, max=1.0)
    conv_branches: int = opt(1, "mobileone_se: train-time kxk conv branches", min=1, max=16)
    scale_branch: bool = opt(True, "mobileone_se: train-time 1x1 scale branch")


@dataclass(frozen=True)
class Spec:
    """A whole architecture. ``source`` records where it was loaded from (for messages only)."""

    name: str = req("model name")
    stages: Tuple[StageSpec, ...] = req("the stages, first to last")
    num_classes: int = opt(1000, "classifier outputs", min=1, max=100_000)
    in_chans: int = opt(3, "input channels", min=1, max=64)
    input_size: Tuple[int, int] = opt((256, 256), "input resolution: an int or [height, width]",
                                      min=8, max=MAX_RES)
    activation: str = opt("gelu", "activation in blocks, stem and head", choices=tuple(ACTIVATIONS))
    norm: str = opt("batchnorm", "norm before attention, pooling and mlp FFNs (MobileOne and RepMixer "
                    "branches always use BatchNorm)", choices=tuple(NORMS))
    layer_scale_init: Optional[float] = opt(1e-5, "initial layer scale (null: no layer scale)",
                                            min=0.0, max=10.0)
    drop_path_rate: float = opt(0.0, "stochastic depth at the last block, linear from 0", min=0.0, max=1.0)
    drop_rate: float = opt(0.0, "dropout before the classifier", min=0.0, max=1.0)
    stem: StemSpec = opt(StemSpec(), "the input stem")
    head: HeadSpec = opt(HeadSpec(), "the classifier head")
    source: Optional[str] = field(default=None, compare=False, metadata={"internal": True})

    @property
    def stem_width(self) -> int:
        return self.stem.width if self.stem.width is not None else self.stages[0].width

    @property
    def depths(self) -> Tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def widths(self) -> Tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def mixers(self) -> Tuple[str, ...]:
        return tuple(s.mixer for s in self.stages)
