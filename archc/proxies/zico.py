"""ZiCo (Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients", ICLR 2023).

For every conv/linear layer, the gradients of its weights are collected over several mini-batches;
per weight, ``mean|g| / std(g)`` across the batches; the layer contributes ``log`` of the sum over
its weights (weights whose std is 0 are skipped); the score is the sum over layers. High mean and
low variance of gradients predict fast convergence, and the per-layer logs reward depth.

Follows the authors' ``compute_zico.py``, with one correction: gradients are zeroed between
mini-batches (the reference accumulates them, so its "per-batch" gradients are running sums, not
the per-batch gradients the paper defines). The batch is split into ``splits`` (2, as in the
paper's setting) mini-batches; BatchNorm uses batch statistics (train mode) on a private copy.
"""
from __future__ import annotations

import math
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import private_copy, weight_layers


def zico(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, splits: int = 2) -> float:
    if inputs.shape[0] < splits:
        raise ValueError(f"zico: batch {inputs.shape[0]} is smaller than the {splits} mini-batches it needs")
    net = private_copy(model).train()
    layers = list(weight_layers(net))
    grads: Dict[str, List[torch.Tensor]] = {name: [] for name, _ in layers}
    for x, y in zip(inputs.chunk(splits), targets.chunk(splits)):
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        for name, m in layers:
            if m.weight.grad is not None:
                grads[name].append(m.weight.grad.detach().reshape(-1).double().clone())
    score = 0.0
    for name, gs in grads.items():
        if len(gs) < 2:
            continue
        g = torch.stack(gs)
        std = g.std(dim=0, unbiased=False)  # numpy's np.std, as the reference
        keep = std > 0
        s = float((g.abs().mean(dim=0)[keep] / std[keep]).sum())
        if s > 0:
            score += math.log(s)
    return score
