"""The zero-cost proxies by name, their settings, and ``score`` (see the package docstring)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

from .gradnorm import grad_norm
from .jacobcov import jacob_cov
from .names import DEFAULT, NAMES, check_name  # noqa: F401  (public here too)
from .naswot import naswot
from .synflow import synflow
from .zico import zico

ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]


def params_proxy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Baseline: the parameter count (in millions). Every real proxy should beat it."""
    return sum(p.numel() for p in model.parameters()) / 1e6


@dataclass(frozen=True)
class ProxySettings:
    """How ``score`` feeds a proxy: batch size and input resolution (None: the spec's own)."""

    batch: int
    resolution: Optional[int]
    summary: str


PROXIES: Dict[str, ProxyFn] = {
    "params": params_proxy,
    "synflow": synflow,
    "naswot": naswot,
    "zico": zico,
    "grad_norm": grad_norm,
    "jacob_cov": jacob_cov,
}
assert tuple(PROXIES) == NAMES, "archc.proxies.names.NAMES lists every proxy, in this order"

PROXY_SETTINGS: Dict[str, ProxySettings] = {
    "params": ProxySettings(1, None, "parameter count (M); no forward pass"),
    "synflow": ProxySettings(1, None, "log synaptic flow; |weights|, all-ones input, float64, BN removed"),
    "naswot": ProxySettings(32, 128, "log det of the activation-code kernel (active = pre-activation > 0)"),
    "zico": ProxySettings(16, 128, "sum over layers of log sum mean|g|/std(g) over 2 mini-batches of 8"),
    "grad_norm": ProxySettings(16, 128, "sum over layers of the weight-gradient norm (cross-entropy)"),
    "jacob_cov": ProxySettings(16, 128, "-sum log/inverse eigenvalues of the input-Jacobian correlation"),
}

def score(spec_or_model, name: str = None, *, batch: int = None, resolution: int = None, seed: int = 0) -> float:
    """Compute proxy ``name`` (default ``DEFAULT``) for a spec or a built train-time model.

    A spec is built with weights drawn from ``seed``; inputs and targets are drawn from ``seed`` too;
    ``batch`` and ``resolution`` default to the proxy's ``PROXY_SETTINGS``. A spec whose graph is sized to
    its input (EfficientFormer's attention biases) is built at that resolution, as training builds it; such
    a model passed already built is scored at its own ``input_size``, the only size it runs at.
    """
    from ..builder import build_seeded
    from ..spec import load_spec, sized_to_input
    name = check_name(name or DEFAULT)
    settings = PROXY_SETTINGS[name]
    res = resolution or settings.resolution
    if isinstance(spec_or_model, nn.Module):
        model = spec_or_model
        spec = getattr(model, "spec", None)
        if spec is not None and sized_to_input(spec):
            res = None  # attention biases sized to input_size: a built graph runs at that size only
    else:
        spec = spec_or_model
        if res and sized_to_input(spec) and tuple(spec.input_size) != (res, res):
            spec = load_spec(spec, {"input_size": res})  # as training does: built at the size it is fed
        model = build_seeded(spec, seed)
        spec = getattr(model, "spec", spec)
    size = (res, res) if res else (tuple(spec.input_size) if spec else (224, 224))
    if spec is not None:  # the proxy's batch and size, not only the spec's batch-1 forward, must fit
        from ..guards import check_memory
        check_memory(spec, batch or settings.batch, size, key="--batch" if batch else "input_size")
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn((batch or settings.batch, getattr(spec, "in_chans", 3)) + size, generator=gen)
    targets = torch.randint(0, getattr(spec, "num_classes", 1000), (inputs.shape[0],), generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # anything random inside a proxy (none today) stays reproducible
        return float(PROXIES[name](model, inputs, targets))
