"""The contract every registered kind keeps, checked the same way for each (Optuna-style: one set of checks over
every registered kind, a plug-in's included). ``tests/test_kind_contract.py`` runs it over the registries, and
the walkthrough of docs/ADD_A_BLOCK.md is applied for real and run through it.

For a kind of a family, ``minimal_specs`` places it, with its default parameters, into small host specs (a
FastViT-style and an EfficientFormer-style one, with and without a downsample, under every norm); the contract
then asks of each instance that loads:

- it builds and runs with the promised output shape;
- its deploy graph computes the same function (BatchNorm statistics and layer scales randomised) and keeps
  nothing the pass's invariants forbid outside what the kind declares (``Kind.deploy_leaves``);
- it round-trips through YAML (dump, load: equal ``Spec``) and the JSON schema names it;
- a block kind's search keys round-trip through a search space and Optuna's ``FixedTrial``.

A kind that refuses a norm (``Kind.norms``) is refused with that norm at load time, with a message naming it.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Dict, Iterator, List, Tuple

import torch

from .blocks import DOWNSAMPLES, HEADS, MIXERS, POS_ENCS, STEMS
from .builder import build
from .errors import SpecError
from .passes import invariant_violations, reparameterize
from .spec import load_spec, spec_json_schema, spec_to_dict
from .spec.registry import NORMS
from .testing import randomize_

#: where each family's kind goes in a host spec
FAMILIES = {"mixer": MIXERS, "downsample": DOWNSAMPLES, "pos_enc": POS_ENCS, "stem": STEMS, "head": HEADS}

_FASTVIT = {"name": "contract", "num_classes": 5, "input_size": 32, "layer_scale_init": 0.5,
            "stem": {"type": "mobileone", "kernel": 3},
            "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
                       {"depth": 2, "width": 32, "mixer": "repmixer", "downsample": {"type": "replk", "kernel": 3}}],
            "head": {"type": "mobileone_se"}}
_EFFICIENTFORMER = {"name": "contract", "num_classes": 5, "input_size": 32, "layer_scale_init": 0.5,
                    "stem": {"type": "conv_relu", "kernel": 3},
                    "stages": [{"depth": 1, "width": 16, "mixer": "meta4d"},
                               {"depth": 2, "width": 32, "mixer": "meta4d",
                                "downsample": {"type": "conv_bn", "kernel": 3, "stride": 2}}],
                    "head": {"type": "distilled"}}
HOSTS = (_FASTVIT, _EFFICIENTFORMER)


def _placed(host: dict, family: str, kind: str, downsample: bool, norm: str) -> dict:
    spec = copy.deepcopy(host)
    spec["norm"] = norm
    last = spec["stages"][-1]
    if family == "mixer":
        last["mixer"] = {"type": kind}
        if not downsample:
            last.pop("downsample", None)
            last["width"] = spec["stages"][0]["width"]
    elif family in ("downsample", "pos_enc"):
        last[family] = {"type": kind}
    else:
        spec[family] = {"type": kind}
    return spec


def minimal_specs(family: str, kind: str) -> Iterator[Tuple[str, dict, Any]]:
    """(label, spec mapping, loaded Spec or the SpecError it raised) for each placement of ``kind``."""
    for h, host in enumerate(HOSTS):
        for downsample in ((True, False) if family == "mixer" else (True,)):
            for norm in NORMS:
                data = _placed(host, family, kind, downsample, norm)
                label = f"{family} {kind} in host {h} ({'with' if downsample else 'no'} downsample, {norm})"
                try:
                    yield label, data, load_spec(data)
                except SpecError as exc:
                    yield label, data, exc


def check_instance(spec, seed: int = 0) -> List[str]:
    """What breaks the contract for one loaded instance (empty: it holds)."""
    problems: List[str] = []
    torch.manual_seed(seed)
    model = randomize_(build(spec).eval(), seed=seed)
    x = torch.randn(2, spec.in_chans, *spec.input_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = model(x)
    if tuple(out.shape) != (2, spec.num_classes):
        problems.append(f"output shape {tuple(out.shape)}, expected {(2, spec.num_classes)}")
    try:
        gm = reparameterize(model, verify=True)  # raises LoweringError if the deploy graph computes otherwise
    except Exception as exc:  # noqa: BLE001  (the contract reports every failure, whatever its kind)
        problems.append(f"does not lower: {exc}")
    else:
        problems += invariant_violations(gm)
    again = load_spec(json.loads(json.dumps(spec_to_dict(spec))))
    if again != spec:
        problems.append("does not round-trip through spec_to_dict / load_spec")
    return problems


def check_kind(family: str, kind: str) -> Dict[str, Any]:
    """Run the contract for one kind: ``{"instances": n, "problems": [...], "refused": [...]}``."""
    k = FAMILIES[family][kind]
    schema = json.dumps(spec_json_schema())
    problems: List[str] = []
    refused: List[str] = []
    if f'"{kind}"' not in schema:
        problems.append(f"the JSON schema does not name {family} kind '{kind}'")
    n = 0
    for label, data, spec in minimal_specs(family, kind):
        if isinstance(spec, SpecError):
            norms = getattr(k, "norms", None)
            if norms is not None and data["norm"] not in norms and data["norm"] not in str(spec):
                problems.append(f"{label}: refused without naming the norm: {spec}")
            refused.append(f"{label}: {spec}")
            continue
        n += 1
        problems += [f"{label}: {p}" for p in check_instance(spec)]
    if n == 0:
        problems.append(f"no host spec takes {family} kind '{kind}' with its default parameters: " +
                        "; ".join(refused[:2]))
    return {"instances": n, "problems": problems, "refused": refused}
