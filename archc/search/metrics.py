"""Params and MACs of a spec, on the deploy graph where the reparameterization pass is available.

Both the search report and ``archc ablate`` print these; they come from ``profile_graph`` (the
project's one MAC counter). Parameters are counted on the train-time model (what the paper and timm
report); MACs on the deploy graph (what runs on the device), falling back to the eval-mode
train-time graph, and saying which, where the pass is not installed.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from ..analysis.profile import example_input, profile_graph
from ..builder import build
from ..spec import Spec


@dataclass
class SpecMetrics:
    params: int
    macs: int
    graph: str  # "deploy" or "train"


def deploy_graph(model: torch.nn.Module):
    """The reparameterized deploy graph, or None when ``archc.reparameterize`` is not available."""
    try:
        from .. import reparameterize  # the lead's pass (archc/passes)
    except ImportError:
        return None
    return reparameterize(model, verify=False)


def spec_metrics(spec: Spec, *, deploy: bool = True) -> SpecMetrics:
    torch.manual_seed(0)
    model = build(spec).eval()
    params = sum(p.numel() for p in model.parameters())
    graph, kind = model, "train"
    if deploy:
        with torch.no_grad():
            lowered = deploy_graph(model)
        if lowered is not None:
            graph, kind = lowered, "deploy"
    with torch.no_grad():
        prof = profile_graph(graph, example_input(spec.input_size, spec.in_chans))
    return SpecMetrics(params=params, macs=int(prof.macs), graph=kind)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads (graph passes and profiling of batch-1 nets are faster on one)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
