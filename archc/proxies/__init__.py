"""Zero-cost proxies: score an untrained candidate from one or a few forward/backward passes.

``PROXIES`` maps a name to a function ``(model, inputs, targets) -> float`` (higher = predicted
better). ``score(spec_or_model, name)`` builds the model if needed and computes one proxy.
``DEFAULT`` is the proxy that ranks the published FastViT variants best (``archc proxies --eval``).
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn as nn

ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]


def params_proxy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Baseline: the parameter count (in millions). Every real proxy should beat it."""
    return sum(p.numel() for p in model.parameters()) / 1e6


PROXIES: Dict[str, ProxyFn] = {"params": params_proxy}
DEFAULT = "params"


def score(spec_or_model, name: str = None, *, batch: int = 8, resolution: int = None, seed: int = 0) -> float:
    """Compute proxy ``name`` (default ``DEFAULT``) for a spec or a built train-time model."""
    from ..builder import build
    from ..errors import ArchcError, did_you_mean
    name = name or DEFAULT
    if name not in PROXIES:
        raise ArchcError(f"unknown proxy '{name}'{did_you_mean(name, PROXIES)}; valid: {', '.join(PROXIES)}")
    model = spec_or_model if isinstance(spec_or_model, nn.Module) else build(spec_or_model)
    spec = getattr(model, "spec", None)
    size = (resolution, resolution) if resolution else (tuple(spec.input_size) if spec else (224, 224))
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn((batch, getattr(spec, "in_chans", 3)) + size, generator=gen)
    targets = torch.randint(0, getattr(spec, "num_classes", 1000), (batch,), generator=gen)
    return float(PROXIES[name](model, inputs, targets))
