"""Closed registries of the names a spec may use. YAML never names a Python import path.

The values are factories of torch layers that import torch only when called (a spec is read without torch)."""
from __future__ import annotations

from typing import Callable, Dict

from ..blocks import MIXERS  # noqa: F401  (token mixers / block kinds: a plug-in family, see archc.blocks)
from ..lazy import lazy_module

nn = lazy_module("torch.nn")

#: activations, by the name the YAML uses: () -> module
ACTIVATIONS: Dict[str, Callable[[], "nn.Module"]] = {
    "gelu": lambda: nn.GELU(),
    "relu": lambda: nn.ReLU(),
    "silu": lambda: nn.SiLU(),
    "hardswish": lambda: nn.Hardswish(),
}

#: norms for attention/pooling/mlp pre-norms, (channels) -> module; ``groupnorm`` is GroupNorm(1, C) as in PoolFormer
NORMS: Dict[str, Callable[[int], "nn.Module"]] = {
    "batchnorm": lambda channels: nn.BatchNorm2d(channels),
    "groupnorm": lambda channels: nn.GroupNorm(1, channels),
}
