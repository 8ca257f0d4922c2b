"""Named models, as timm users expect them: ``list_models("fastvit*")``, ``create_model("fastvit_sa12")``.

The names are the shipped specs' ``name:`` keys (``archc.catalog``), equal to timm's where timm has the
model, so a timm checkpoint of ``fastvit_sa12`` loads into ``create_model("fastvit_sa12")``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

import torch.nn as nn

from .catalog import list_models as _list_models
from .errors import WeightsError

#: the classifier's parameters: dropped from a checkpoint when ``num_classes`` asks for another head
#: (``head.fc.*`` for FastViT, MobileOne and MetaFormer; EfficientFormer's ``head.*`` and distilled ``head_dist.*``)
CLASSIFIER_KEYS = re.compile(r"^(head\.fc\.|head\.(weight|bias)$|head_dist\.(weight|bias)$)")

Overrides = Union[Sequence[str], Mapping[str, Any], None]


def list_models(pattern: str = "*") -> List[str]:
    """Names of the shipped models matching a shell-style pattern (``*``, ``?``, ``[...]``), sorted."""
    return _list_models(pattern)


def create_model(name: Union[str, Path], weights: Union[str, Path, Mapping[str, Any], None] = None, *,
                 deploy: bool = False, num_classes: Optional[int] = None, overrides: Overrides = None) -> nn.Module:
    """Build a shipped model by name (or any spec path), optionally with weights, optionally lowered.

    - ``weights``: a timm, Apple ml-fastvit or archc checkpoint (file or state dict), loaded strictly;
      with ``deploy=True`` reparameterized checkpoints load too.
    - ``deploy``: return the verified deploy graph (a ``torch.fx.GraphModule`` in eval mode) instead of
      the train-time ``ArchNet`` (returned in train mode, like timm's ``create_model``).
    - ``num_classes``: a new classifier size. A checkpoint's classifier (``CLASSIFIER_KEYS``) that does not fit
      is left out and the new head keeps its fresh initialisation (timm's behaviour for fine-tuning);
      every other key must still fit.
    - ``overrides``: more spec overrides, as for ``archc.load_spec`` (e.g. ``["input_size=384"]``).
    """
    from .builder import build
    from .errors import SpecError
    from .spec import load_spec
    if not isinstance(deploy, bool):
        raise SpecError(f"create_model(deploy=...) takes True or False, got {type(deploy).__name__} {deploy!r:.40}")
    if weights is not None and not isinstance(weights, (str, Path, Mapping)):
        raise WeightsError(f"create_model(weights=...) takes a checkpoint path or a state dict, got "
                           f"{type(weights).__name__}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
        raise SpecError(f"create_model(num_classes=...) takes an integer, got {type(num_classes).__name__} "
                        f"{num_classes!r:.40}")
    spec = load_spec(name, _with_num_classes(overrides, num_classes))
    if weights is not None and num_classes is not None:
        weights = _drop_unfit_classifier(build(spec), weights)
    if deploy:
        from .deploy import deploy_model
        return deploy_model(spec, weights)
    model = build(spec)
    if weights is not None:
        from .weights import load_weights
        load_weights(model, weights)
    return model


def _with_num_classes(overrides: Overrides, num_classes: Optional[int]) -> Overrides:
    if num_classes is None:
        return overrides
    if isinstance(overrides, Mapping):
        return {**overrides, "num_classes": num_classes}
    if isinstance(overrides, str):
        overrides = [overrides]
    return list(overrides or []) + [f"num_classes={num_classes}"]


def _drop_unfit_classifier(model: nn.Module, weights: Union[str, Path, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The checkpoint's state dict (in model key names) with classifier entries whose shape differs replaced by
    the fresh model's, so the strict load that follows checks every other key."""
    from .weights import ARCHC_FORMAT, read_checkpoint, to_model_keys, unwrap_state_dict
    source = str(weights) if not isinstance(weights, Mapping) else "state dict"
    obj = read_checkpoint(weights) if not isinstance(weights, Mapping) else weights
    sd, fmt = unwrap_state_dict(obj, source)
    sd = to_model_keys(sd, fmt)
    own = model.state_dict()
    unfit = [k for k, v in sd.items()
             if CLASSIFIER_KEYS.match(k) and k in own and tuple(v.shape) != tuple(own[k].shape)]
    if not unfit:
        return weights
    if isinstance(obj, Mapping) and obj.get("format") == ARCHC_FORMAT and obj.get("deploy"):
        raise WeightsError(f"{source}: an archc deploy checkpoint cannot take a new num_classes; "
                           "load the train-time checkpoint instead")
    return {**sd, **{k: own[k] for k in unfit}}  # a plain state dict in archc/timm names
