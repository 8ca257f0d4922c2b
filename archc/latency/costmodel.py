"""The latency cost model: non-negative prices for compute, memory traffic and per-op overhead.

Every op of the deploy graph costs its compute (GMAC by class: dense, depthwise, attention
matmuls), its memory traffic (MB of activations read and written plus weights read) and a fixed
overhead by op kind (``features.GROUPS``: elementwise adds of unfused skips, norms, pooling,
reshapes, attention, convs). Two ways to combine compute and traffic, chosen by held-out error:

- ``sum``: ``t_op = a . macs + b * mbytes + o[kind]``: linear in the prices, so the whole graph is
  ``sum_k c_k * feature_k`` and the fit is non-negative least squares;
- ``max`` (roofline): ``t_op = max(a . macs, b * mbytes) + o[kind]``: an op is bound by compute or by
  bytes, not both; a memory-bound op (a skip add, a pooling mixer) costs by its bytes.

Plus a per-inference constant and a softmax term (attention score elements). All prices are >= 0,
so no unit of work ever saves time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .features import GROUPS, MAC_CLASSES, NodeTable

COMBINES = ("sum", "max")
MAC_TERMS = tuple(f"macs_{c}" for c in MAC_CLASSES)   # macs_dense, macs_dw, macs_attn
OP_TERMS = tuple(f"ops_{g}" for g in GROUPS)
#: every price a cost model may have (the names are also the aggregated features they multiply)
TERMS = ("const",) + MAC_TERMS + ("mbytes", "attn_elems") + OP_TERMS


@dataclass(frozen=True)
class CostModel:
    """Which prices a model has and how it combines compute with traffic."""

    combine: str
    terms: Tuple[str, ...]

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {self.combine!r}")
        bad = [t for t in self.terms if t not in TERMS]
        if bad:
            raise ValueError(f"unknown cost-model terms {bad}; valid: {', '.join(TERMS)}")

    @property
    def name(self) -> str:
        return f"{self.combine}: {' + '.join(self.terms)}"

    @property
    def linear(self) -> bool:
        """True where latency is linear in the prices (a ``sum`` model, or a max with one side only)."""
        has_mac = any(t in MAC_TERMS for t in self.terms)
        return self.combine == "sum" or not (has_mac and "mbytes" in self.terms)


@dataclass
class Stack:
    """Many graphs' node tables concatenated, so one vectorised pass prices all of them."""

    macs: np.ndarray      # (nodes, 3)
    mbytes: np.ndarray    # (nodes,)
    group: np.ndarray     # (nodes,)
    owner: np.ndarray     # (nodes,) index of the graph the node belongs to
    attn_elems: np.ndarray  # (graphs,)
    n: int

    @classmethod
    def of(cls, tables: Sequence[NodeTable], attn_elems: Sequence[float]) -> "Stack":
        owner = np.concatenate([np.full(len(t.mbytes), i) for i, t in enumerate(tables)]) if tables else np.zeros(0, int)
        return cls(macs=np.concatenate([t.macs for t in tables]), mbytes=np.concatenate([t.mbytes for t in tables]),
                   group=np.concatenate([t.group for t in tables]), owner=owner.astype(np.int64),
                   attn_elems=np.asarray(attn_elems, dtype=float), n=len(tables))

    def subset(self, idx: Sequence[int]) -> "Stack":
        idx = np.asarray(idx, dtype=np.int64)
        remap = -np.ones(self.n, dtype=np.int64)
        remap[idx] = np.arange(len(idx))
        keep = remap[self.owner] >= 0
        return Stack(macs=self.macs[keep], mbytes=self.mbytes[keep], group=self.group[keep],
                     owner=remap[self.owner[keep]], attn_elems=self.attn_elems[idx], n=len(idx))


def aggregate(stack: Stack, terms: Sequence[str]) -> np.ndarray:
    """(graphs, terms): each graph's total of every term's feature (what a ``sum`` model prices)."""
    cols: List[np.ndarray] = []
    for t in terms:
        if t == "const":
            cols.append(np.ones(stack.n))
        elif t in MAC_TERMS:
            cols.append(np.bincount(stack.owner, stack.macs[:, MAC_TERMS.index(t)], minlength=stack.n))
        elif t == "mbytes":
            cols.append(np.bincount(stack.owner, stack.mbytes, minlength=stack.n))
        elif t == "attn_elems":
            cols.append(stack.attn_elems.copy())
        else:
            g = OP_TERMS.index(t)
            cols.append(np.bincount(stack.owner, (stack.group == g).astype(float), minlength=stack.n))
    return np.column_stack(cols) if cols else np.zeros((stack.n, 0))


def predict(model: CostModel, coef: Sequence[float], stack: Stack) -> np.ndarray:
    """Milliseconds per graph in ``stack`` under ``model`` with prices ``coef`` (in ``model.terms`` order)."""
    c = dict(zip(model.terms, np.asarray(coef, dtype=float)))
    if model.linear:
        return aggregate(stack, model.terms) @ np.asarray(coef, dtype=float)
    a = np.array([c.get(t, 0.0) for t in MAC_TERMS])
    compute = stack.macs @ a
    traffic = c.get("mbytes", 0.0) * stack.mbytes
    per_op = np.maximum(compute, traffic)
    o = np.array([c.get(t, 0.0) for t in OP_TERMS])
    per_op = per_op + o[stack.group]
    total = np.bincount(stack.owner, per_op, minlength=stack.n)
    return total + c.get("const", 0.0) + c.get("attn_elems", 0.0) * stack.attn_elems


def breakdown(model: CostModel, coef: Dict[str, float], table: NodeTable, attn_elems: float) -> Dict[str, float]:
    """Where one graph's predicted time goes (ms): compute, traffic (max: of memory-bound ops), overhead, constant."""
    a = np.array([coef.get(t, 0.0) for t in MAC_TERMS])
    compute = table.macs @ a
    traffic = coef.get("mbytes", 0.0) * table.mbytes
    o = np.array([coef.get(t, 0.0) for t in OP_TERMS])[table.group]
    out = {"const": coef.get("const", 0.0), "attn_softmax": coef.get("attn_elems", 0.0) * attn_elems,
           "overhead": float(o.sum())}
    if model.linear:
        out.update(compute=float(compute.sum()), traffic=float(traffic.sum()))
    else:
        bound = traffic > compute
        out.update(compute=float(compute[~bound].sum()), traffic=float(traffic[bound].sum()))
    return {k: round(float(v), 4) for k, v in out.items()}


def memory_bound_ops(coef: Dict[str, float], table: NodeTable) -> int:
    """How many ops a roofline model prices by their bytes rather than their MACs."""
    a = np.array([coef.get(t, 0.0) for t in MAC_TERMS])
    return int(np.sum(coef.get("mbytes", 0.0) * table.mbytes > table.macs @ a))


#: the candidate models ``archc calibrate`` compares by held-out error (few terms: tens of points)
CANDIDATES: Tuple[CostModel, ...] = tuple(
    CostModel(combine, terms) for combine, terms in [
        ("sum", ("const", "macs_dense", "macs_dw", "attn_elems")),                       # compute only (v1)
        ("sum", ("const", "macs_dense", "macs_dw", "macs_attn", "mbytes")),
        ("sum", ("const", "macs_dense", "macs_dw", "attn_elems", "mbytes")),
        ("max", ("const", "macs_dense", "macs_dw", "attn_elems", "mbytes")),
        ("max", ("const", "macs_dense", "macs_dw", "macs_attn", "mbytes")),
        ("sum", ("const", "macs_dense", "macs_dw", "attn_elems", "mbytes", "ops_elementwise", "ops_norm", "ops_pool")),
        ("max", ("const", "macs_dense", "macs_dw", "attn_elems", "mbytes", "ops_elementwise", "ops_norm", "ops_pool")),
        ("sum", ("const", "macs_dense", "macs_dw", "attn_elems", "mbytes", "ops_conv", "ops_elementwise",
                 "ops_norm", "ops_pool", "ops_layout")),
        ("max", ("const", "macs_dense", "macs_dw", "attn_elems", "mbytes", "ops_conv", "ops_elementwise",
                 "ops_norm", "ops_pool", "ops_layout")),
    ])
