"""The weight algebra of structural reparameterization, as small pure tensor functions.

Every function works on plain tensors (no modules, no graphs) and in float64, so folding many
layers does not accumulate float32 rounding; callers cast back. A conv is described by
``ConvW(weight, bias, stride, padding, groups)``; only odd, centred kernels are combined.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class ConvW:
    """Weights and geometry of a 2-D convolution (dilation 1). ``weight``: (out, in/groups, k, k)."""

    weight: Tensor
    bias: Tensor
    stride: int
    padding: int
    groups: int

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups


def bn_affine(mean: Tensor, var: Tensor, gamma: Optional[Tensor], beta: Optional[Tensor], eps: float
              ) -> Tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``y = scale * x + shift`` per channel (detached: folding is not training)."""
    mean, var = mean.detach(), var.detach()
    gamma = gamma.detach() if gamma is not None else None
    beta = beta.detach() if beta is not None else None
    scale = (gamma.double() if gamma is not None else torch.ones_like(var, dtype=torch.float64)) / torch.sqrt(
        var.double() + eps)
    shift = (beta.double() if beta is not None else torch.zeros_like(mean, dtype=torch.float64)) - mean.double() * scale
    return scale, shift


def fold_affine_after_conv(conv: ConvW, scale: Tensor, shift: Tensor) -> ConvW:
    """``scale * conv(x) + shift`` as one conv: BN (or a layer scale) after a conv."""
    w = conv.weight.double() * scale.double().reshape(-1, 1, 1, 1)
    b = conv.bias.double() * scale.double() + shift.double()
    return replace(conv, weight=w, bias=b)


def fold_affine_before_linear(weight: Tensor, bias: Optional[Tensor], scale: Tensor, shift: Tensor
                              ) -> Tuple[Tensor, Tensor]:
    """``W (scale * x + shift) + b`` as one linear map (BN before a linear or an unpadded 1x1 conv).

    ``weight`` is (out, in) or (out, in, 1, 1). Exact only when nothing pads between the two.
    """
    w2 = weight.double().reshape(weight.shape[0], -1)
    b = (bias.double() if bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)) + w2 @ shift.double()
    w = (w2 * scale.double().reshape(1, -1)).reshape(weight.shape)
    return w, b


def fold_scale_into_rows(weight: Tensor, bias: Optional[Tensor], scale: Tensor) -> Tuple[Tensor, Tensor]:
    """``scale * (W x + b)``: a per-output-channel scale (layer scale) folded into a linear/conv."""
    s = scale.double().reshape(-1)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    b = (bias.double() if bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)) * s
    return weight.double() * s.reshape(shape), b


def identity_conv(channels: int, kernel: int, groups: int, stride: int = 1) -> ConvW:
    """The identity map as a conv of the given geometry (1 at the kernel centre of each channel)."""
    per_group = channels // groups
    w = torch.zeros(channels, per_group, kernel, kernel, dtype=torch.float64)
    c = kernel // 2
    idx = torch.arange(channels)
    w[idx, idx % per_group, c, c] = 1.0
    return ConvW(w, torch.zeros(channels, dtype=torch.float64), stride, c, groups)


def affine_as_conv(scale: Tensor, shift: Tensor, kernel: int, groups: int) -> ConvW:
    """A per-channel affine map (eval BN on a branch of its own) as a conv of the given geometry."""
    ident = identity_conv(scale.numel(), kernel, groups)
    return fold_affine_after_conv(ident, scale, shift)


def pad_kernel(conv: ConvW, kernel: int) -> ConvW:
    """Zero-pad a centred kernel to ``kernel`` x ``kernel`` (and its padding to match)."""
    extra = (kernel - conv.kernel) // 2
    if extra == 0:
        return conv
    w = torch.nn.functional.pad(conv.weight, [extra] * 4)
    return replace(conv, weight=w, padding=conv.padding + extra)


def regroup(conv: ConvW, groups: int) -> ConvW:
    """Express a grouped conv with fewer groups (block-diagonal weight); ``conv.groups % groups == 0``."""
    if conv.groups == groups:
        return conv
    out_c, in_per, k, _ = conv.weight.shape
    in_c = in_per * conv.groups
    new_in_per = in_c // groups
    w = torch.zeros(out_c, new_in_per, k, k, dtype=conv.weight.dtype)
    out_per_old = out_c // conv.groups
    for g in range(conv.groups):
        rows = slice(g * out_per_old, (g + 1) * out_per_old)
        new_group = (g * out_per_old) // (out_c // groups)
        col0 = g * in_per - new_group * new_in_per
        w[rows, col0:col0 + in_per] = conv.weight[rows]
    return replace(conv, weight=w, groups=groups)


def aligned(a: ConvW, b: ConvW) -> bool:
    """Can ``a`` and ``b`` (same input) be summed into one conv exactly?

    Same stride and output width, odd kernels centred the same way (padding - k//2 equal), and group
    structures where one refines the other.
    """
    if a.stride != b.stride or a.out_channels != b.out_channels or a.in_channels != b.in_channels:
        return False
    if a.kernel % 2 == 0 or b.kernel % 2 == 0:
        return False
    if a.padding - a.kernel // 2 != b.padding - b.kernel // 2:
        return False
    g, G = sorted((a.groups, b.groups))
    return G % g == 0


def add_convs(a: ConvW, b: ConvW, sign: float = 1.0) -> ConvW:
    """``a(x) + sign * b(x)`` as one conv (requires ``aligned(a, b)``)."""
    k = max(a.kernel, b.kernel)
    g = min(a.groups, b.groups)
    a2, b2 = regroup(pad_kernel(a, k), g), regroup(pad_kernel(b, k), g)
    return ConvW(a2.weight.double() + sign * b2.weight.double(), a2.bias.double() + sign * b2.bias.double(),
                 a.stride, a2.padding, g)
