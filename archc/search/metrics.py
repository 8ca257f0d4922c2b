"""Params and MACs of a spec, on its deploy graph.

Both the search report and ``archc ablate`` print these; they come from ``profile_graph`` (the
project's one MAC counter). Parameters are counted on the train-time model (what the paper and timm
report); MACs on the deploy graph (what runs on the device).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..analysis.profile import example_input, profile_graph
from ..builder import build
from ..guards import param_counts
from ..passes import reparameterize
from ..spec import Spec
from ..threads import torch_threads  # noqa: F401  (public here too: archc.search.metrics.torch_threads)


@dataclass
class SpecMetrics:
    params: int
    macs: int
    graph: str  # "deploy" or "train"


def spec_metrics(spec: Spec, *, deploy: bool = True) -> SpecMetrics:
    """Parameters of the train-time model (counted on the meta device by the guards, cached per spec) and MACs
    of the deploy graph (``deploy=False``: of the eval-mode train-time graph)."""
    params = sum(param_counts(spec).values())
    torch.manual_seed(0)
    graph = build(spec).eval()
    with torch.no_grad():
        if deploy:
            graph = reparameterize(graph, verify=False)
        prof = profile_graph(graph, example_input(spec.input_size, spec.in_chans))
    return SpecMetrics(params=params, macs=int(prof.macs), graph="deploy" if deploy else "train")
