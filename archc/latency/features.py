"""Latency-model features of a spec's deploy graph, as views of its ``GraphProfile``.

A device profile predicts latency as a non-negative combination of work counts (MACs by op kind,
bytes moved, attention score elements, op count). Features come from the *deploy* graph, the graph
a device runs: the train-time branches, BatchNorms and skips the reparameterization pass folds away
would otherwise be counted as work the device never does.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from functools import lru_cache
from typing import Dict, FrozenSet, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..errors import ArchcError
from ..analysis.profile import LAYOUT_KINDS, GraphProfile, example_input, profile_graph
from ..spec import Spec, sized_to_input, spec_to_yaml

#: every feature ``profile_features`` computes, with its unit (the profile YAML records these)
FEATURES: Dict[str, str] = {
    "macs_conv": "GMAC: dense convolutions with a spatial kernel (k > 1, groups = 1)",
    "macs_pointwise": "GMAC: 1x1 convolutions and linear layers (FFN, patch-embed projection, qkv, proj, head)",
    "macs_dw": "GMAC: depthwise and grouped convolutions",
    "macs_attn": "GMAC: attention matmuls QK^T and AV (2 x heads x tokens^2 x head_dim)",
    "attn_elems": "M: attention score elements, heads x tokens^2 per attention op (softmax work)",
    "act_mbytes": "MB: activation bytes read + written by every non-layout op (fp32, excluding weights)",
    "weight_mbytes": "MB: parameter bytes (fp32)",
    "ops": "count: non-layout ops in the deploy graph (per-op dispatch overhead)",
    "pixels": "M: input pixels (H x W)",
    "mbytes": "MB: memory traffic, activation bytes read + written plus weight bytes read, summed over ops",
    "mbytes_per_gmac": "MB/GMAC: memory intensity, mbytes over all MACs (a family's signature; used for range checks)",
    "mem_mbytes": "MB: activation bytes read + written by ops without MACs (elementwise, norms, pooling)",
    **{f"ops_{g}": f"count: {g} ops ({', '.join(k) or 'reshapes, transposes, views'})" for g, k in {
        "conv": ("conv", "linear", "matmul"), "depthwise": ("dwconv", "grouped conv"),
        "elementwise": ("add", "sub", "mul", "div", "relu"),
        "transcendental": ("gelu", "silu", "sigmoid", "hardswish", "tanh"),
        "norm": ("batchnorm", "groupnorm", "layernorm"), "pool": ("pool", "reduce"),
        "attention": ("attention", "softmax"), "layout": (), "other": ("concat", "anything else")}.items()},
    **{f"mbytes_{g}": f"MB: memory traffic of {g} ops alone (priced apart: each kernel streams at its own rate)"
       for g in ("conv", "depthwise", "elementwise", "transcendental", "norm", "pool", "attention", "other")},
    "mbytes_spill": "MB: traffic of ops that each move more than the profile's cache_mb (streamed from DRAM rather "
                    "than cache; computed per profile, 0 in this table)",
    "macs_misaligned": "GMAC: dense convs whose input channels are not a multiple of the vector block (the stem's 3 "
                       "colour channels): their reduction runs off the blocked kernel",
    **{f"mbytes_misaligned_{k}": f"MB: traffic of {what} whose channel count is not a multiple of the runtime's "
                                  "vector block (16 unless the profile says otherwise): these leave the blocked fast "
                                  "path (ONNX Runtime's NCHWc kernels) for a generic one"
       for k, what in (("dw", "depthwise and grouped convs"), ("pool", "pooling ops"))},
}

#: op kind -> overhead group (``ops_<group>`` features); kinds not listed are ``other``
OP_GROUPS: Dict[str, str] = {
    "conv": "conv", "dwconv": "depthwise", "linear": "conv", "matmul": "conv",
    "add": "elementwise", "sub": "elementwise", "mul": "elementwise", "div": "elementwise", "activation": "transcendental",
    "batchnorm": "norm", "groupnorm": "norm", "layernorm": "norm", "pool": "pool", "reduce": "pool",
    "attention": "attention", "softmax": "attention", "layout": "layout", "dropout": "layout",
}
GROUPS: Tuple[str, ...] = ("conv", "depthwise", "elementwise", "transcendental", "norm", "pool", "attention", "layout", "other")
#: activations as cheap as an add (a max or a clamp; runtimes fuse them into the conv before them); any other
#: activation (GELU's erf, SiLU's and hardswish's sigmoid) is ``transcendental``: several times the work per element
CHEAP_ACTIVATIONS = frozenset({"relu", "relu6", "leakyrelu", "hardtanh", "identity", "threshold"})
#: op kinds that a runtime vectorises across channels in blocks (NCHWc), falling back to a slow generic kernel
#: when the channel count is not a multiple of the block: depthwise convs and pooling
CHANNELWISE_KINDS = frozenset({"dwconv", "pool"})
#: the vector block (channels) of a cost model's ``mbytes_misaligned`` unless its profile says otherwise:
#: 16 fp32 lanes of AVX-512 (ONNX Runtime's MLAS NCHWc block on AVX-512 CPUs; 8 on AVX2)
DEFAULT_CHANNEL_BLOCK = 16


def op_group(kind: str, op: str = "", groups: int = 1) -> str:
    """The overhead/traffic group of an op of ``kind`` (``op``: the module class or function, lower case)."""
    if kind == "activation" and op in CHEAP_ACTIVATIONS:
        return "elementwise"
    if kind == "conv" and groups > 1:
        return "depthwise"
    return OP_GROUPS.get(kind, "other")
MAC_CLASSES: Tuple[str, ...] = ("dense", "dw", "attn")


@dataclasses.dataclass(frozen=True)
class NodeTable:
    """Per-op work of one graph, the unit a roofline-style model prices op by op.

    ``macs[i, j]``: GMAC of op i in class ``MAC_CLASSES[j]``; ``mbytes[i]``: MB it moves (activations
    in and out, weights in); ``group[i]``: index into ``GROUPS``; ``channels[i]``: the channel count whose
    alignment with a vector block decides the kernel: a channel-wise op's (see ``CHANNELWISE_KINDS``) output
    channels, a dense conv's input channels, else 0. Layout ops move nothing here.
    """

    macs: "np.ndarray"
    mbytes: "np.ndarray"
    group: "np.ndarray"
    channels: "np.ndarray" = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.channels is None:
            object.__setattr__(self, "channels", np.zeros(len(self.mbytes), dtype=np.int64))


def deploy_graph(spec: Spec) -> Tuple[nn.Module, str]:
    """The graph a device runs (``archc.deploy_model``: all branches, BNs, skips and scales folded).

    Random weights: the features count work, which does not depend on the weights. The pass's own
    equivalence check is skipped here (its tests run it); the graph kind is recorded in profiles.
    """
    from ..deploy import deploy_model
    return deploy_model(spec, verify=False), "deploy"


def _mac_class(n) -> Tuple[int, float]:
    """(index into MAC_CLASSES, GMAC) of one profiled node."""
    if n.kind == "conv":
        return (1 if n.detail.get("groups", 1) > 1 else 0), n.macs / 1e9
    if n.kind == "dwconv":
        return 1, n.macs / 1e9
    if n.kind == "attention":
        h, t, d = n.detail.get("heads", 0), n.detail.get("tokens", 0), n.detail.get("head_dim", 0)
        batch = n.out_shape[0] if n.out_shape else 1
        return 2, max(n.macs, 2 * batch * h * t * t * d) / 1e9
    return 0, n.macs / 1e9


def node_table(profile: GraphProfile) -> NodeTable:
    """The per-op table of a profiled graph (see ``NodeTable``)."""
    rows = len(profile.nodes)
    macs, mbytes, group = np.zeros((rows, len(MAC_CLASSES))), np.zeros(rows), np.zeros(rows, dtype=np.int64)
    channels = np.zeros(rows, dtype=np.int64)
    for i, n in enumerate(profile.nodes):
        group[i] = GROUPS.index(op_group(n.kind, n.detail.get("op", ""), n.detail.get("groups", 1)))
        if n.kind in LAYOUT_KINDS:
            continue
        if _channelwise(n) and n.out_shape and len(n.out_shape) == 4:
            channels[i] = n.out_shape[1]
        elif n.kind == "conv":  # a dense conv: its reduction (input) channels decide the kernel's blocking
            channels[i] = n.detail.get("in_channels", 0)
        j, gmac = _mac_class(n)
        macs[i, j] = gmac
        mbytes[i] = (n.bytes_read + n.bytes_written) / 1e6
    return NodeTable(macs=macs, mbytes=mbytes, group=group, channels=channels)


def _channelwise(n) -> bool:
    return n.kind in CHANNELWISE_KINDS or (n.kind == "conv" and n.detail.get("groups", 1) > 1)


def profile_features(profile: GraphProfile) -> Dict[str, float]:
    """The latency-model features of one profiled graph (see ``FEATURES`` for units)."""
    f = {k: 0.0 for k in FEATURES}
    for n in profile.nodes:
        group = op_group(n.kind, n.detail.get("op", ""), n.detail.get("groups", 1))
        f[f"ops_{group}"] += 1
        if n.kind in LAYOUT_KINDS:
            continue
        f["mbytes"] += (n.bytes_read + n.bytes_written) / 1e6
        f[f"mbytes_{group}"] += (n.bytes_read + n.bytes_written) / 1e6
        if _channelwise(n) and n.out_shape and len(n.out_shape) == 4 and n.out_shape[1] % DEFAULT_CHANNEL_BLOCK:
            f["mbytes_misaligned_" + ("pool" if group == "pool" else "dw")] += (n.bytes_read + n.bytes_written) / 1e6
        if n.kind == "conv" and group == "conv" and n.detail.get("in_channels", 0) % DEFAULT_CHANNEL_BLOCK:
            f["macs_misaligned"] += n.macs / 1e9
        if n.macs == 0 and n.kind != "attention":
            f["mem_mbytes"] += max(0, n.bytes_read + n.bytes_written - 4 * n.params) / 1e6
        f["ops"] += 1
        weight_bytes = 4 * n.params
        f["act_mbytes"] += max(0, n.bytes_read + n.bytes_written - weight_bytes) / 1e6
        if n.kind == "conv":
            key = "macs_pointwise" if n.detail.get("kernel", 1) == 1 else "macs_conv"
            if n.detail.get("groups", 1) > 1:
                key = "macs_dw"
            f[key] += n.macs / 1e9
        elif n.kind == "dwconv":
            f["macs_dw"] += n.macs / 1e9
        elif n.kind in ("linear", "matmul"):
            f["macs_pointwise"] += n.macs / 1e9
        elif n.kind == "attention":
            h, t, d = n.detail.get("heads", 0), n.detail.get("tokens", 0), n.detail.get("head_dim", 0)
            batch = n.out_shape[0] if n.out_shape else 1
            # torch's flop counter has no CPU formula for every SDPA backend: count the two matmuls here
            f["macs_attn"] += max(n.macs, 2 * batch * h * t * t * d) / 1e9
            f["attn_elems"] += batch * h * t * t / 1e6
    f["weight_mbytes"] = 4 * profile.total_params / 1e6
    gmac = f["macs_conv"] + f["macs_pointwise"] + f["macs_dw"] + f["macs_attn"]
    f["mbytes_per_gmac"] = f["mbytes"] / gmac if gmac > 0 else 0.0
    h, w = profile.input_shape[-2:]
    f["pixels"] = h * w / 1e6
    return f


def spec_features(spec: Spec, resolution: Optional[int] = None) -> Tuple[Dict[str, float], str]:
    """Features of ``spec`` (at ``resolution`` x ``resolution`` if given), and which graph they came from."""
    feats, graph = _cached_features(spec_to_yaml(_sized(spec, resolution)))[:2]
    return dict(feats), graph


def spec_node_table(spec: Spec, resolution: Optional[int] = None) -> NodeTable:
    """The per-op table of ``spec``'s deploy graph (at ``resolution`` if given)."""
    return _cached_features(spec_to_yaml(_sized(spec, resolution)))[3]


def spec_op_kinds(spec: Spec, resolution: Optional[int] = None) -> FrozenSet[str]:
    """The op kinds (``conv``, ``dwconv``, ``groupnorm``, ``pool``, ...) in ``spec``'s deploy graph."""
    return _cached_features(spec_to_yaml(_sized(spec, resolution)))[2]


def spec_op_patterns(spec: Spec, resolution: Optional[int] = None) -> FrozenSet[str]:
    """How ``spec``'s deploy-graph ops are chained (``op_patterns``): ``dwconv>relu``, ``pool>sub``, ..."""
    return _cached_features(spec_to_yaml(_sized(spec, resolution)))[4]


def _sized(spec: Spec, resolution: Optional[int]) -> Spec:
    if resolution:
        return dataclasses.replace(spec, input_size=(int(resolution), int(resolution)))
    return spec


#: arch YAML -> (meta-device deploy graph, graph kind), most recent last; see ``_cached_deploy_graph``
_DEPLOY_GRAPHS: "OrderedDict[str, Tuple[nn.Module, str]]" = OrderedDict()
_MAX_DEPLOY_GRAPHS = 64


def _cached_deploy_graph(arch_yaml: str) -> Tuple[nn.Module, str]:
    """One deploy graph per architecture, on the meta device: the graph does not depend on the input size
    (``archc bench --resolutions`` times one graph at every size too), and counting work needs no values."""
    if arch_yaml not in _DEPLOY_GRAPHS:
        import yaml
        from ..spec import load_spec
        _remember_graph(arch_yaml, *deploy_graph(load_spec(yaml.safe_load(arch_yaml))))
    _DEPLOY_GRAPHS.move_to_end(arch_yaml)
    return _DEPLOY_GRAPHS[arch_yaml]


def _remember_graph(arch_yaml: str, model: nn.Module, graph: str) -> None:
    import copy
    _DEPLOY_GRAPHS[arch_yaml] = (copy.deepcopy(model).to("meta"), graph)
    while len(_DEPLOY_GRAPHS) > _MAX_DEPLOY_GRAPHS:
        _DEPLOY_GRAPHS.popitem(last=False)


def _shared_spec(spec: Spec) -> Spec:
    """The spec whose graph stands for ``spec`` at every input size (256x256; its own where sized to its input)."""
    return spec if sized_to_input(spec) else dataclasses.replace(spec, input_size=(256, 256))


def remember_train_model(spec: Spec, model: nn.Module) -> None:
    """Lower ``model`` (a train-time model built from ``spec``, any weights) as the deploy graph the features of
    ``spec`` count, so a search trial that already built its candidate does not build it again to predict it."""
    from ..passes import reparameterize
    key = spec_to_yaml(_shared_spec(spec))
    if key not in _DEPLOY_GRAPHS:
        _remember_graph(key, reparameterize(model, verify=False), "deploy")  # traces a copy in eval mode


@lru_cache(maxsize=512)
def _cached_features(spec_yaml: str) -> Tuple[Tuple[Tuple[str, float], ...], str, FrozenSet[str], NodeTable,
                                              FrozenSet[str]]:
    import yaml
    from ..spec import load_spec
    spec = load_spec(yaml.safe_load(spec_yaml))
    # the architecture's graph is built and lowered once (at 256x256, or the spec's size where 256 is too small),
    # then profiled at each requested size on the meta device: the same figures, ~40x faster (SA12 at 384:
    # 0.2 s instead of 8.9 s), which matters when a calibration featurizes hundreds of points
    # (a graph sized to its input, EfficientFormer's attention bias, is built at the size it is profiled at)
    shared = _shared_spec(spec)
    try:
        model, graph = _cached_deploy_graph(spec_to_yaml(shared))
    except ArchcError:  # an architecture that needs a larger input than 256 (very deep strides)
        model, graph = _cached_deploy_graph(spec_to_yaml(spec))
    with torch.no_grad():
        prof = profile_graph(model, example_input(spec.input_size, spec.in_chans).to("meta"))
    kinds = frozenset(k for k in prof.op_histogram())
    return tuple(profile_features(prof).items()), graph, kinds, node_table(prof), op_patterns(prof)


def _op_label(cost) -> str:
    """An op's name in patterns: its kind, and for activations which one (a GELU and a ReLU cost differently)."""
    return cost.detail.get("op", cost.kind) if cost.kind == "activation" else cost.kind


def op_patterns(profile: GraphProfile) -> FrozenSet[str]:
    """Every ``producer>consumer`` pair of op labels along the graph's data flow, looking through layout ops.

    Op kinds alone cannot tell block families apart (a MobileOne and a FastViT both have convs, depthwise
    convs and activations); how they are chained can (a depthwise conv feeding a ReLU is MobileOne's, never
    FastViT's). A prediction whose graph has a pattern no calibration graph had comes from a block family
    the profile was not fitted on."""
    g = profile.graph
    cost = {n: d.get("cost") for n, d in g.nodes(data=True)}

    def consumers(node, seen):
        for nxt in g.successors(node):
            c = cost.get(nxt)
            if c is None or nxt in seen:
                continue
            seen.add(nxt)
            if c.kind in LAYOUT_KINDS:
                yield from consumers(nxt, seen)
            else:
                yield c

    out = set()
    for node, c in cost.items():
        if c is not None and c.kind not in LAYOUT_KINDS:
            out.update(f"{_op_label(c)}>{_op_label(d)}" for d in consumers(node, set()))
    return frozenset(out)
