"""EfficientFormer's train-time modules (Li et al., NeurIPS 2022), with timm 1.0.31's parameter names.

A 4D partition (conv stem with ReLU, conv-BN downsampling, Meta4D blocks on NCHW maps) is followed, inside
the last stage, by ``Flat`` and a 3D partition (Meta3D blocks on (B, N, C) tokens), then a LayerNorm and the
averaged classifier + distillation heads. Forwards follow timm's op order so train logits match it to
rounding; they are plain tensor code that ``torch.fx`` traces to primitive ops the passes can fold.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn

from .layers import maybe_drop_path


class ChannelScale(nn.Module):
    """Layer scale ``x * gamma`` on the last axis (tokens) or, with ``nchw``, on axis 1; gamma is (C,)
    in both cases, as timm's ``LayerScale`` / ``LayerScale2d`` store it."""

    def __init__(self, dim: int, init_value: float, nchw: bool):
        super().__init__()
        self.nchw = nchw
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.gamma.view(1, -1, 1, 1) if self.nchw else self.gamma)


class StemConvReLU(nn.Sequential):
    """Two kxk stride-2 conv + BN + ReLU layers (width/2, then width): ``stem.conv1 .. stem.act2``."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.add_module("conv1", nn.Conv2d(in_chs, out_chs // 2, kernel, 2, pad))
        self.add_module("norm1", nn.BatchNorm2d(out_chs // 2))
        self.add_module("act1", nn.ReLU())
        self.add_module("conv2", nn.Conv2d(out_chs // 2, out_chs, kernel, 2, pad))
        self.add_module("norm2", nn.BatchNorm2d(out_chs))
        self.add_module("act2", nn.ReLU())


class ConvBNDownsample(nn.Module):
    """Strided conv (with bias) + BN between stages: ``downsample.conv``, ``downsample.norm``."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2)
        self.norm = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Flat(nn.Module):
    """The 4D -> 3D boundary: (B, C, H, W) -> (B, H*W, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class PoolMixer(nn.Module):
    """``avgpool(x) - x`` (padding excluded from the average): ``token_mixer.pool``."""

    def __init__(self, pool_size: int):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, 1, pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


class ConvMlpBN(nn.Module):
    """Meta4D's MLP: 1x1 fc1, BN, act, 1x1 fc2, BN (timm ``ConvMlpWithNorm``)."""

    def __init__(self, dim: int, hidden: int, act):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.act = act()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.norm2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.fc2(self.act(self.norm1(self.fc1(x)))))


class Meta4D(nn.Module):
    """``x + ls1 * (pool(x) - x)``, then ``x + ls2 * mlp(x)`` on NCHW maps (timm ``MetaBlock2d``)."""

    def __init__(self, dim: int, pool_size: int, mlp_ratio: float, act, layer_scale_init: float,
                 drop_path: float = 0.0):
        super().__init__()
        self.token_mixer = PoolMixer(pool_size)
        self.ls1 = ChannelScale(dim, layer_scale_init, nchw=True)
        self.mlp = ConvMlpBN(dim, int(dim * mlp_ratio), act)
        self.ls2 = ChannelScale(dim, layer_scale_init, nchw=True)
        self.drop_path = maybe_drop_path(drop_path)

    def _dp(self, y: torch.Tensor) -> torch.Tensor:
        return self.drop_path(y) if self.drop_path is not None else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._dp(self.ls1(self.token_mixer(x)))
        return x + self._dp(self.ls2(self.mlp(x)))


def relative_bias_index(resolution: Tuple[int, int]) -> torch.Tensor:
    """Index of the learned bias for every (query, key) token pair: |dy| * W + |dx| (timm's table)."""
    ys, xs = torch.meshgrid(torch.arange(resolution[0]), torch.arange(resolution[1]), indexing="ij")
    pos = torch.stack((ys.flatten(), xs.flatten()))
    rel = (pos[..., :, None] - pos[..., None, :]).abs()
    return rel[0] * resolution[1] + rel[1]


class BiasedAttention(nn.Module):
    """EfficientFormer attention on (B, N, C): heads with key dim ``key_dim``, value dim
    ``attn_ratio * key_dim``, a learned bias per head and relative offset (``attention_biases``, gathered
    through the ``attention_bias_idxs`` buffer), softmax, then ``proj``."""

    def __init__(self, dim: int, resolution: Tuple[int, int], key_dim: int = 32, num_heads: int = 8,
                 attn_ratio: float = 4.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.val_attn_dim = self.val_dim * num_heads
        self.qkv = nn.Linear(dim, key_dim * num_heads * 2 + self.val_attn_dim)
        self.proj = nn.Linear(self.val_attn_dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution[0] * resolution[1]))
        self.register_buffer("attention_bias_idxs", relative_bias_index(resolution))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x)
        qkv = qkv.reshape(B, N, self.num_heads, -1).permute(0, 2, 1, 3)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn + self.attention_biases[:, self.attention_bias_idxs]
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, self.val_attn_dim)
        return self.proj(x)


class LinearMlp(nn.Module):
    """Meta3D's MLP on tokens: Linear fc1, act, Linear fc2 (timm ``Mlp``)."""

    def __init__(self, dim: int, hidden: int, act):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Meta3D(nn.Module):
    """``x + ls1 * attn(LN(x))``, then ``x + ls2 * mlp(LN(x))`` on tokens (timm ``MetaBlock1d``)."""

    def __init__(self, dim: int, resolution: Tuple[int, int], mlp_ratio: float, act, layer_scale_init: float,
                 key_dim: int = 32, num_heads: int = 8, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixer = BiasedAttention(dim, resolution, key_dim, num_heads)
        self.ls1 = ChannelScale(dim, layer_scale_init, nchw=False)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = LinearMlp(dim, int(dim * mlp_ratio), act)
        self.ls2 = ChannelScale(dim, layer_scale_init, nchw=False)
        self.drop_path = maybe_drop_path(drop_path)

    def _dp(self, y: torch.Tensor) -> torch.Tensor:
        return self.drop_path(y) if self.drop_path is not None else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._dp(self.ls1(self.token_mixer(self.norm1(x))))
        return x + self._dp(self.ls2(self.mlp(self.norm2(x))))


class DistilledHead(nn.Module):
    """Mean over tokens, then the average of the classifier and distillation heads. It holds no
    parameters: ``head`` and ``head_dist`` live on the model (timm's top-level names), which passes them."""

    def __init__(self, drop_rate: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else None

    def forward(self, x: torch.Tensor, head: nn.Module, head_dist: nn.Module) -> torch.Tensor:
        x = x.mean(dim=1)
        if self.drop is not None:
            x = self.drop(x)
        return (head(x) + head_dist(x)) / 2


def meta_blocks(dim: int, depth: int, num_3d: int, resolution: Tuple[int, int], pool_size: int,
                mlp_ratio: float, act, layer_scale_init: float, key_dim: int, drop_rates, num_heads: int = 8) -> list:
    """A stage's block list in timm's order: Meta4D blocks, ``Flat`` where the last ``num_3d`` blocks
    begin (first when all are 3D), then Meta3D blocks. A stage without Meta3D blocks ends in a feature map
    (the distilled head flattens it itself)."""
    blocks: list = []
    if num_3d >= depth:
        blocks.append(Flat())
    for i in range(depth):
        remain = depth - i - 1
        if num_3d > remain:
            blocks.append(Meta3D(dim, resolution, mlp_ratio, act, layer_scale_init, key_dim, num_heads,
                                 drop_path=drop_rates[i]))
        else:
            blocks.append(Meta4D(dim, pool_size, mlp_ratio, act, layer_scale_init, drop_path=drop_rates[i]))
            if num_3d and num_3d == remain:
                blocks.append(Flat())
    return blocks


__all__ = ["BiasedAttention", "ChannelScale", "ConvBNDownsample", "ConvMlpBN", "DistilledHead", "Flat",
           "LinearMlp", "Meta3D", "Meta4D", "PoolMixer", "StemConvReLU", "meta_blocks", "relative_bias_index"]
