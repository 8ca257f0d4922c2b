"""SynFlow (Tanaka et al., NeurIPS 2020), as a zero-cost proxy (Abdelfattah et al., ICLR 2021).

``R = 1^T (prod_l |W_l|) 1``: the network with every parameter replaced by its absolute value is run
on an all-ones input, ``R`` is the sum of its outputs, and the score is ``sum_theta |theta * dR/dtheta|``
over conv and linear weights. Reported as ``log`` (natural) of that sum because the raw score spans
hundreds of orders of magnitude across depths.

Choices, following the reference (``foresight/pruners/measures/synflow.py``):
- BatchNorm is removed (the reference measures with ``bn=False``): with batch statistics on a
  constant input BN would zero the signal, and eval-mode BN with arbitrary statistics is data, not
  architecture.
- float64 throughout (float32 overflows for the deeper variants: log R reaches ~360 for MA36 at
  256x256, float32 ends at ~88); if even float64 overflows the proxy raises ``FloatingPointError``
  rather than return ``inf``, which would rank every such net equal.
- GELU networks: with non-negative weights and inputs every pre-activation is >= 0, where GELU is
  close to the identity, so the linearised network is the same idea as in the ReLU paper.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .common import private_copy, remove_batchnorm_, weight_layers


def synflow(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = remove_batchnorm_(private_copy(model)).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    for p in net.parameters():
        p.requires_grad_(True)
    ones = torch.ones((1,) + tuple(inputs.shape[1:]), dtype=torch.float64)
    out = net(ones)
    r = out.sum()
    if not torch.isfinite(r):
        raise FloatingPointError("synflow: the linearised network overflows float64 on this input size")
    r.backward()
    total = 0.0
    for _, m in weight_layers(net):
        if m.weight.grad is not None:
            total += float((m.weight.detach() * m.weight.grad).abs().sum())
    if not math.isfinite(total) or total <= 0:
        raise FloatingPointError(f"synflow: score is {total} (overflow or no gradient)")
    return math.log(total)
