"""The block family (``stages[i].mixer``) and the stage builder MetaFormer-style kinds share."""
from __future__ import annotations

from typing import Callable, Optional

from ..lazy import lazy_module

from .downsamples import DOWNSAMPLES, POS_ENCS
from .kind import BuildContext, CheckContext, Family

nn = lazy_module("torch.nn")  # torch and the layers load when a kind builds, not when a spec is read
layers = lazy_module("archc.nn")

#: token mixers / block kinds a stage may use (its ``mixer`` key)
MIXERS = Family("mixer", "the stage's token mixer / block kind")


def build_ffn(ctx: BuildContext, pre_norm: bool = True) -> nn.Module:
    """The stage's FFN: ``convffn`` (FastViT) or ``mlp`` (MetaFormer; with its pre-norm unless the block owns it)."""
    s = ctx.stage
    hidden = int(s.width * s.mlp_ratio)
    if s.ffn == "convffn":
        return layers.ConvFFN(s.width, hidden, s.ffn_kernel, ctx.act)
    return layers.Mlp(s.width, hidden, ctx.norm if pre_norm else None, ctx.act)


def build_part(family: Family, params, ctx: BuildContext) -> Optional[nn.Module]:
    """Build a stage's downsample or pos_enc from its kind (None stays None)."""
    if params is None:
        return None
    return family[params.type].build(BuildContext(ctx.spec, params, ctx.act, ctx.norm, ctx.in_chs, ctx.stage,
                                                  ctx.index, ctx.drop_rates))


def metaformer_stage(block: Callable[[BuildContext, float], nn.Module]) -> Callable[[BuildContext], nn.Module]:
    """A stage builder: downsample, pos_enc, then one ``block(ctx, drop_path)`` per stochastic-depth rate."""
    def build(ctx: BuildContext) -> nn.Module:
        s = ctx.stage
        downsample = build_part(DOWNSAMPLES, s.downsample, ctx)
        pos_emb = build_part(POS_ENCS, s.pos_enc, ctx)
        return layers.Stage(downsample, pos_emb, [block(ctx, dp) for dp in ctx.drop_rates])
    return build


def check_ffn(ctx: CheckContext) -> None:
    s = ctx.stage
    if int(s.width * s.mlp_ratio) < 1:
        raise ctx.fail(("mlp_ratio",), f"mlp_ratio {s.mlp_ratio} gives an FFN with 0 hidden channels")


def metaformer_estimate(stage, in_chs: int, extra_per_block: int = 0) -> int:
    """Rough parameters of a MetaFormer-style stage (FFN, depthwise kernels, transition)."""
    hidden = int(stage.width * stage.mlp_ratio)
    per_block = 2 * stage.width * hidden + stage.width * (stage.ffn_kernel ** 2 + 16) + extra_per_block
    return stage.depth * per_block + in_chs * stage.width * 2
