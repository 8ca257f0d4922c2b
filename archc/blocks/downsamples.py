"""Downsample (patch embedding) and positional-encoding kinds: what sits before a stage's blocks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..lazy import lazy_module

from ..nn.geometry import conv_out, conv_padding
from .kind import MAX_KERNEL, BuildContext, CheckContext, Family, Kind, opt, type_field

nn = lazy_module("torch.nn")  # torch and the layers load when a kind builds, not when a spec is read
layers = lazy_module("archc.nn")

DOWNSAMPLES = Family("downsample", "patch embedding at the start of a stage", default="replk")
POS_ENCS = Family("pos_enc", "positional encoding after the stage's downsample", default="repcpe")


def _strided_out(p, size: int) -> int:
    pad = getattr(p, "padding", None)
    return conv_out(size, p.kernel, p.stride, conv_padding(p.kernel, p.stride) if pad is None else pad)


@dataclass(frozen=True)
class ReplkDownsample:
    """FastViT: depthwise large-kernel conv (C -> k*C) with a small parallel branch, then a 1x1 MobileOne block."""

    type: str = type_field("replk")
    kernel: int = opt(7, "kernel size of the large conv", min=1, max=MAX_KERNEL, odd=True)
    small_kernel: Optional[int] = opt(3, "kernel of the parallel small branch (null: none); must not exceed kernel",
                                      min=1, max=MAX_KERNEL, odd=True)
    stride: int = opt(2, "spatial reduction", min=1, max=8)
    se_ratio: Optional[float] = opt(None, "squeeze-excite after the large-kernel conv (null: none; MobileCLIP "
                                          "MCi: 0.25)", min=0.001, max=1.0)
    act: bool = opt(False, "activation after the large-kernel conv (MobileCLIP MCi: true)")


def _replk(ctx: BuildContext) -> nn.Module:
    p, s = ctx.params, ctx.stage
    return layers.RepLKPatchEmbed(ctx.in_chs, s.width, p.kernel, p.small_kernel, p.stride, ctx.act, s.conv_branches,
                                  s.scale_branch, p.se_ratio, p.act)


def _check_replk(ctx: CheckContext) -> None:
    p, s = ctx.params, ctx.stage
    if s.width % ctx.in_chs:
        raise ctx.fail(("width",), f"width {s.width} must be a multiple of the incoming width {ctx.in_chs}: "
                                   f"the replk patch embedding is a grouped conv with groups={ctx.in_chs}; "
                                   "use downsample.type: conv for arbitrary widths")
    if p.small_kernel is not None and p.small_kernel > p.kernel:
        raise ctx.fail(("downsample", "small_kernel"),
                       f"small kernel {p.small_kernel} exceeds kernel {p.kernel}; it must fit inside it to fold")


DOWNSAMPLES.register(Kind("replk", ReplkDownsample.__doc__, ReplkDownsample, _replk, _check_replk,
                          search_keys={"downsample_kernel": "kernel"}, abbrev="LK", out_size=_strided_out,
                          whole_width_multiple=True))


@dataclass(frozen=True)
class ConvDownsample:
    """One dense strided conv with bias (PoolFormer/MetaFormer; timm name ``downsample.conv``)."""

    type: str = type_field("conv")
    kernel: int = opt(3, "kernel size", min=1, max=MAX_KERNEL, odd=True)
    stride: int = opt(2, "spatial reduction", min=1, max=8)
    padding: Optional[int] = opt(None, "padding (null: (stride - 1 + kernel - 1) // 2)", min=0, max=MAX_KERNEL)


def _conv(ctx: BuildContext) -> nn.Module:
    p = ctx.params
    return layers.ConvPatchEmbed(ctx.in_chs, ctx.stage.width, p.kernel, p.stride, p.padding)


DOWNSAMPLES.register(Kind("conv", ConvDownsample.__doc__, ConvDownsample, _conv,
                          search_keys={"downsample_kernel": "kernel"}, abbrev="C", out_size=_strided_out))


@dataclass(frozen=True)
class RepCPEPosEnc:
    """RepCPE: ``x + depthwise conv(x)``, folds to one conv."""

    type: str = type_field("repcpe")
    kernel: int = opt(7, "depthwise kernel size", min=1, max=MAX_KERNEL, odd=True)


POS_ENCS.register(Kind("repcpe", RepCPEPosEnc.__doc__, RepCPEPosEnc,
                       lambda ctx: layers.RepCPE(ctx.stage.width, ctx.params.kernel),
                       search_keys={"pos_enc_kernel": "kernel"}, abbrev="CPE"))
