"""grad_norm (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021).

The sum over conv/linear layers of the Euclidean norm of the layer's weight gradient, for one
cross-entropy backward pass on a batch at init; BatchNorm with batch statistics (train mode, the
reference's ``bn=True``) on a private copy of the model.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import private_copy, weight_layers


def grad_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = private_copy(model).train()
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(inputs), targets).backward()
    return float(sum(float(m.weight.grad.norm()) for _, m in weight_layers(net) if m.weight.grad is not None))
