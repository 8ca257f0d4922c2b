"""EfficientFormer's kinds (Li et al., NeurIPS 2022; timm 1.0.31 names): the ``conv_relu`` stem, the ``conv_bn``
downsample, the ``meta4d`` block kind (Meta4D blocks, and in the last stage ``meta3d`` trailing Meta3D blocks
after a ``Flat``: EfficientFormer's MetaPath) and the ``distilled`` head (LayerNorm on tokens, mean, the average
of ``head`` and ``head_dist``, both top-level modules as in timm)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..lazy import lazy_module

if TYPE_CHECKING:
    import torch

from ..nn.geometry import conv_out
from .downsamples import DOWNSAMPLES
from .geometry import stage_resolutions
from .heads import HEADS
from .kind import MAX_DEPTH, MAX_KERNEL, MAX_WIDTH, BuildContext, CheckContext, Kind, opt, type_field
from .stage import MIXERS, build_part
from .stems import STEMS

nn = lazy_module("torch.nn")  # torch and the layers load when a kind builds, not when a spec is read
layers = lazy_module("archc.nn")
ef_layers = lazy_module("archc.nn.efficientformer")


# ------------------------------------------------------------------------------------------------ stem
@dataclass(frozen=True)
class ConvReLUStem:
    """EfficientFormer: two kxk stride-2 conv + BN + ReLU (width/2, then width), stride 4 (``stem.conv1`` ..)."""

    type: str = type_field("conv_relu")
    width: Optional[int] = opt(None, "output channels (null: stages[0].width)", min=1, max=MAX_WIDTH)
    kernel: int = opt(3, "kernel of both convs", min=1, max=MAX_KERNEL, odd=True)


def _twice_s2(p, size: int) -> int:
    for _ in range(2):
        size = conv_out(size, p.kernel, 2, p.kernel // 2)
    return size


STEMS.register(Kind("conv_relu", ConvReLUStem.__doc__, ConvReLUStem,
                    lambda ctx: ef_layers.StemConvReLU(ctx.in_chs, ctx.spec.stem_width, ctx.params.kernel),
                    abbrev="CR",
                    out_size=_twice_s2))


# ------------------------------------------------------------------------------------------ downsample
@dataclass(frozen=True)
class ConvBNDownsampleParams:
    """EfficientFormer: dense strided conv (with bias) + BN (``downsample.conv``, ``downsample.norm``)."""

    type: str = type_field("conv_bn")
    kernel: int = opt(3, "kernel size", min=1, max=MAX_KERNEL, odd=True)
    stride: int = opt(2, "spatial reduction", min=1, max=8)


DOWNSAMPLES.register(Kind("conv_bn", ConvBNDownsampleParams.__doc__, ConvBNDownsampleParams,
                          lambda ctx: ef_layers.ConvBNDownsample(ctx.in_chs, ctx.stage.width, ctx.params.kernel,
                                                                 ctx.params.stride),
                          search_keys={"downsample_kernel": "kernel"}, abbrev="CB",
                          out_size=lambda p, s: conv_out(s, p.kernel, p.stride, p.kernel // 2)))


# ------------------------------------------------------------------------------------------- block kind
@dataclass(frozen=True)
class Meta4DParams:
    """EfficientFormer: Meta4D blocks ``x + ls*(avgpool(x) - x)``, ``x + ls*ConvBN-MLP(x)``; in the last stage
    the last ``meta3d`` blocks are Meta3D (LayerNorm, attention with a learned bias, Linear MLP) on tokens."""

    type: str = type_field("meta4d")
    pool_size: int = opt(3, "average-pooling window (flat stage key: pool_size)", min=1, max=MAX_KERNEL, odd=True)
    meta3d: int = opt(0, "last stage only: how many of the last blocks are Meta3D (flat stage key: meta3d)",
                      min=0, max=MAX_DEPTH)
    key_dim: int = opt(32, "Meta3D attention: query/key channels per head", min=1, max=1024)
    num_heads: int = opt(8, "Meta3D attention: heads", min=1, max=64)


def _meta4d_stage(ctx: BuildContext) -> nn.Module:
    s, p, spec = ctx.stage, ctx.params, ctx.spec
    downsample = build_part(DOWNSAMPLES, s.downsample, ctx)
    ls = spec.layer_scale_init if spec.layer_scale_init is not None else 1.0
    blocks = ef_layers.meta_blocks(s.width, s.depth, p.meta3d, stage_resolutions(spec)[ctx.index], p.pool_size,
                                   s.mlp_ratio, ctx.act, ls, p.key_dim, list(ctx.drop_rates), p.num_heads)
    return layers.Stage(downsample, None, blocks)


def _check_meta4d(ctx: CheckContext) -> None:
    s, p, spec = ctx.stage, ctx.params, ctx.spec
    last = len(spec.stages) - 1
    if p.meta3d > s.depth:
        raise ctx.fail(("mixer", "meta3d"), f"meta3d {p.meta3d} exceeds depth {s.depth}; valid: 0 to {s.depth}")
    if p.meta3d and ctx.index != last:
        raise ctx.fail(("mixer", "meta3d"), f"meta3d {p.meta3d} on stage {ctx.index}: only the last stage may "
                                            f"turn into tokens (stage {last})")
    if p.meta3d and spec.head.type != "distilled":
        raise ctx.fail(("mixer", "meta3d"), f"head '{spec.head.type}' reads a feature map but this stage ends "
                                            "in tokens (meta3d > 0); use head: distilled")
    if int(s.width * s.mlp_ratio) < 1:
        raise ctx.fail(("mlp_ratio",), f"mlp_ratio {s.mlp_ratio} gives an MLP with 0 hidden channels")


def _meta4d_estimate(s, in_chs: int) -> int:
    hidden = int(s.width * s.mlp_ratio)
    return s.depth * (2 * s.width * hidden + 8 * s.width) + s.mixer.meta3d * 2560 * s.width + in_chs * s.width * 9


MIXERS.register(Kind("meta4d", Meta4DParams.__doc__, Meta4DParams, _meta4d_stage, _check_meta4d,
                     search_keys={"pool_size": "pool_size", "meta3d": "meta3d"}, abbrev="EF",
                     estimate=_meta4d_estimate, sized_to_input=lambda params: params.meta3d > 0,
                     unused_keys=("ffn", "ffn_kernel")))  # its MLP is Conv-BN 1x1 layers: no kind, no kernel


# ------------------------------------------------------------------------------------------------ head
@dataclass(frozen=True)
class DistilledHeadParams:
    """EfficientFormer: LayerNorm on tokens (``norm``), mean over tokens, ``(head(x) + head_dist(x)) / 2``."""

    type: str = type_field("distilled")


def _distilled(ctx: BuildContext):
    c, n = ctx.in_chs, ctx.spec.num_classes
    return None, None, {"norm": nn.LayerNorm(c), "head": nn.Linear(c, n), "head_dist": nn.Linear(c, n),
                        "head_pool": ef_layers.DistilledHead(ctx.spec.drop_rate)}


def _distilled_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    last = model.spec.stages[-1].mixer
    # only Meta3D blocks end a stage in tokens; any other last stage (all-Meta4D included) hands over a feature
    # map, as every stage promises (``stage_resolutions``), and the head turns it into tokens
    if last.type != "meta4d" or not last.meta3d:
        x = x.flatten(2).transpose(1, 2)
    return model.head_pool(model.norm(x), model.head, model.head_dist)


HEADS.register(Kind("distilled", DistilledHeadParams.__doc__, DistilledHeadParams, _distilled, abbrev="DH",
                    forward=_distilled_forward))

__all__ = ["ConvBNDownsampleParams", "ConvReLUStem", "DistilledHeadParams", "Meta4DParams"]
