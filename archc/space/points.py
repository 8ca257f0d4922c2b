"""Points -> specs: a trial's (or a dict's) values assembled over the base spec, checked by the per-point
rules and the spec loader."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Dict, List, Mapping, Optional

import optuna

from ..errors import SpecError
from ..spec import load_spec
from ..blocks import MIXERS, POS_ENCS
from ..spec.model import Spec
from .model import InfeasiblePoint, SearchSpace, Target, _STAGE_FIELDS


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
        if (i, "width") in kv:
            st["width"] = kv[(i, "width")]
        elif (i, "width_mult") in kv:
            w = d["stages"][i - 1]["width"] * kv[(i, "width_mult")]
            if abs(w - round(w)) > 1e-9:
                reasons.append(f"stages[{i}].width = {d['stages'][i - 1]['width']} x {kv[(i, 'width_mult')]} "
                               "is not a whole number of channels")
            st["width"] = int(round(w))
        for key in _STAGE_FIELDS:
            if key not in ("width", "mixer") and (i, key) in kv:
                st[key] = kv[(i, key)]
        mixer = st["mixer"] if isinstance(st["mixer"], dict) else {"type": st["mixer"]}
        if (i, "mixer") in kv and kv[(i, "mixer")] != mixer["type"]:
            mixer = {"type": kv[(i, "mixer")]}  # another kind: its own defaults, then the space's keys
        for key, fname in MIXERS[mixer["type"]].search_keys.items():
            if (i, key) in kv:
                mixer[fname] = kv[(i, key)]
        for key in MIXERS[mixer["type"]].unused_keys:
            st.pop(key, None)  # a shared mlp_ratio, or the base stage's FFN, means nothing to a stage without one
        st["mixer"] = mixer
        if (i, "downsample_kernel") in kv:
            st["downsample"]["kernel"] = kv[(i, "downsample_kernel")]
        pe = kv.get((i, "pos_enc"), st["pos_enc"]["type"] if st.get("pos_enc") else "none")
        if pe == "none":
            st["pos_enc"] = None
        else:
            old = st.get("pos_enc") or {}
            st["pos_enc"] = dict(old) if old.get("type") == pe else {"type": pe}
            for key, fname in POS_ENCS[pe].search_keys.items():
                if (i, key) in kv:
                    st["pos_enc"][fname] = kv[(i, key)]
    widths = [s["width"] for s in d["stages"]]
    if space.rules.get("widths_non_decreasing"):
        for i in range(1, len(widths)):
            if widths[i] < widths[i - 1]:
                reasons.append(f"rules.widths_non_decreasing: stages[{i}].width {widths[i]} < "
                               f"stages[{i - 1}].width {widths[i - 1]}")
    k = space.rules.get("attention_in_last")
    if k is not None:
        for i, s in enumerate(d["stages"][: len(widths) - k]):
            if s["mixer"]["type"] == "attention":  # pragma: no cover - shaped away at compile time
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


