"""Compile a ``Spec`` into a trainable PyTorch model (train-time graph with all branches)."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

from .nn import (Attention, ConvFFN, ConvPatchEmbed, Mlp, MobileOneBlock, NormMixerBlock, Pooling, RepCPE,
                 RepLKPatchEmbed, RepMixerBlock)
from .nn.efficientformer import ConvBNDownsample, DistilledHead, Flat, StemConvReLU, meta_blocks
from .spec import ACTIVATIONS, MIXERS, NORMS, Spec, StageSpec, load_spec, stage_resolutions
from .spec.load import SpecSource


class Stage(nn.Module):
    """``downsample`` (optional) -> ``pos_emb`` (optional) -> ``blocks``."""

    def __init__(self, downsample: Optional[nn.Module], pos_emb: Optional[nn.Module], blocks: List[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.pos_emb = pos_emb
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        if self.pos_emb is not None:
            x = self.pos_emb(x)
        return self.blocks(x)


class ClassifierHead(nn.Module):
    """Optional norm, global average pool, optional dropout, linear (``head.fc``)."""

    def __init__(self, in_chs: int, num_classes: int, drop_rate: float, norm: Optional[nn.Module] = None):
        super().__init__()
        self.norm = norm
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else None
        self.fc = nn.Linear(in_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        x = x.mean((2, 3))
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)


class ArchNet(nn.Module):
    """A compiled spec: ``stem -> stages -> final_conv (optional) -> head``. ``spec`` is kept on the model."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        act = ACTIVATIONS[spec.activation]
        norm = NORMS[spec.norm]
        self.stem = _build_stem(spec, act)
        n = sum(spec.depths)  # linear from 0 to drop_path_rate over all blocks (timm), plain floats: meta-safe
        drop_rates = [spec.drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        stages, prev, k = [], spec.stem_width, 0
        resolutions = stage_resolutions(spec)
        for i, stage in enumerate(spec.stages):
            stages.append(_build_stage(spec, stage, prev, drop_rates[k:k + stage.depth], act, norm,
                                       resolutions[i], last=i == len(spec.stages) - 1))
            prev, k = stage.width, k + stage.depth
        self.stages = nn.Sequential(*stages)
        hd = spec.head
        if hd.type == "distilled":  # timm's EfficientFormer names: norm, head, head_dist at the top level
            self.final_conv = None
            self.norm = nn.LayerNorm(prev)
            self.head_pool = DistilledHead(spec.drop_rate)
            self.head = nn.Linear(prev, spec.num_classes)
            self.head_dist = nn.Linear(prev, spec.num_classes)
        elif hd.type == "mobileone_se":
            out = int(prev * hd.expansion)
            self.final_conv = MobileOneBlock(prev, out, hd.kernel, groups=prev, conv_branches=hd.conv_branches,
                                             scale_branch=hd.scale_branch, act=act(), se_ratio=hd.se_ratio)
            self.head = ClassifierHead(out, spec.num_classes, spec.drop_rate)
        else:
            self.final_conv = None
            self.head = ClassifierHead(prev, spec.num_classes, spec.drop_rate, norm=norm(prev))
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        if self.final_conv is not None:
            x = self.final_conv(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.head.type == "distilled":
            return self.head_pool(self.norm(self.forward_features(x)), self.head, self.head_dist)
        return self.head(self.forward_features(x))


def _build_stem(spec: Spec, act: Callable[[], nn.Module]) -> nn.Sequential:
    st, w = spec.stem, spec.stem_width
    if st.type == "conv_relu":
        return StemConvReLU(spec.in_chans, w, st.kernel)
    if st.type == "conv":
        return nn.Sequential(ConvPatchEmbed(spec.in_chans, w, st.kernel, st.stride, st.padding))
    kw = dict(conv_branches=st.conv_branches, scale_branch=st.scale_branch)
    return nn.Sequential(
        MobileOneBlock(spec.in_chans, w, st.kernel, 2, groups=1, act=act(), **kw),
        MobileOneBlock(w, w, st.kernel, 2, groups=w, act=act(), **kw),
        MobileOneBlock(w, w, 1, 1, groups=1, act=act(), **kw),
    )


def _build_ffn(stage: StageSpec, act, norm) -> nn.Module:
    hidden = int(stage.width * stage.mlp_ratio)
    if stage.ffn == "convffn":
        return ConvFFN(stage.width, hidden, stage.ffn_kernel, act)
    return Mlp(stage.width, hidden, norm, act)


def _repmixer_block(spec: Spec, s: StageSpec, dp: float, act, norm) -> nn.Module:
    return RepMixerBlock(s.width, s.mixer_kernel, _build_ffn(s, act, norm), spec.layer_scale_init, dp,
                         s.conv_branches, s.scale_branch)


def _attention_block(spec: Spec, s: StageSpec, dp: float, act, norm) -> nn.Module:
    return NormMixerBlock(s.width, Attention(s.width, s.head_dim), _build_ffn(s, act, norm), norm,
                          spec.layer_scale_init, dp)


def _pool_block(spec: Spec, s: StageSpec, dp: float, act, norm) -> nn.Module:
    return NormMixerBlock(s.width, Pooling(s.pool_size), _build_ffn(s, act, norm), norm, spec.layer_scale_init, dp)


#: block builders keyed by the spec's mixer names (``archc.spec.registry.MIXERS``)
BLOCKS: Dict[str, Callable[..., nn.Module]] = {
    "repmixer": _repmixer_block,
    "attention": _attention_block,
    "pool": _pool_block,
    "meta4d": None,  # a stage of Meta4D/Meta3D blocks, built by ``meta_blocks`` (timm's block order)
}
assert set(BLOCKS) == set(MIXERS), "every registered mixer needs a block builder"


def _build_stage(spec: Spec, s: StageSpec, in_chs: int, drop_rates: List[float], act, norm,
                 resolution=(1, 1), last: bool = False) -> Stage:
    ds = s.downsample
    downsample: Optional[nn.Module] = None
    if ds is not None and ds.type == "conv_bn":
        downsample = ConvBNDownsample(in_chs, s.width, ds.kernel, ds.stride)
    elif ds is not None and ds.type == "replk":
        downsample = RepLKPatchEmbed(in_chs, s.width, ds.kernel, ds.small_kernel, ds.stride, act,
                                     s.conv_branches, s.scale_branch)
    elif ds is not None:
        downsample = ConvPatchEmbed(in_chs, s.width, ds.kernel, ds.stride)
    pos_emb = RepCPE(s.width, s.pos_enc.kernel) if s.pos_enc is not None else None
    if s.mixer == "meta4d":
        blocks = meta_blocks(s.width, s.depth, s.meta3d, resolution, s.pool_size, s.mlp_ratio, act,
                             spec.layer_scale_init if spec.layer_scale_init is not None else 1.0, s.head_dim,
                             drop_rates, end_in_tokens=last and spec.head.type == "distilled")
    else:
        blocks = [BLOCKS[s.mixer](spec, s, dp, act, norm) for dp in drop_rates]
        if last and spec.head.type == "distilled":
            blocks.append(Flat())
    return Stage(downsample, pos_emb, blocks)


def _init_weights(m: nn.Module) -> None:
    """timm's FastViT init: truncated normal (std 0.02) for linear layers and 1x1 FFN convs."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (ConvFFN, Mlp)):
        convs = (m.conv.conv, m.fc1, m.fc2) if isinstance(m, ConvFFN) else (m.fc1, m.fc2)
        for conv in convs:
            nn.init.trunc_normal_(conv.weight, std=0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)


def build(spec: SpecSource) -> ArchNet:
    """Build the train-time model for a spec (a path, a mapping or a ``Spec``)."""
    return ArchNet(load_spec(spec))
