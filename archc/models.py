"""Named models, as timm users expect them: ``list_models("fastvit*")``, ``create_model("fastvit_sa12")``.

The names are the shipped specs' ``name:`` keys (``archc.catalog``), equal to timm's where timm has the
model, so a timm checkpoint of ``fastvit_sa12`` loads into ``create_model("fastvit_sa12")``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

import torch
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
                 deploy: bool = False, num_classes: Optional[int] = None, in_chans: Optional[int] = None,
                 overrides: Overrides = None) -> nn.Module:
    """Build a shipped model by name (or any spec path), optionally with weights, optionally lowered.

    - ``weights``: a timm, Apple ml-fastvit or archc checkpoint (file or state dict), loaded strictly;
      with ``deploy=True`` reparameterized checkpoints load too.
    - ``deploy``: return the verified deploy graph (a ``torch.fx.GraphModule`` in eval mode) instead of
      the train-time ``ArchNet`` (returned in train mode, like timm's ``create_model``).
    - ``num_classes``: a new classifier size. A checkpoint's classifier (``CLASSIFIER_KEYS``) that does not fit
      is left out and the new head keeps its fresh initialisation (timm's behaviour for fine-tuning);
      every other key must still fit.
    - ``in_chans``: input channels (timm's argument): the first convs of a checkpoint made for another count
      are adapted as timm's ``adapt_input_conv`` does (summed over the channels for 1, repeated and scaled by
      3/in_chans otherwise), so a grey or 4-channel model starts from the pretrained filters.
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
    if in_chans is not None and (isinstance(in_chans, bool) or not isinstance(in_chans, int)):
        raise SpecError(f"create_model(in_chans=...) takes an integer, got {type(in_chans).__name__} "
                        f"{in_chans!r:.40}")
    spec = load_spec(name, _with_key(_with_key(overrides, "num_classes", num_classes), "in_chans", in_chans))
    if weights is not None and (num_classes is not None or in_chans is not None):
        weights = _fit_to(build(spec), weights)
    if deploy:
        from .deploy import deploy_model
        return deploy_model(spec, weights)
    model = build(spec)
    if weights is not None:
        from .weights import load_weights
        load_weights(model, weights)
    return model


def _with_key(overrides: Overrides, key: str, value: Optional[int]) -> Overrides:
    if value is None:
        return overrides
    if isinstance(overrides, Mapping):
        return {**overrides, key: value}
    if isinstance(overrides, str):
        overrides = [overrides]
    return list(overrides or []) + [f"{key}={value}"]


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A conv weight made for ``weight.shape[1]`` input channels, for ``in_chans`` (timm's rule: the sum over
    channels for one, so a grey image gives what the same image as RGB gave; else the filters repeated and
    scaled by ``weight.shape[1] / in_chans``)."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def _is_input_conv(model: nn.Module, key: str) -> bool:
    """Whether ``key`` is the weight of a dense conv that reads the image itself (a stem conv on in_chans)."""
    if not key.startswith("stem.") or not key.endswith(".weight"):
        return False
    try:
        module = model.get_submodule(key.rsplit(".", 1)[0])
    except AttributeError:
        return False
    return isinstance(module, nn.Conv2d) and module.groups == 1 and module.in_channels == model.spec.in_chans


def _fit_to(model: nn.Module, weights: Union[str, Path, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The checkpoint's state dict (in model key names) fitted to ``model``: classifier entries whose shape
    differs replaced by the fresh model's, input convs made for another channel count adapted
    (``adapt_input_conv``); the strict load that follows checks every other key."""
    from .weights import ARCHC_FORMAT, read_checkpoint, to_model_keys, unwrap_state_dict
    source = str(weights) if not isinstance(weights, Mapping) else "state dict"
    obj = read_checkpoint(weights) if not isinstance(weights, Mapping) else weights
    sd, fmt = unwrap_state_dict(obj, source)
    sd = to_model_keys(sd, fmt)
    own = model.state_dict()
    unfit = [k for k, v in sd.items()
             if CLASSIFIER_KEYS.match(k) and k in own and tuple(v.shape) != tuple(own[k].shape)]
    inputs = {k: adapt_input_conv(v, own[k].shape[1]) for k, v in sd.items()
              if _is_input_conv(model, k) and v.ndim == 4 and v.shape[1] != own[k].shape[1]
              and (v.shape[0], *v.shape[2:]) == (own[k].shape[0], *own[k].shape[2:])}
    if not unfit and not inputs:
        return weights
    if isinstance(obj, Mapping) and obj.get("format") == ARCHC_FORMAT and obj.get("deploy"):
        raise WeightsError(f"{source}: an archc deploy checkpoint cannot take a new num_classes; "
                           "load the train-time checkpoint instead")
    return {**sd, **{k: own[k] for k in unfit}, **inputs}  # a plain state dict in archc/timm names
