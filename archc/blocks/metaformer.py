"""MetaFormer-style block kinds: a token mixer and an FFN with residuals (FastViT, PoolFormer)."""
from __future__ import annotations

from dataclasses import dataclass

from ..lazy import lazy_module

from .kind import MAX_KERNEL, BuildContext, CheckContext, Kind, opt, type_field
from .stage import MIXERS, build_ffn, check_ffn, metaformer_estimate, metaformer_stage

nn = lazy_module("torch.nn")  # torch and the layers load when a kind builds, not when a spec is read
layers = lazy_module("archc.nn")


@dataclass(frozen=True)
class RepMixerParams:
    """RepMixer: ``x + ls*(dwconv-branches(x) - BN(x))``; folds to one depthwise conv (FastViT)."""

    type: str = type_field("repmixer")
    kernel: int = opt(3, "depthwise kernel of the mixer (flat stage key: mixer_kernel)", min=1, max=MAX_KERNEL,
                      odd=True)


def _repmixer_block(ctx: BuildContext, dp: float) -> nn.Module:
    s, spec = ctx.stage, ctx.spec
    return layers.RepMixerBlock(s.width, ctx.params.kernel, build_ffn(ctx), spec.layer_scale_init, dp,
                                s.conv_branches, s.scale_branch)


MIXERS.register(Kind("repmixer", RepMixerParams.__doc__, RepMixerParams, metaformer_stage(_repmixer_block),
                     check_ffn, search_keys={"mixer_kernel": "kernel"}, abbrev="RM",
                     estimate=metaformer_estimate))


@dataclass(frozen=True)
class AttentionParams:
    """Multi-head self-attention with a norm before it (the spec's norm; BatchNorm by default) (FastViT)."""

    type: str = type_field("attention")
    head_dim: int = opt(32, "channels per head (width must be a multiple; flat stage key: head_dim)", min=1,
                        max=1024)


def _attention_block(ctx: BuildContext, dp: float) -> nn.Module:
    s = ctx.stage
    return layers.NormMixerBlock(s.width, layers.Attention(s.width, ctx.params.head_dim), build_ffn(ctx), ctx.norm,
                                 ctx.spec.layer_scale_init, dp)


def _check_attention(ctx: CheckContext) -> None:
    s, hd = ctx.stage, ctx.params.head_dim
    if s.width % hd:
        raise ctx.fail(("width",), f"width {s.width} is not divisible by head_dim {hd} "
                                   f"(attention needs whole heads); valid widths are multiples of {hd}")
    check_ffn(ctx)


MIXERS.register(Kind("attention", AttentionParams.__doc__, AttentionParams, metaformer_stage(_attention_block),
                     _check_attention, search_keys={"head_dim": "head_dim"}, abbrev="SA", attention=True,
                     estimate=lambda s, c: metaformer_estimate(s, c, 4 * s.width * s.width)))


@dataclass(frozen=True)
class PoolParams:
    """PoolFormer pooling, timm MetaFormer block: ``x + ls1*(avgpool(norm1(x)) - norm1(x))``, then
    ``x + ls2*mlp(norm2(x))`` (``ffn: mlp``) or ``x + ls2*convffn(x)``."""

    type: str = type_field("pool")
    pool_size: int = opt(3, "average-pooling window (flat stage key: pool_size)", min=1, max=MAX_KERNEL, odd=True)


def _pool_block(ctx: BuildContext, dp: float) -> nn.Module:
    s = ctx.stage
    mlp = s.ffn == "mlp"
    return layers.MetaFormerBlock(s.width, layers.Pooling(ctx.params.pool_size), build_ffn(ctx, pre_norm=False),
                                  ctx.norm, mlp, ctx.spec.layer_scale_init, dp)


MIXERS.register(Kind("pool", PoolParams.__doc__, PoolParams, metaformer_stage(_pool_block), check_ffn,
                     search_keys={"pool_size": "pool_size"}, abbrev="PO", estimate=metaformer_estimate))
