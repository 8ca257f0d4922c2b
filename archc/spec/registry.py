"""Closed registries of the names a spec may use. YAML never names a Python import path."""
from __future__ import annotations

from typing import Callable, Dict

import torch.nn as nn

#: token mixers a stage may use (the block builders are keyed by these names in ``archc.builder``)
MIXERS: Dict[str, str] = {
    "repmixer": "RepMixer: x + ls*(dwconv-branches(x) - BN(x)); folds to one depthwise conv",
    "attention": "multi-head self-attention with a norm before it (BatchNorm by default)",
    "pool": "PoolFormer pooling: x + ls*(avgpool(norm(x)) - norm(x))",
    "meta4d": "EfficientFormer Meta4D: x + ls*(avgpool(x) - x), Conv-BN MLP; the stage's last `meta3d` blocks "
              "are Meta3D (LayerNorm, attention with a learned bias, Linear MLP)",
}

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
