"""Memory-access cost over the traced data-flow graph (networkx): the paper's argument made countable.

Every op reads its input activations and weights and writes its output. Layout ops (views,
transposes folded into the next op) alias their input and move nothing; their consumers read the
aliased producer's tensor. Peak live activation memory comes from a liveness sweep in topological
order: a tensor is live from the node that writes it until its last reader runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict

import networkx as nx

from .profile import LAYOUT_KINDS, GraphProfile


@dataclass
class MemoryTraffic:
    activation_bytes_read: int
    activation_bytes_written: int
    weight_bytes_read: int
    peak_live_activation_bytes: int

    @property
    def total(self) -> int:
        return self.activation_bytes_read + self.activation_bytes_written + self.weight_bytes_read

    def to_dict(self) -> Dict[str, int]:
        d = asdict(self)
        d["total"] = self.total
        return d


def _out_bytes(profile_nodes: Dict[str, object], g: nx.DiGraph, name: str, bytes_per_elem: int) -> int:
    cost = g.nodes[name].get("cost")
    if cost is None or not cost.out_shape:
        return 0
    n = 1
    for d in cost.out_shape:
        n *= d
    return n * bytes_per_elem


def memory_traffic(profile: GraphProfile, bytes_per_elem: int = 4) -> MemoryTraffic:
    """Bytes moved by the graph of ``profile`` (activations read/written, weights read) and peak live bytes."""
    g = profile.graph
    costs = {n.name: n for n in profile.nodes}

    def storage(name: str) -> str:
        """The node whose output buffer ``name`` aliases (itself unless it is a layout op)."""
        seen = name
        while seen in costs and costs[seen].kind in LAYOUT_KINDS:
            preds = list(g.predecessors(seen))
            if len(preds) != 1:
                break
            seen = preds[0]
        return seen

    size = {name: _out_bytes(costs, g, name, bytes_per_elem) for name in g.nodes}
    in_bytes = profile.input_shape
    elems = 1
    for d in in_bytes:
        elems *= d
    for name in g.nodes:
        if g.nodes[name].get("cost") is None and g.in_degree(name) == 0:
            size[name] = elems * bytes_per_elem  # the graph input
    read = written = weights = 0
    for name in nx.topological_sort(g):
        cost = costs.get(name)
        if cost is None or cost.kind in LAYOUT_KINDS:
            continue
        written += size[name]
        sources = {storage(p) for p in g.predecessors(name)}
        read += sum(size.get(s, 0) for s in sources)
        weights += cost.detail.get("weight_bytes", 0)
    # liveness: a buffer lives from its writer until its last (possibly aliased) reader
    order = list(nx.topological_sort(g))
    position = {n: i for i, n in enumerate(order)}
    last_use: Dict[str, int] = {}
    for name in order:
        for p in g.predecessors(name):
            s = storage(p)
            last_use[s] = max(last_use.get(s, 0), position[name])
    live = peak = 0
    frees: Dict[int, int] = {}
    for i, name in enumerate(order):
        if storage(name) == name:
            live += size.get(name, 0)
            frees[last_use.get(name, i)] = frees.get(last_use.get(name, i), 0) + size.get(name, 0)
        peak = max(peak, live)
        live -= frees.pop(i, 0)
    return MemoryTraffic(read, written, weights, peak)
