"""Closed registries of the names a spec may use. YAML never names a Python import path."""
from __future__ import annotations

from typing import Callable, Dict

import torch.nn as nn

from ..blocks import MIXERS  # noqa: F401  (token mixers / block kinds: a plug-in family, see archc.blocks)

#: activations, by the name the YAML uses
ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
}


def _group_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels)


#: norms for attention/pooling/mlp pre-norms; ``groupnorm`` is GroupNorm(1, C) as in PoolFormer
NORMS: Dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    "groupnorm": _group_norm,
}
