"""Small train-time layers shared by the blocks. Parameter names follow timm's FastViT.

All forwards are plain tensor code that ``torch.fx`` traces down to primitive ops
(conv, batch_norm, linear, add, sub, mul, ...) so the reparameterization rules can see them.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .geometry import conv_padding


class ConvBN(nn.Module):
    """Conv (no bias) followed by BatchNorm: one train-time branch (timm ``ConvNormAct``, no act)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, conv_padding(kernel, stride),
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class LayerScale2d(nn.Module):
    """Per-channel scale ``x * gamma`` with gamma of shape (C, 1, 1)."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Scale(nn.Module):
    """Per-channel scale ``x * scale`` with ``scale`` of shape (C,) (timm MetaFormer's ``Scale``)."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.reshape(-1, 1, 1)


class DropPath(nn.Module):
    """Stochastic depth per sample; the identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class SqueezeExcite(nn.Module):
    """Squeeze-excite with ReLU and a sigmoid gate (timm ``SEModule``: ``fc1``/``fc2``)."""

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        reduced = max(1, int(channels * ratio + 0.5))
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(self.act(self.fc1(s)))
        return x * self.gate(s)


def maybe_drop_path(p: float) -> Optional[DropPath]:
    return DropPath(p) if p > 0.0 else None


def maybe_scale(dim: int, init_value: Optional[float]) -> Optional[Scale]:
    return Scale(dim, init_value) if init_value is not None else None


def maybe_layer_scale(dim: int, init_value: Optional[float]) -> Optional[LayerScale2d]:
    return LayerScale2d(dim, init_value) if init_value is not None else None
