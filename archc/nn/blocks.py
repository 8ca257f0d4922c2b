"""Token mixers, FFNs, MetaFormer blocks, positional encoding and patch embeddings.

Names follow timm's FastViT (``token_mixer.{norm,mixer}``, ``mlp.conv``, ``layer_scale.gamma``, ...)
so timm checkpoints load without renaming.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .geometry import conv_padding
from .layers import ConvBN, maybe_drop_path, maybe_layer_scale, maybe_scale
from .mobileone import LargeKernelConv, MobileOneBlock

NormFactory = Callable[[int], nn.Module]
ActFactory = Callable[[], nn.Module]


def _residual(x: torch.Tensor, y: torch.Tensor, layer_scale, drop_path) -> torch.Tensor:
    if layer_scale is not None:
        y = layer_scale(y)
    if drop_path is not None:
        y = drop_path(y)
    return x + y


# ------------------------------------------------------------------------------------------ FFNs
class ConvFFN(nn.Module):
    """FastViT ConvFFN: depthwise kxk conv + BN, fc1 (1x1), act, fc2 (1x1)."""

    def __init__(self, dim: int, hidden: int, kernel: int, act: ActFactory):
        super().__init__()
        self.conv = ConvBN(dim, dim, kernel, groups=dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.conv(x))))


class Mlp(nn.Module):
    """MetaFormer MLP: (pre-norm,) fc1 (1x1), act, fc2 (1x1). Without ``norm`` the block owns the pre-norm
    (timm's MetaFormer: ``norm2`` outside ``mlp``)."""

    def __init__(self, dim: int, hidden: int, norm: Optional[NormFactory], act: ActFactory):
        super().__init__()
        self.norm = norm(dim) if norm is not None else None
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        return self.fc2(self.act(self.fc1(x)))


# ---------------------------------------------------------------------------------- token mixers
class RepMixer(nn.Module):
    """``x + ls * (mixer(x) - norm(x))``; mixer and norm are depthwise MobileOne blocks (norm: BN only)."""

    def __init__(self, dim: int, kernel: int, layer_scale_init: Optional[float], conv_branches: int,
                 scale_branch: bool):
        super().__init__()
        self.norm = MobileOneBlock(dim, dim, kernel, groups=dim, conv_branches=0, scale_branch=False)
        self.mixer = MobileOneBlock(dim, dim, kernel, groups=dim, conv_branches=conv_branches,
                                    scale_branch=scale_branch)
        self.layer_scale = maybe_layer_scale(dim, layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mixer(x) - self.norm(x)
        if self.layer_scale is not None:
            y = self.layer_scale(y)
        return x + y


class Attention(nn.Module):
    """Multi-head self-attention over the H*W tokens of an NCHW map (qkv without bias)."""

    def __init__(self, dim: int, head_dim: int):
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = dim // head_dim
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        qkv = self.qkv(tokens)
        qkv = qkv.reshape(qkv.shape[0], qkv.shape[1], 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, N, head_dim)
        out = self.proj(out.transpose(1, 2).flatten(2))  # (B, N, C)
        return out.transpose(1, 2).reshape(x.shape)


class Pooling(nn.Module):
    """PoolFormer token mixer: ``avgpool(x) - x`` (padding excluded from the average)."""

    def __init__(self, pool_size: int):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, 1, pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


# ---------------------------------------------------------------------------------------- blocks
class RepMixerBlock(nn.Module):
    """``x = repmixer(x); x = x + ls * ffn(x)``."""

    def __init__(self, dim: int, mixer_kernel: int, ffn: nn.Module, layer_scale_init: Optional[float],
                 drop_path: float, conv_branches: int, scale_branch: bool):
        super().__init__()
        self.token_mixer = RepMixer(dim, mixer_kernel, layer_scale_init, conv_branches, scale_branch)
        self.mlp = ffn
        self.layer_scale = maybe_layer_scale(dim, layer_scale_init)
        self.drop_path = maybe_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return _residual(x, self.mlp(x), self.layer_scale, self.drop_path)


class NormMixerBlock(nn.Module):
    """``x = x + ls1 * mixer(norm(x)); x = x + ls2 * ffn(x)`` (attention and pooling blocks)."""

    def __init__(self, dim: int, token_mixer: nn.Module, ffn: nn.Module, norm: NormFactory,
                 layer_scale_init: Optional[float], drop_path: float):
        super().__init__()
        self.norm = norm(dim)
        self.token_mixer = token_mixer
        self.layer_scale_1 = maybe_layer_scale(dim, layer_scale_init)
        self.drop_path1 = maybe_drop_path(drop_path)
        self.mlp = ffn
        self.layer_scale_2 = maybe_layer_scale(dim, layer_scale_init)
        self.drop_path2 = maybe_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _residual(x, self.token_mixer(self.norm(x)), self.layer_scale_1, self.drop_path1)
        return _residual(x, self.mlp(x), self.layer_scale_2, self.drop_path2)


class MetaFormerBlock(nn.Module):
    """timm's MetaFormer block (PoolFormer v1 names): ``x = x + ls1 * mixer(norm1(x));
    x = x + ls2 * mlp(norm2(x))`` with (C,) layer scales; ``norm2`` is absent for a ConvFFN (own BN)."""

    def __init__(self, dim: int, token_mixer: nn.Module, ffn: nn.Module, norm: NormFactory, pre_norm_ffn: bool,
                 layer_scale_init: Optional[float], drop_path: float):
        super().__init__()
        self.norm1 = norm(dim)
        self.token_mixer = token_mixer
        self.drop_path1 = maybe_drop_path(drop_path)
        self.layer_scale1 = maybe_scale(dim, layer_scale_init)
        self.norm2 = norm(dim) if pre_norm_ffn else None
        self.mlp = ffn
        self.drop_path2 = maybe_drop_path(drop_path)
        self.layer_scale2 = maybe_scale(dim, layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _residual(x, self.token_mixer(self.norm1(x)), self.layer_scale1, self.drop_path1)
        y = self.norm2(x) if self.norm2 is not None else x
        return _residual(x, self.mlp(y), self.layer_scale2, self.drop_path2)


# ------------------------------------------------------------------- positional enc., embeddings
class RepCPE(nn.Module):
    """Conditional positional encoding ``x + dwconv(x)``; folds to one depthwise conv."""

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.pos_enc = nn.Conv2d(dim, dim, kernel, 1, kernel // 2, groups=dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pos_enc(x) + x


class RepLKPatchEmbed(nn.Module):
    """FastViT patch embedding: large-kernel depthwise conv (C -> C_out, stride s), then a 1x1 MobileOne block."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, small_kernel: Optional[int], stride: int,
                 act: ActFactory, conv_branches: int, scale_branch: bool, se_ratio: Optional[float] = None,
                 lk_act: bool = False):
        super().__init__()
        self.proj = nn.Sequential(
            LargeKernelConv(in_chs, out_chs, kernel, stride, small_kernel, se_ratio, act() if lk_act else None),
            MobileOneBlock(out_chs, out_chs, 1, conv_branches=max(conv_branches, 1),
                           scale_branch=scale_branch, act=act()),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ConvPatchEmbed(nn.Module):
    """MetaFormer patch embedding (stem and downsample): one dense strided conv with bias (timm: ``conv``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, padding: Optional[int] = None):
        super().__init__()
        pad = conv_padding(kernel, stride) if padding is None else padding
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
