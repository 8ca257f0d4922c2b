"""Helpers for numerical checks: make BatchNorm statistics and layer scales non-trivial.

Fresh BatchNorm layers are identities (mean 0, var 1, weight 1, bias 0) and fresh layer scales are
tiny, which hides folding bugs. Every equivalence check in archc randomises them first.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .nn.layers import LayerScale2d


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """In place: random BN running stats/affine, random layer scales, random biases; returns ``model``."""
    gen = torch.Generator().manual_seed(seed)

    def rand(shape, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(shape, generator=gen) * (hi - lo) + lo

    for name, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
            m.running_var.copy_(rand(m.running_var.shape, 0.5, 2.0))
            if m.affine:
                m.weight.copy_(rand(m.weight.shape, 0.5, 1.5))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
        elif isinstance(m, nn.GroupNorm) and m.affine:
            m.weight.copy_(rand(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
        elif isinstance(m, LayerScale2d):
            m.gamma.copy_(rand(m.gamma.shape, 0.2, 1.0) * torch.sign(torch.randn(m.gamma.shape, generator=gen)))
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model
