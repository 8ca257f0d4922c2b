"""Points -> specs: a trial's (or a dict's) values assembled over the base spec, checked by the per-point
rules and the spec loader."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Dict, List, Mapping, Optional

import optuna

from ..errors import SpecError
from ..spec import load_spec
from ..blocks import MIXERS
from ..spec.model import Spec
from .keys import PARTS, STAGE_KEY_TABLE, write_part
from .model import InfeasiblePoint, SearchSpace, Target


# ------------------------------------------------------------------------------------ points -> specs
def suggest_values(trial: optuna.trial.BaseTrial, space: SearchSpace) -> Dict[str, Any]:
    """Suggest every parameter of the space, in a fixed order (the space is static)."""
    return {p.name: p.suggest(trial) for p in space.params}


def key_values(space: SearchSpace, values: Mapping[str, Any]) -> Dict[Target, Any]:
    out = dict(space.fixed)
    for p in space.params:
        for t in p.targets:
            out[t] = values[p.name]
    return out


def assemble(space: SearchSpace, values: Mapping[str, Any], name: str) -> Dict[str, Any]:
    """The raw spec data of a point; raises InfeasiblePoint for rule violations of the space."""
    kv = key_values(space, values)
    d = copy.deepcopy(space.base)
    d["name"] = name
    reasons: List[str] = []
    for (stage, key), v in kv.items():
        if stage is None:
            d[key] = v
    for i, st in enumerate(d["stages"]):
        values = {key: v for (stage, key), v in kv.items() if stage == i}
        for record in STAGE_KEY_TABLE:  # the stage's own keys (width, depth, width_mult, ...), in table order
            if record.write is not None and record.name in values and not set(record.yields_to) & set(values):
                why = record.write(st, values[record.name], d["stages"][i - 1] if i else None)
                if why:
                    reasons.append(f"stages[{i}].{why}")
        for part in PARTS:  # its mixer, downsample and positional encoding: kinds and their parameters
            write_part(st, part, values)
    widths = [s["width"] for s in d["stages"]]
    if space.rules.get("widths_non_decreasing"):
        for i in range(1, len(widths)):
            if widths[i] < widths[i - 1]:
                reasons.append(f"rules.widths_non_decreasing: stages[{i}].width {widths[i]} < "
                               f"stages[{i - 1}].width {widths[i - 1]}")
    k = space.rules.get("attention_in_last")
    if k is not None:
        for i, s in enumerate(d["stages"][: len(widths) - k]):
            if MIXERS[s["mixer"]["type"]].attention:  # pragma: no cover - shaped away at compile time
                reasons.append(f"rules.attention_in_last: stages[{i}] uses attention")
    if reasons:
        raise InfeasiblePoint(reasons)
    return d


def spec_from_values(space: SearchSpace, values: Mapping[str, Any], name: Optional[str] = None) -> Spec:
    """The spec of a point given as ``{parameter: value}``; InfeasiblePoint if it breaks a rule."""
    missing = [p.name for p in space.params if p.name not in values]
    if missing:
        raise SpecError(f"point lacks parameters {', '.join(missing)}", file=space.file)
    data = assemble(space, values, name or f"{space.name}_point")
    try:
        spec = load_spec(data)
    except SpecError as exc:  # a spec-language rule (replk multiples, whole heads, ...)
        raise InfeasiblePoint([f"{exc.path}: {exc.message}" if exc.path else exc.message]) from None
    return dataclasses.replace(spec, source=f"{space.file} (search point)")


def spec_from_trial(trial: optuna.trial.BaseTrial, space: SearchSpace, name: Optional[str] = None) -> Spec:
    """Suggest the space's parameters on ``trial`` (a Trial or a FixedTrial) and build the point's spec."""
    values = suggest_values(trial, space)
    return spec_from_values(space, values, name or f"{space.name}_{trial.number:04d}")


