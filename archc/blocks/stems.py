"""Stem kinds: what turns the image into the first feature map."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..lazy import lazy_module

from ..nn.geometry import conv_out, conv_padding
from .kind import MAX_KERNEL, MAX_WIDTH, BuildContext, Family, Kind, opt, type_field

nn = lazy_module("torch.nn")  # torch and the layers load when a kind builds, not when a spec is read
layers = lazy_module("archc.nn")

STEMS = Family("stem", "the input stem", default="mobileone")
_WIDTH_HELP = "output channels (null: stages[0].width)"


@dataclass(frozen=True)
class MobileOneStem:
    """FastViT's stem: three MobileOne blocks (kxk s2, depthwise kxk s2, 1x1), stride 4."""

    type: str = type_field("mobileone")
    width: Optional[int] = opt(None, _WIDTH_HELP, min=1, max=MAX_WIDTH)
    kernel: int = opt(3, "kernel of the two stride-2 blocks", min=1, max=MAX_KERNEL, odd=True)
    conv_branches: int = opt(1, "train-time kxk conv branches per block", min=1, max=16)
    scale_branch: bool = opt(True, "train-time 1x1 scale branch")


def _mobileone_stem(ctx: BuildContext) -> nn.Module:
    p, w = ctx.params, ctx.spec.stem_width
    kw = dict(conv_branches=p.conv_branches, scale_branch=p.scale_branch)
    return nn.Sequential(
        layers.MobileOneBlock(ctx.in_chs, w, p.kernel, 2, groups=1, act=ctx.act(), **kw),
        layers.MobileOneBlock(w, w, p.kernel, 2, groups=w, act=ctx.act(), **kw),
        layers.MobileOneBlock(w, w, 1, 1, groups=1, act=ctx.act(), **kw),
    )


def _twice_s2(p, size: int) -> int:
    for _ in range(2):
        size = conv_out(size, p.kernel, 2, conv_padding(p.kernel, 2))
    return size


STEMS.register(Kind("mobileone", MobileOneStem.__doc__, MobileOneStem, _mobileone_stem, abbrev="M1x3",
                    out_size=_twice_s2))


@dataclass(frozen=True)
class ConvStem:
    """One dense strided conv with bias (PoolFormer/MetaFormer; timm name ``stem.conv``)."""

    type: str = type_field("conv")
    width: Optional[int] = opt(None, _WIDTH_HELP, min=1, max=MAX_WIDTH)
    kernel: int = opt(3, "kernel size", min=1, max=MAX_KERNEL, odd=True)
    stride: int = opt(4, "stride", min=1, max=16)
    padding: Optional[int] = opt(None, "padding (null: (stride - 1 + kernel - 1) // 2)", min=0, max=MAX_KERNEL)


def _conv_stem(ctx: BuildContext) -> nn.Module:
    p = ctx.params
    return layers.ConvPatchEmbed(ctx.in_chs, ctx.spec.stem_width, p.kernel, p.stride, p.padding)


def _conv_out(p, size: int) -> int:
    return conv_out(size, p.kernel, p.stride, p.padding if p.padding is not None else conv_padding(p.kernel, p.stride))


STEMS.register(Kind("conv", ConvStem.__doc__, ConvStem, _conv_stem, abbrev="C", out_size=_conv_out))


@dataclass(frozen=True)
class MobileOneBlockStem:
    """One MobileOne block, kxk with stride (MobileOne S0-S4; timm name ``stem.conv_kxk``)."""

    type: str = type_field("mobileone_block")
    width: Optional[int] = opt(None, _WIDTH_HELP, min=1, max=MAX_WIDTH)
    kernel: int = opt(3, "kernel size", min=1, max=MAX_KERNEL, odd=True)
    stride: int = opt(2, "stride", min=1, max=16)
    conv_branches: int = opt(1, "train-time kxk conv branches", min=1, max=16)
    scale_branch: bool = opt(True, "train-time 1x1 scale branch")
    quant_friendly: bool = opt(False, "QARepVGG-style block: BatchNorm on the kxk branches and after the sum only",
                               since="0.2")


def _mobileone_block_stem(ctx: BuildContext) -> nn.Module:
    p = ctx.params
    return layers.MobileOneBlock(ctx.in_chs, ctx.spec.stem_width, p.kernel, p.stride, groups=1,
                                 conv_branches=p.conv_branches, scale_branch=p.scale_branch, act=ctx.act(),
                                 quant_friendly=p.quant_friendly)


STEMS.register(Kind("mobileone_block", MobileOneBlockStem.__doc__, MobileOneBlockStem, _mobileone_block_stem,
                    abbrev="M1", out_size=lambda p, s: conv_out(s, p.kernel, p.stride, conv_padding(p.kernel, p.stride))))
