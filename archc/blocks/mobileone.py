"""MobileOne's plain block kind: no residuals, no FFN; each block is a depthwise kxk then a pointwise 1x1
MobileOne block (timm ``mobileone_s*``: flat ``stages.S.J`` names, J = 2*block + {0: depthwise, 1: pointwise})."""
from __future__ import annotations

from dataclasses import dataclass

from ..lazy import lazy_module

from ..nn.geometry import conv_out, conv_padding
from .kind import MAX_KERNEL, BuildContext, CheckContext, Kind, opt, type_field
from .stage import MIXERS

nn = lazy_module("torch.nn")  # torch and the layers load when a kind builds, not when a spec is read
layers = lazy_module("archc.nn")


@dataclass(frozen=True)
class MobileOneParams:
    """MobileOne (Vasu et al. 2023): depthwise kxk + pointwise 1x1 MobileOne blocks, the first with a stride;
    ``conv_branches``/``scale_branch`` of the stage set the train-time branches; no residual, no FFN."""

    type: str = type_field("mobileone")
    kernel: int = opt(3, "depthwise kernel (flat stage key: mobileone_kernel)", min=1, max=MAX_KERNEL, odd=True)
    stride: int = opt(2, "stride of the stage's first depthwise block (the stage's downsampling)", min=1, max=8)
    se_blocks: int = opt(0, "squeeze-excite in the last N blocks (MobileOne-S4: 5 in stage 3, 1 in stage 4; "
                            "flat stage key: se_blocks)", min=0, max=128)
    se_ratio: float = opt(0.0625, "squeeze-excite reduction ratio", min=0.001, max=1.0)
    quant_friendly: bool = opt(False, "QARepVGG-style blocks: BatchNorm only on the kxk branches and one after the "
                               "sum (bare 1x1 and identity), so the folded convs keep int8-friendly ranges",
                               since="0.2")


def _mobileone_stage(ctx: BuildContext) -> nn.Module:
    p, s = ctx.params, ctx.stage
    mods, prev = [], ctx.in_chs
    kw = dict(conv_branches=s.conv_branches, scale_branch=s.scale_branch, se_name="attn",
              identity_last=True, quant_friendly=p.quant_friendly)  # timm ByobNet's names and branch order
    for j in range(s.depth):
        se = p.se_ratio if j >= s.depth - p.se_blocks else None
        mods.append(layers.MobileOneBlock(prev, prev, p.kernel, p.stride if j == 0 else 1, groups=prev,
                                          act=ctx.act(), se_ratio=se, **kw))
        mods.append(layers.MobileOneBlock(prev, s.width, 1, 1, groups=1, act=ctx.act(), se_ratio=se, **kw))
        prev = s.width
    return nn.Sequential(*mods)


def _check(ctx: CheckContext) -> None:
    p, s = ctx.params, ctx.stage
    if s.downsample is not None:
        raise ctx.fail(("downsample",), "a mobileone stage downsamples in its first block (mixer.stride); "
                                        "remove the downsample")
    if s.pos_enc is not None:
        raise ctx.fail(("pos_enc",), "a mobileone stage takes no positional encoding; remove pos_enc")
    if s.conv_branches < 1:
        raise ctx.fail(("conv_branches",), "mobileone blocks need at least 1 conv branch (the 1x1 pointwise "
                                           "block has no scale branch); valid: 1 to 16")
    if p.se_blocks > s.depth:
        raise ctx.fail(("mixer", "se_blocks"), f"se_blocks {p.se_blocks} exceeds the stage depth {s.depth}")


def _estimate(s, in_chs: int) -> int:
    return s.depth * (in_chs * 16 + in_chs * s.width * 2) + s.width * s.width * 2 * s.depth


MIXERS.register(Kind("mobileone", MobileOneParams.__doc__, MobileOneParams, _mobileone_stage, _check,
                     search_keys={"mobileone_kernel": "kernel", "se_blocks": "se_blocks"}, abbrev="MO",
                     out_size=lambda p, n: conv_out(n, p.kernel, p.stride, conv_padding(p.kernel, p.stride)),
                     own_downsample=True, estimate=_estimate, unused_keys=("mlp_ratio", "ffn", "ffn_kernel")))
