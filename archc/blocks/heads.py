"""Head kinds: what turns the last feature map into logits. ``build`` returns ``(final_conv or None, head)``."""
from __future__ import annotations

from dataclasses import dataclass

from ..lazy import lazy_module

from .kind import MAX_KERNEL, BuildContext, CheckContext, Family, Kind, opt, type_field

nn = lazy_module("torch.nn")  # torch and the layers load when a kind builds, not when a spec is read
layers = lazy_module("archc.nn")

HEADS = Family("head", "the classifier head", default="mobileone_se")


@dataclass(frozen=True)
class MobileOneSEHead:
    """FastViT: depthwise MobileOne block C -> expansion*C with squeeze-excite (``final_conv``), global pool, linear."""

    type: str = type_field("mobileone_se")
    expansion: float = opt(2.0, "output width / last stage width (integer multiple)", min=1.0, max=16.0)
    kernel: int = opt(3, "depthwise kernel", min=1, max=MAX_KERNEL, odd=True)
    se_ratio: float = opt(0.0625, "squeeze-excite reduction ratio", min=0.001, max=1.0)
    conv_branches: int = opt(1, "train-time kxk conv branches", min=1, max=16)
    scale_branch: bool = opt(True, "train-time 1x1 scale branch")


def _mobileone_se(ctx: BuildContext):
    p, c = ctx.params, ctx.in_chs
    out = int(c * p.expansion)
    final = layers.MobileOneBlock(c, out, p.kernel, groups=c, conv_branches=p.conv_branches,
                                  scale_branch=p.scale_branch, act=ctx.act(), se_ratio=p.se_ratio)
    return final, layers.ClassifierHead(out, ctx.spec.num_classes, ctx.spec.drop_rate)


def _check_mobileone_se(ctx: CheckContext) -> None:
    c = ctx.in_chs
    out = c * ctx.params.expansion
    if out != int(out) or int(out) % c:
        raise ctx.fail(("expansion",), f"expansion {ctx.params.expansion} must be a whole number: the head is "
                                       "a depthwise conv whose output width is a multiple of its input")


HEADS.register(Kind("mobileone_se", MobileOneSEHead.__doc__, MobileOneSEHead, _mobileone_se, _check_mobileone_se,
                    abbrev="M1SE"))


@dataclass(frozen=True)
class NormLinearHead:
    """The spec's norm, global pool, linear."""

    type: str = type_field("norm_linear")


HEADS.register(Kind("norm_linear", NormLinearHead.__doc__, NormLinearHead,
                    lambda ctx: (None, layers.ClassifierHead(ctx.in_chs, ctx.spec.num_classes, ctx.spec.drop_rate,
                                                      norm=ctx.norm(ctx.in_chs))), abbrev="NL"))


@dataclass(frozen=True)
class PoolNormLinearHead:
    """Global pool, LayerNorm of the pooled vector, linear (timm MetaFormer/PoolFormer: ``head.norm``, ``head.fc``)."""

    type: str = type_field("pool_norm_linear")
    eps: float = opt(1e-6, "LayerNorm epsilon", min=0.0, max=1.0)


HEADS.register(Kind("pool_norm_linear", PoolNormLinearHead.__doc__, PoolNormLinearHead,
                    lambda ctx: (None, layers.ClassifierHead(ctx.in_chs, ctx.spec.num_classes, ctx.spec.drop_rate,
                                                      norm=nn.LayerNorm(ctx.in_chs, eps=ctx.params.eps),
                                                      norm_after_pool=True)), abbrev="PNL"))


@dataclass(frozen=True)
class LinearHead:
    """Global pool, linear (MobileOne: ``head.fc``)."""

    type: str = type_field("linear")


HEADS.register(Kind("linear", LinearHead.__doc__, LinearHead,
                    lambda ctx: (None, layers.ClassifierHead(ctx.in_chs, ctx.spec.num_classes, ctx.spec.drop_rate)),
                    abbrev="L"))
