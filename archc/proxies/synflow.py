"""SynFlow (Tanaka et al., NeurIPS 2020), as a zero-cost proxy (Abdelfattah et al., ICLR 2021).

``R = 1^T (prod_l |W_l|) 1``: the network with every parameter replaced by its absolute value is run
on an all-ones input, ``R`` is the sum of its outputs, and the score is ``sum_theta |theta * dR/dtheta|``
over conv and linear weights. Reported as ``log`` (natural) of that sum because the raw score spans
hundreds of orders of magnitude across depths.

Choices, following the reference (``foresight/pruners/measures/synflow.py``):
- BatchNorm is removed (the reference measures with ``bn=False``): with batch statistics on a
  constant input BN would zero the signal, and eval-mode BN with arbitrary statistics is data, not
  architecture.
- float64 throughout, as the reference advises: the product of |W| grows geometrically with depth
  and width (log score ~26-29 for the shipped specs; float32 ends at ~88). If even float64
  overflows, the proxy raises ``FloatingPointError`` rather than return ``inf``, which would rank
  every such net equal.
- GELU networks: with non-negative weights and inputs every pre-activation is >= 0, where GELU is
  close to the identity, so the linearised network is the same idea as in the ReLU paper.
- Attention: the attention probabilities are held constant (computed from detached q and k with an
  explicit, max-subtracted softmax), so the flow runs through the values, where attention is linear;
  the qkv weights are still scored, through their value third. Synflow has no linear form of a
  softmax, and in the all-positive network the logits reach ~1e17. There torch's fused
  ``scaled_dot_product_attention`` backward is wrong by many orders of magnitude (measured on SA12's
  last block: a value gradient of 7e14 for an output gradient of 9, where a row-stochastic map can
  amplify at most 64-fold), which gave MA36 a score of ~e^363 at 256x256 and NaN at 384x384.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .common import private_copy, remove_batchnorm_, weight_layers


class _ConstantAttentionProbs(TorchFunctionMode):
    """Within the mode, attention is ``softmax(q k^T * scale).detach() @ v``, computed explicitly."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            if len(args) > 3 or kwargs.get("attn_mask") is not None or kwargs.get("is_causal"):
                raise NotImplementedError("synflow: masked or causal attention is not supported")
            scale = kwargs.get("scale") or q.shape[-1] ** -0.5
            probs = torch.softmax((q.detach() @ k.detach().transpose(-2, -1)) * scale, dim=-1)
            return probs @ v
        return func(*args, **kwargs)


def synflow(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = remove_batchnorm_(private_copy(model)).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    for p in net.parameters():
        p.requires_grad_(True)
    ones = torch.ones((1,) + tuple(inputs.shape[1:]), dtype=torch.float64)
    with _ConstantAttentionProbs():
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
