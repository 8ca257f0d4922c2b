"""jacob_cov (Mellor et al., "Neural Architecture Search without Training", arXiv v1, 2020).

For each input of the batch, the gradient of the summed outputs with respect to that input
(``J_i = d(sum_k f_k(x_i)) / dx_i``); the score is ``-sum_j [log(v_j + k) + 1 / (v_j + k)]`` over the
eigenvalues ``v_j`` of the correlation matrix of the flattened ``J_i`` (k = 1e-5): nets whose
input-gradients are less correlated across inputs score higher (the best possible is -batch).
BatchNorm with batch statistics (train mode, as the reference) on a private copy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .common import private_copy

K_EPS = 1e-5


def jacob_cov(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = private_copy(model).train()
    x = inputs.detach().clone().requires_grad_(True)
    y = net(x)
    y.backward(torch.ones_like(y))
    jac = x.grad.detach().reshape(x.shape[0], -1).double().numpy()
    corr = np.corrcoef(jac)
    if not np.all(np.isfinite(corr)):
        return float("-inf")  # a constant input-gradient: no information at all
    v = np.clip(np.linalg.eigvalsh(corr), 0.0, None)  # round-off can make a zero eigenvalue -1e-17
    return float(-np.sum(np.log(v + K_EPS) + 1.0 / (v + K_EPS)))
