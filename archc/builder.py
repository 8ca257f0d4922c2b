"""Compile a spec into a trainable PyTorch model (train-time graph with all branches): check it, refuse it
if it is too big (``archc.guards``), then build the ``ArchNet`` (``archc.network``)."""
from __future__ import annotations

from .guards import check_memory
from .network import ArchNet
from .spec import load_spec
from .spec.load import SpecSource

__all__ = ["ArchNet", "build"]


def build(spec: SpecSource) -> ArchNet:
    """Build the train-time model for a spec (a path, a mapping or a ``Spec``).

    A ``Spec`` is checked again (one made with ``dataclasses.replace`` skipped the loader), and the
    resource guards (``archc.guards``) count its parameters and its batch-1 memory on the meta device
    first, so an absurd spec is refused before anything is allocated."""
    spec = load_spec(spec)
    check_memory(spec)
    return ArchNet(spec)


def build_seeded(spec: SpecSource, seed: int = 0) -> ArchNet:
    """``build(spec)`` with weights drawn from ``seed``, leaving the caller's random state untouched: the same
    seed gives the same model, so a search trial builds its candidate once and the proxy scores that model
    exactly as ``archc.proxies.score(spec)`` would have built it."""
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(spec)
