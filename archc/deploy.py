"""Deploy graphs from checkpoints: train-time, reparameterized (timm/Apple inference mode) or archc deploy files.

A reparameterized timm/Apple checkpoint matches archc's *reference-level* graph (same folds, same
``reparam_conv`` names), so it loads there, and the full pass continues from it. An archc deploy
checkpoint matches the full deploy graph, whose structure depends only on the spec.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Union

import torch.fx as fx

from .builder import build
from .passes import reparameterize
from .spec import Spec
from .weights import (ARCHC_FORMAT, check_and_load, checkpoint_bound, is_reparameterized, read_checkpoint,
                      to_model_keys, unwrap_state_dict)


def deploy_model(spec: Spec, weights: Union[str, Path, Mapping[str, Any], None] = None, *,
                 verify: bool = True) -> fx.GraphModule:
    """The verified deploy graph of ``spec``, with weights from any supported checkpoint (or random)."""
    model = build(spec).eval()
    if weights is None:
        return reparameterize(model, verify=verify)
    name = str(weights) if not isinstance(weights, Mapping) else "state dict"
    obj = read_checkpoint(weights, checkpoint_bound(model)) if not isinstance(weights, Mapping) else weights
    sd, fmt = unwrap_state_dict(obj, name)
    sd = to_model_keys(sd, fmt)
    if fmt == ARCHC_FORMAT and isinstance(obj, Mapping) and obj.get("deploy"):
        gm = reparameterize(model, verify=False)
        check_and_load(gm, sd, True, name)
        gm.weights_format = fmt
        return gm
    if is_reparameterized(sd):
        ref = reparameterize(model, level="reference", verify=False)
        check_and_load(ref, sd, True, name)
        gm = reparameterize(ref, verify=verify)
        gm.weights_format = f"{fmt} (reparameterized)"
        return gm
    check_and_load(model, sd, True, name)
    gm = reparameterize(model, verify=verify)
    gm.weights_format = fmt
    return gm
