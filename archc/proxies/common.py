"""Shared plumbing for the proxies: a private copy of the model, its weight layers, BN removal."""
from __future__ import annotations

import copy
from typing import Iterator, Tuple

import torch.nn as nn

#: the layers whose weights the proxies' papers score (all use Conv2d and Linear)
WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)
#: activation modules NASWOT reads binary codes from (archc's ACTIVATIONS plus SE's ReLU)
ACTIVATION_LAYERS = (nn.ReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.ReLU6)


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy: proxies change modes, weights (synflow) and BN statistics, never the caller's model."""
    return copy.deepcopy(model)


def weight_layers(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    for name, m in model.named_modules():
        if isinstance(m, WEIGHT_LAYERS):
            yield name, m


def remove_batchnorm_(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm by the identity, in place (synflow's reference runs its nets with ``bn=False``)."""
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(m, child_name, nn.Identity())
    return model
