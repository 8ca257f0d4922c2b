"""Per-node profile of a traced model: op kind, module scope, MACs, parameters and bytes moved.

This is the one place that runs a graph to measure it. Params/MACs tables, the memory-access-cost
estimate, op histograms and the latency model's features are all views of a ``GraphProfile``.
MACs come from torch's own flop counter (``torch.utils.flop_counter``), run node by node.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import networkx as nx
import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from ..ops import LAYOUT_KINDS, node_kind  # the shared op classification (rules and lowerings use it too)


@dataclass
class NodeCost:
    """What one graph node costs. ``scope`` is the module path it came from (``stages.2.blocks.0``)."""

    name: str
    kind: str
    scope: str
    macs: int = 0
    params: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    out_shape: Tuple[int, ...] = ()
    detail: Dict[str, Any] = field(default_factory=dict)


@dataclass
class GraphProfile:
    """Per-node costs plus the data-flow graph (networkx) over which traffic analyses run."""

    nodes: List[NodeCost]
    graph: nx.DiGraph
    input_shape: Tuple[int, ...]
    total_params: int

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def bytes_moved(self) -> int:
        return sum(n.bytes_read + n.bytes_written for n in self.nodes)

    def op_histogram(self, include_layout: bool = False) -> Dict[str, int]:
        hist: Dict[str, int] = {}
        for n in self.nodes:
            if include_layout or n.kind not in LAYOUT_KINDS:
                hist[n.kind] = hist.get(n.kind, 0) + 1
        return dict(sorted(hist.items()))

    def residual_adds(self) -> int:
        """Adds/subs of two computed tensors (skip connections and branch merges)."""
        return sum(1 for n in self.nodes if n.kind in ("add", "sub") and n.detail.get("tensor_operands", 0) >= 2)

    def by_scope(self, depth_of: "ScopeFn") -> Dict[str, Dict[str, int]]:
        out: Dict[str, Dict[str, int]] = {}
        for n in self.nodes:
            key = depth_of(n.scope)
            row = out.setdefault(key, {"macs": 0, "params": 0, "bytes": 0})
            row["macs"] += n.macs
            row["params"] += n.params
            row["bytes"] += n.bytes_read + n.bytes_written
        return out


ScopeFn = Any


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _scope_of(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        return str(list(stack.keys())[-1])
    return str(node.meta.get("archc_scope", ""))


def _sdpa_cpu_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(q, k, v)


#: torch's flop counter has formulas for the CUDA attention kernels but not the CPU one; count it the same way
_EXTRA_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


class _Profiler(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.costs: Dict[str, NodeCost] = {}
        self.modules = dict(gm.named_modules())

    def run_node(self, n: fx.Node) -> Any:
        if n.op in ("placeholder", "output", "get_attr"):
            return super().run_node(n)
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
            out = super().run_node(n)
        kind = node_kind(n, self.modules)
        tensor_args = [self.env[a] for a in n.all_input_nodes
                       if a.op != "get_attr" and isinstance(self.env[a], torch.Tensor)]
        weight_bytes = 0
        if n.op == "call_module":
            for p in self.modules[str(n.target)].parameters():
                weight_bytes += p.numel() * p.element_size()
            for b in self.modules[str(n.target)].buffers():
                if b.is_floating_point():
                    weight_bytes += b.numel() * b.element_size()
        # parameters used through get_attr (layer scales, folded constants), counted once per graph later
        attrs = {str(a.target): self.env[a].numel() for a in n.all_input_nodes
                 if a.op == "get_attr" and isinstance(self.env[a], torch.Tensor)}
        weight_bytes += sum(self.env[a].numel() * self.env[a].element_size() for a in n.all_input_nodes
                            if a.op == "get_attr" and isinstance(self.env[a], torch.Tensor))
        cost = NodeCost(name=n.name, kind=kind, scope=_scope_of(n), macs=counter.get_total_flops() // 2)
        cost.detail["attrs"] = attrs
        cost.detail["tensor_operands"] = len([a for a in n.all_input_nodes if a.op != "get_attr"])
        cost.detail["weight_bytes"] = weight_bytes
        cost.detail["op"] = _op_name(n, self.modules)
        if kind not in LAYOUT_KINDS:
            cost.bytes_read = sum(_tensor_bytes(a) for a in tensor_args) + weight_bytes
            cost.bytes_written = _tensor_bytes(out)
        if isinstance(out, torch.Tensor):
            cost.out_shape = tuple(out.shape)
        if n.op == "call_module" and kind in ("conv", "dwconv"):
            mod = self.modules[str(n.target)]
            cost.detail.update(kernel=mod.kernel_size[0], stride=mod.stride[0], groups=mod.groups,
                               in_channels=mod.in_channels, out_channels=mod.out_channels)
        if kind == "attention" and len(tensor_args) >= 1:
            q = tensor_args[0]
            cost.detail.update(heads=q.shape[1], tokens=q.shape[2], head_dim=q.shape[3])
        self.costs[n.name] = cost
        return out


def _op_name(n: fx.Node, modules: Dict[str, nn.Module]) -> str:
    """The op itself, finer than its kind: ``gelu`` and ``relu`` are both ``activation`` but cost very
    differently per element (an erf against a max, which runtimes fuse into the conv before it)."""
    if n.op == "call_module":
        return type(modules[str(n.target)]).__name__.lower()
    return str(getattr(n.target, "__name__", n.target)).lower()


def trace(model: nn.Module) -> fx.GraphModule:
    """A GraphModule for ``model`` (returned as is if it already is one)."""
    if isinstance(model, fx.GraphModule):
        return model
    return fx.symbolic_trace(model)


def example_input(input_size: Sequence[int], in_chans: int = 3, batch: int = 1, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch, in_chans) + tuple(input_size), generator=gen)


def profile_graph(model: nn.Module, x: torch.Tensor) -> GraphProfile:
    """Run ``model`` once on ``x`` (eval mode, no grad) node by node and record every node's cost."""
    gm = trace(model)
    was_training = gm.training
    gm.eval()
    prof = _Profiler(gm)
    try:
        with torch.no_grad():
            prof.run(x)
    finally:
        gm.train(was_training)
    g = nx.DiGraph()
    costs: List[NodeCost] = []
    assigned: set = set()
    param_names = {name for name, _ in gm.named_parameters()}
    for n in gm.graph.nodes:
        if n.name in prof.costs:
            c = prof.costs[n.name]
            # each parameter counts once, on the first node that uses it
            if n.op == "call_module" and n.target not in assigned:
                assigned.add(n.target)
                c.params = sum(p.numel() for p in prof.modules[str(n.target)].parameters())
            for target, numel in c.detail.pop("attrs").items():
                if target not in assigned and target in param_names:
                    assigned.add(target)
                    c.params += numel
            costs.append(c)
            g.add_node(n.name, cost=c)
        elif n.op in ("placeholder", "output"):
            g.add_node(n.name, cost=None)
        for a in n.all_input_nodes:
            if a.name in g:
                g.add_edge(a.name, n.name)
    total = sum(p.numel() for p in gm.parameters())
    return GraphProfile(nodes=costs, graph=g, input_shape=tuple(x.shape), total_params=total)
