"""NASWOT (Mellor et al., "Neural Architecture Search without Training", ICML 2021).

Every input of a batch gets a binary code: for each activation unit, is it active? The kernel
``K[i, j] = sum over units of [c_i == c_j]`` (= units - Hamming distance) counts how many units two
inputs agree on; the score is ``log |det K|``: nets that tell inputs apart at init score higher.

"Active" for GELU (and SiLU, Hardswish): the pre-activation is > 0, the same boundary as ReLU's.
It is where GELU's gate Phi(x) passes more than half of the input (x Phi(x) > x/2), and GELU's
near-linear and near-zero regions lie on either side of it, so the code marks the same linear
regions the paper's ReLU codes do. SE's ReLU counts too. BatchNorm uses batch statistics (train
mode), as in the reference code, which never calls ``eval()``; the model is a private copy.
Inputs are random (no data here), so the batch should be large enough for K to be informative
(32 by default; K is batch x batch).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .common import ACTIVATION_LAYERS, private_copy


def naswot(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = private_copy(model).train()
    n = inputs.shape[0]
    K = torch.zeros((n, n), dtype=torch.float64)

    def hook(module, args, output):
        x = args[0].detach().reshape(n, -1)
        c = (x > 0).to(torch.float64)
        K.add_(c @ c.t()).add_((1.0 - c) @ (1.0 - c).t())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, ACTIVATION_LAYERS)]
    if not handles:
        raise ValueError("naswot: the model has no activation layers to read codes from")
    try:
        with torch.no_grad():
            net(inputs)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = np.linalg.slogdet(K.numpy())
    return float(logdet) if sign != 0 else float("-inf")
