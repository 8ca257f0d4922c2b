"""The latency cost model: non-negative prices for compute, memory traffic and per-op overhead.

Every op of the deploy graph costs its compute (GMAC by class: dense, depthwise, attention
matmuls), its memory traffic (MB of activations read and written plus weights read) and a fixed
overhead by op kind (``features.GROUPS``: elementwise adds of unfused skips, norms, pooling,
reshapes, attention, convs). Two ways to combine compute and traffic, chosen by held-out error:

- ``sum``: ``t_op = a . macs + b * mbytes + o[kind]``: linear in the prices, so the whole graph is
  ``sum_k c_k * feature_k`` and the fit is non-negative least squares;
- ``max`` (roofline): ``t_op = max(a . macs, b * mbytes) + o[kind]``: an op is bound by compute or by
  bytes, not both; a memory-bound op (a skip add, a pooling mixer) costs by its bytes.

Traffic may also be priced per op group (``mbytes_<group>``, added to the op's cost in either
combination): a GELU's erf, a GroupNorm's two passes and a skip add stream bytes at very different
rates. ``mbytes_misaligned_dw`` / ``mbytes_misaligned_pool`` / ``macs_misaligned`` surcharge depthwise
convs, pooling and dense convs whose channel count is not a multiple of the runtime's vector block
(``CostModel.channel_block``): ONNX Runtime runs those through a generic kernel instead of its blocked
NCHWc one, 3-30x slower per element on the CPU measured (docs/LATENCY_MODEL.md). ``mbytes_spill``
prices the traffic of ops that each move more than ``CostModel.cache_mb``.

Plus a per-inference constant and a softmax term (attention score elements). All prices are >= 0,
so no unit of work ever saves time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .features import DEFAULT_CHANNEL_BLOCK, GROUPS, MAC_CLASSES, NodeTable

#: the cache an op must outgrow for ``mbytes_spill`` unless a model says otherwise (MB)
DEFAULT_CACHE_MB = 2.0

COMBINES = ("sum", "max")
MAC_TERMS = tuple(f"macs_{c}" for c in MAC_CLASSES)   # macs_dense, macs_dw, macs_attn
OP_TERMS = tuple(f"ops_{g}" for g in GROUPS)
#: traffic priced per op group (layout ops move nothing, so they have no such term)
TRAFFIC_TERMS = tuple(f"mbytes_{g}" for g in GROUPS if g != "layout")
#: traffic of channel-wise ops off the runtime's blocked fast path, priced per group (a generic depthwise conv
#: and a generic pooling kernel are slow by different factors)
MISALIGNED_TERMS = {"mbytes_misaligned_dw": "depthwise", "mbytes_misaligned_pool": "pool", "macs_misaligned": "conv"}
#: traffic of ops whose bytes outgrow the cache (``CostModel.cache_mb``): streamed from DRAM, not from cache
SPILL = "mbytes_spill"
#: every price a cost model may have (the names are also the aggregated features they multiply)
TERMS = ("const",) + MAC_TERMS + ("mbytes", "attn_elems") + OP_TERMS + TRAFFIC_TERMS + tuple(MISALIGNED_TERMS) + (SPILL,)


@dataclass(frozen=True)
class CostModel:
    """Which prices a model has and how it combines compute with traffic."""

    combine: str
    terms: Tuple[str, ...]
    #: vector block (channels) below which channel-wise ops count as misaligned (``mbytes_misaligned`` only)
    channel_block: int = DEFAULT_CHANNEL_BLOCK
    #: an op moving more MB than this spills out of cache (``mbytes_spill`` only)
    cache_mb: float = DEFAULT_CACHE_MB

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {self.combine!r}")
        bad = [t for t in self.terms if t not in TERMS]
        if bad:
            raise ValueError(f"unknown cost-model terms {bad}; valid: {', '.join(TERMS)}")

    @property
    def name(self) -> str:
        block = f" (block {self.channel_block})" if set(MISALIGNED_TERMS) & set(self.terms) else ""
        cache = f" (cache {self.cache_mb:g} MB)" if SPILL in self.terms else ""
        return f"{self.combine}: {' + '.join(self.terms)}{block}{cache}"

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
    channels: np.ndarray = None  # type: ignore[assignment]  # (nodes,) channel-wise ops' channel count, else 0

    @classmethod
    def of(cls, tables: Sequence[NodeTable], attn_elems: Sequence[float]) -> "Stack":
        owner = np.concatenate([np.full(len(t.mbytes), i) for i, t in enumerate(tables)]) if tables else np.zeros(0, int)
        return cls(macs=np.concatenate([t.macs for t in tables]), mbytes=np.concatenate([t.mbytes for t in tables]),
                   group=np.concatenate([t.group for t in tables]), owner=owner.astype(np.int64),
                   attn_elems=np.asarray(attn_elems, dtype=float), n=len(tables),
                   channels=np.concatenate([t.channels for t in tables]))

    def misaligned(self, block: int) -> np.ndarray:
        """(nodes,) True for channel-wise ops whose channel count is not a multiple of ``block``."""
        return (self.channels > 0) & (self.channels % max(1, int(block)) != 0)

    def subset(self, idx: Sequence[int]) -> "Stack":
        idx = np.asarray(idx, dtype=np.int64)
        remap = -np.ones(self.n, dtype=np.int64)
        remap[idx] = np.arange(len(idx))
        keep = remap[self.owner] >= 0
        return Stack(macs=self.macs[keep], mbytes=self.mbytes[keep], group=self.group[keep],
                     owner=remap[self.owner[keep]], attn_elems=self.attn_elems[idx], n=len(idx),
                     channels=self.channels[keep])


def aggregate(stack: Stack, terms: Sequence[str], channel_block: int = DEFAULT_CHANNEL_BLOCK,
              cache_mb: float = DEFAULT_CACHE_MB) -> np.ndarray:
    """(graphs, terms): each graph's total of every term's feature (what a ``sum`` model prices)."""
    cols: List[np.ndarray] = []
    for t in terms:
        if t == "const":
            cols.append(np.ones(stack.n))
        elif t in MAC_TERMS:
            cols.append(np.bincount(stack.owner, stack.macs[:, MAC_TERMS.index(t)], minlength=stack.n))
        elif t == "mbytes":
            cols.append(np.bincount(stack.owner, stack.mbytes, minlength=stack.n))
        elif t in TRAFFIC_TERMS:
            g = GROUPS.index(t[len("mbytes_"):])
            cols.append(np.bincount(stack.owner, stack.mbytes * (stack.group == g), minlength=stack.n))
        elif t == SPILL:
            cols.append(np.bincount(stack.owner, stack.mbytes * (stack.mbytes > cache_mb), minlength=stack.n))
        elif t in MISALIGNED_TERMS:
            g = GROUPS.index(MISALIGNED_TERMS[t])
            cols.append(np.bincount(stack.owner, _misaligned_work(stack, g, channel_block), minlength=stack.n))
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
        return aggregate(stack, model.terms, model.channel_block, model.cache_mb) @ np.asarray(coef, dtype=float)
    a = np.array([c.get(t, 0.0) for t in MAC_TERMS])
    compute = stack.macs @ a
    traffic = c.get("mbytes", 0.0) * stack.mbytes
    per_op = np.maximum(compute, traffic) + _group_prices(c, stack.group, stack.mbytes)
    per_op = per_op + _misaligned_prices(c, stack, model.channel_block)
    per_op = per_op + c.get(SPILL, 0.0) * stack.mbytes * (stack.mbytes > model.cache_mb)
    total = np.bincount(stack.owner, per_op, minlength=stack.n)
    return total + c.get("const", 0.0) + c.get("attn_elems", 0.0) * stack.attn_elems


def _misaligned_work(stack: Stack, group: int, block: int) -> np.ndarray:
    """(nodes,) the work a misaligned op of ``group`` is surcharged on: a dense conv's MACs, else its MB."""
    work = stack.macs.sum(axis=1) if GROUPS[group] == "conv" else stack.mbytes
    return work * stack.misaligned(block) * (stack.group == group)


def _misaligned_prices(c: Dict[str, float], stack: Stack, block: int) -> np.ndarray:
    """(nodes,) the extra cost of ops whose channel count misses the vector block."""
    out = np.zeros(len(stack.mbytes))
    for t, grp in MISALIGNED_TERMS.items():
        if c.get(t, 0.0):
            out += c[t] * _misaligned_work(stack, GROUPS.index(grp), block)
    return out


def _group_prices(c: Dict[str, float], group: np.ndarray, mbytes: np.ndarray) -> np.ndarray:
    """(nodes,) each op's per-op overhead plus its group's traffic price times its bytes."""
    o = np.array([c.get(t, 0.0) for t in OP_TERMS])
    b = np.array([c.get(f"mbytes_{g}", 0.0) for g in GROUPS])
    return o[group] + b[group] * mbytes


def breakdown(model: CostModel, coef: Dict[str, float], table: NodeTable, attn_elems: float) -> Dict[str, float]:
    """Where one graph's predicted time goes (ms): compute, traffic (max: of memory-bound ops), traffic priced
    per op group, misaligned channel-wise ops, per-op overhead, constant."""
    a = np.array([coef.get(t, 0.0) for t in MAC_TERMS])
    compute = table.macs @ a
    traffic = coef.get("mbytes", 0.0) * table.mbytes
    o = np.array([coef.get(t, 0.0) for t in OP_TERMS])[table.group]
    st = Stack.of([table], [attn_elems])
    out = {"const": coef.get("const", 0.0), "attn_softmax": coef.get("attn_elems", 0.0) * attn_elems,
           "overhead": float(o.sum()),
           "group_traffic": float((_group_prices(coef, table.group, table.mbytes) - o).sum()),
           "misaligned": float(_misaligned_prices(coef, st, model.channel_block).sum())}
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


_MISALIGNED = tuple(MISALIGNED_TERMS)
_ALL_OPS = tuple(t for t in OP_TERMS if t != "ops_other")
_GROUP_TRAFFIC = ("mbytes_conv", "mbytes_depthwise", "mbytes_elementwise", "mbytes_transcendental", "mbytes_norm", "mbytes_pool",
                  "mbytes_attention")

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
        # traffic priced per op group, then + misaligned channel-wise ops, then + per-op overhead
        ("sum", ("const", "macs_dense", "macs_dw", "macs_attn", "attn_elems") + _GROUP_TRAFFIC),
        ("sum", ("const", "macs_dense", "macs_dw", "macs_attn", "attn_elems") + _GROUP_TRAFFIC + _MISALIGNED),
        ("max", ("const", "macs_dense", "macs_dw", "macs_attn", "attn_elems", "mbytes") + _GROUP_TRAFFIC[2:]
         + _MISALIGNED),
        ("max", ("const", "macs_dense", "macs_dw", "macs_attn", "attn_elems", "mbytes") + _GROUP_TRAFFIC[2:]
         + _MISALIGNED + ("ops_conv", "ops_layout")),
        ("sum", ("const", "macs_dense", "macs_dw", "macs_attn", "attn_elems") + _GROUP_TRAFFIC + _MISALIGNED
         + ("ops_conv", "ops_layout")),
        # + overhead per op of every group: an eager runtime (torch) pays a dispatch per op
        ("sum", ("const", "macs_dense", "macs_dw", "macs_attn", "attn_elems") + _GROUP_TRAFFIC + _MISALIGNED
         + _ALL_OPS),
    ]) + tuple(
    # + traffic of ops that outgrow a cache of 4 or 16 MB (an L2-sized and an L3-sized guess; held-out error picks)
    CostModel("sum", ("const", "macs_dense", "macs_dw", "macs_attn", "attn_elems") + _GROUP_TRAFFIC + _MISALIGNED
              + _ALL_OPS + (SPILL,), cache_mb=mb) for mb in (4.0, 16.0))
