"""Helpers for numerical checks: make BatchNorm statistics and layer scales non-trivial.

Fresh BatchNorm layers are identities (mean 0, var 1, weight 1, bias 0) and fresh layer scales are
tiny, which hides folding bugs. Every equivalence check in archc randomises them first.
"""
from __future__ import annotations

import math
import zlib
from typing import Dict, Mapping, Tuple

import torch
import torch.nn as nn

from .nn.layers import LayerScale2d, Scale


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
        elif isinstance(m, Scale):
            m.scale.copy_(rand(m.scale.shape, 0.2, 1.0) * torch.sign(torch.randn(m.scale.shape, generator=gen)))
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            m.weight.copy_(rand(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model


def _key_generator(seed: int, key: str) -> torch.Generator:
    """A generator seeded by (seed, key) alone, so a tensor's values do not depend on key order or model code."""
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2 ** 63))


@torch.no_grad()
def seeded_state_dict(state: Mapping[str, torch.Tensor], seed: int = 0) -> Dict[str, torch.Tensor]:
    """A random state dict with the keys, shapes and dtypes of ``state``, identical wherever it is made.

    Each tensor is drawn from a generator seeded by ``(seed, key)`` and a rule chosen by its key and shape,
    so timm's model (in the anchor venv) and archc's build of the same architecture get bit-equal weights
    without shipping them: reference files store only keys, shapes and logits. Non-trivial on purpose:
    BatchNorm statistics and affines, LayerNorm/GroupNorm affines, layer scales and attention biases are
    all random, so no norm is an identity and no residual branch is negligible. Integer tensors (index
    buffers, ``num_batches_tracked``) keep the model's own values: they are structure, not weights.
    """
    out: Dict[str, torch.Tensor] = {}
    for key, ref in state.items():
        if not torch.is_floating_point(ref):
            out[key] = ref.clone()
            continue
        gen = _key_generator(seed, key)
        shape, leaf = tuple(ref.shape), key.rsplit(".", 1)[-1]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(shape, generator=gen) * (hi - lo) + lo

        if leaf == "running_var":
            t = uniform(0.5, 2.0)
        elif leaf == "running_mean":
            t = torch.randn(shape, generator=gen) * 0.5
        elif "layer_scale" in key or leaf in ("gamma", "scale"):
            t = uniform(0.2, 1.0) * torch.sign(torch.randn(shape, generator=gen))
        elif "attention_bias" in key:
            t = torch.randn(shape, generator=gen) * 0.5
        elif len(shape) <= 1 and leaf == "weight":  # norm affine
            t = uniform(0.5, 1.5)
        elif len(shape) <= 1:  # biases (norm, conv, linear)
            t = torch.randn(shape, generator=gen) * 0.2
        else:  # conv / linear weights: variance-preserving so deep nets' logits stay O(1)
            fan_in = max(1, ref[0].numel())
            t = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        out[key] = t.to(ref.dtype)
    return out


def seeded_input(shape: Tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """The fixed standard-normal input that reference logits are computed on."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
