"""Latency-model features of a spec's deploy graph, as views of its ``GraphProfile``.

A device profile predicts latency as a non-negative combination of work counts (MACs by op kind,
bytes moved, attention score elements, op count). Features come from the *deploy* graph, the graph
a device runs: the train-time branches, BatchNorms and skips the reparameterization pass folds away
would otherwise be counted as work the device never does.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Dict, FrozenSet, Optional, Tuple

import torch
import torch.nn as nn

from ..analysis.profile import LAYOUT_KINDS, GraphProfile, example_input, profile_graph
from ..spec import Spec, spec_to_yaml

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
}


def deploy_graph(spec: Spec) -> Tuple[nn.Module, str]:
    """The graph a device runs (``archc.deploy_model``: all branches, BNs, skips and scales folded).

    Random weights: the features count work, which does not depend on the weights. The pass's own
    equivalence check is skipped here (its tests run it); the graph kind is recorded in profiles.
    """
    from ..deploy import deploy_model
    return deploy_model(spec, verify=False), "deploy"


def profile_features(profile: GraphProfile) -> Dict[str, float]:
    """The latency-model features of one profiled graph (see ``FEATURES`` for units)."""
    f = {k: 0.0 for k in FEATURES}
    for n in profile.nodes:
        if n.kind in LAYOUT_KINDS:
            continue
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
    h, w = profile.input_shape[-2:]
    f["pixels"] = h * w / 1e6
    return f


def spec_features(spec: Spec, resolution: Optional[int] = None) -> Tuple[Dict[str, float], str]:
    """Features of ``spec`` (at ``resolution`` x ``resolution`` if given), and which graph they came from."""
    feats, graph, _ = _cached_features(spec_to_yaml(_sized(spec, resolution)))
    return dict(feats), graph


def spec_op_kinds(spec: Spec, resolution: Optional[int] = None) -> FrozenSet[str]:
    """The op kinds (``conv``, ``dwconv``, ``groupnorm``, ``pool``, ...) in ``spec``'s deploy graph."""
    return _cached_features(spec_to_yaml(_sized(spec, resolution)))[2]


def _sized(spec: Spec, resolution: Optional[int]) -> Spec:
    if resolution:
        return dataclasses.replace(spec, input_size=(int(resolution), int(resolution)))
    return spec


@lru_cache(maxsize=64)
def _cached_features(spec_yaml: str) -> Tuple[Tuple[Tuple[str, float], ...], str, FrozenSet[str]]:
    import yaml
    from ..spec import load_spec
    spec = load_spec(yaml.safe_load(spec_yaml))
    model, graph = deploy_graph(spec)
    with torch.no_grad():
        prof = profile_graph(model, example_input(spec.input_size, spec.in_chans))
    kinds = frozenset(k for k in prof.op_histogram())
    return tuple(profile_features(prof).items()), graph, kinds
