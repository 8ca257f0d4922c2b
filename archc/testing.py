"""Helpers for numerical checks: make BatchNorm statistics and layer scales non-trivial, and compare with
stored references at a tolerance set by the computation's own float32 rounding.

Fresh BatchNorm layers are identities (mean 0, var 1, weight 1, bias 0) and fresh layer scales are
tiny, which hides folding bugs. Every equivalence check in archc randomises them first.

Stored reference logits were computed on some CPU; float32 on another CPU (AVX-512 vs AVX2 kernels, other
summation orders) rounds differently, by an amount no fixed tolerance knows: MCi0's float32 logits differ
from their own float64 value by 2.5e-6 of max|logit|, EfficientFormer-L1's by 4e-7. So a reference check
runs the model in float64 and measures the float32 rounding error of the same computation on this machine
(``float32_error``); that error is the tolerance.
"""
from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .nn.layers import LayerScale2d, Scale


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """In place: random BN running stats/affine, random layer scales, random biases; returns ``model``."""
    gen = torch.Generator().manual_seed(seed)

    def rand(shape, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(shape, generator=gen) * (hi - lo) + lo

    for name, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
            m.running_var.copy_(rand(m.running_var.shape, 0.5, 2.0))
            if m.affine:
                m.weight.copy_(rand(m.weight.shape, 0.5, 1.5))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
        elif isinstance(m, nn.GroupNorm) and m.affine:
            m.weight.copy_(rand(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
        elif isinstance(m, LayerScale2d):
            m.gamma.copy_(rand(m.gamma.shape, 0.2, 1.0) * torch.sign(torch.randn(m.gamma.shape, generator=gen)))
        elif isinstance(m, Scale):
            m.scale.copy_(rand(m.scale.shape, 0.2, 1.0) * torch.sign(torch.randn(m.scale.shape, generator=gen)))
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            m.weight.copy_(rand(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model


def _key_generator(seed: int, key: str) -> torch.Generator:
    """A generator seeded by (seed, key) alone, so a tensor's values do not depend on key order or model code."""
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2 ** 63))


@torch.no_grad()
def seeded_state_dict(state: Mapping[str, torch.Tensor], seed: int = 0) -> Dict[str, torch.Tensor]:
    """A random state dict with the keys, shapes and dtypes of ``state``, identical wherever it is made.

    Each tensor is drawn from a generator seeded by ``(seed, key)`` and a rule chosen by its key and shape,
    so timm's model (in the anchor venv) and archc's build of the same architecture get bit-equal weights
    without shipping them: reference files store only keys, shapes and logits. Non-trivial on purpose:
    BatchNorm statistics and affines, LayerNorm/GroupNorm affines, layer scales and attention biases are
    all random, so no norm is an identity and no residual branch is negligible. Integer tensors (index
    buffers, ``num_batches_tracked``) keep the model's own values: they are structure, not weights.
    """
    out: Dict[str, torch.Tensor] = {}
    for key, ref in state.items():
        if not torch.is_floating_point(ref):
            out[key] = ref.clone()
            continue
        gen = _key_generator(seed, key)
        shape, leaf = tuple(ref.shape), key.rsplit(".", 1)[-1]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(shape, generator=gen) * (hi - lo) + lo

        if leaf == "running_var":
            t = uniform(0.5, 2.0)
        elif leaf == "running_mean":
            t = torch.randn(shape, generator=gen) * 0.5
        elif "layer_scale" in key or leaf in ("gamma", "scale"):
            t = uniform(0.2, 1.0) * torch.sign(torch.randn(shape, generator=gen))
        elif "attention_bias" in key:
            t = torch.randn(shape, generator=gen) * 0.5
        elif len(shape) <= 1 and leaf == "weight":  # norm affine
            t = uniform(0.5, 1.5)
        elif len(shape) <= 1:  # biases (norm, conv, linear)
            t = torch.randn(shape, generator=gen) * 0.2
        else:  # conv / linear weights: variance-preserving so deep nets' logits stay O(1)
            fan_in = max(1, ref[0].numel())
            t = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        out[key] = t.to(ref.dtype)
    return out


def seeded_input(shape: Tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """The fixed standard-normal input that reference logits are computed on."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


#: how far another CPU's float32 rounding of a computation may exceed this CPU's, for references stored in
#: float32 only. Rounding errors of different summation orders are sums of many small independent terms, of one
#: size set by the computation; between this AVX2-only machine and the AVX-512 one that made tests/reference/timm
#: the ratio measured 0.5-1.24 over 16 models, so 4 leaves room without hiding a wrong fold (a fold or mapping bug
#: moves logits by orders of magnitude more than rounding does).
OTHER_CPU_ROUNDING = 4.0

#: float64 rounding of a computation relative to float32's: 2**-29 by the unit roundoffs, taken as 2**-20 (512x
#: room for another CPU's order of summation)
FLOAT64_SHARE = 2.0 ** -20


@torch.no_grad()
def float32_error(model: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, float]:
    """(float32 output, float64 output, max |float32 - float64|) of ``model`` on ``x``, measured on this machine.

    The last is the float32 rounding error of this computation here. ``model`` is not changed (a float64
    copy runs); it must be in the mode the caller wants (eval, usually).
    """
    out32 = model(x.float())
    out64 = copy.deepcopy(model).double()(x.double())
    return out32, out64, float((out32.double() - out64).abs().max())


@dataclass(frozen=True)
class ReferenceCheck:
    """archc's output against a stored reference: the gap, the tolerance and how they were measured."""
    gap: float          # max |archc (float64) - reference|
    tolerance: float
    float32_error: float
    scale: float        # max |reference|
    precision: str      # "float64" (reference stored in float64) or "float32"
    output: torch.Tensor  # archc's float32 output (for further checks)

    @property
    def ok(self) -> bool:
        return self.gap <= self.tolerance

    def describe(self) -> str:
        return (f"gap {self.gap:.3g} ({self.gap / self.scale:.2e} of max|ref| {self.scale:.4g}) vs tolerance "
                f"{self.tolerance:.3g} (float32 rounding here {self.float32_error:.3g}, {self.precision} reference)")


def reference_check(model: nn.Module, x: torch.Tensor, ref32: torch.Tensor,
                    ref64: Optional[torch.Tensor] = None, model64: Optional[nn.Module] = None) -> ReferenceCheck:
    """Compare ``model(x)`` with stored reference logits at a tolerance derived from float32's rounding.

    archc's output is taken in float64. Against a float64 reference (``ref64``) the two differ by float64
    rounding alone, whose size is float32's scaled by the unit roundoffs (2**-53 / 2**-24 = 2**-29) on any
    CPU; the tolerance is float32's rounding measured here times ``FLOAT64_SHARE`` (2**-20), which leaves
    512x for another CPU's summation order and is far below anything float32 could resolve. Against a
    float32-only reference the gap is the reference CPU's float32 rounding, so the tolerance is
    ``OTHER_CPU_ROUNDING`` times this CPU's. A floor of one unit roundoff of the scale (of the reference's
    precision) keeps an exactly representable computation (zero rounding) from demanding a zero gap.

    A model whose float32 weights were themselves computed (a deploy graph: folded BatchNorms and branches)
    carries the fold's float32 rounding in every weight; its float64 copy does not remove it. Pass
    ``model64``, the same model built in float64 (fold a ``.double()`` copy), and the gap is taken from it.
    """
    out32, out64, e32 = float32_error(model, x)
    if model64 is not None:
        with torch.no_grad():
            out64 = model64(x.double())
    scale = float(ref32.abs().max())
    if ref64 is not None:
        gap = float((out64 - ref64.double()).abs().max())
        tol, precision = max(FLOAT64_SHARE * e32, 2.0 ** -53 * scale), "float64"
    else:
        gap = float((out64 - ref32.double()).abs().max())
        tol, precision = max(OTHER_CPU_ROUNDING * e32, 2.0 ** -24 * scale), "float32"
    return ReferenceCheck(gap=gap, tolerance=tol, float32_error=e32, scale=scale, precision=precision, output=out32)
