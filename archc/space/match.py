"""Specs -> points: where a spec sits in a space (the values that give it, or the keys that differ), so
known architectures can seed a search (``start_from``) and slimming can start from a model."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple

from optuna.distributions import BaseDistribution, CategoricalDistribution

from ..errors import SpecError
from ..spec import load_spec, spec_to_dict
from ..spec.model import Spec
from ..spec.yamlsrc import format_path
from .compile import compile_space, load_space
from .keys import INACTIVE, STAGE_KEY_RECORDS
from .model import InfeasiblePoint, Param, SPEC_KEYS, STAGE_KEYS, SearchSpace, TRAINING_FIELDS, Target
from .points import spec_from_trial, spec_from_values, suggest_values


# ------------------------------------------------------------------------------------ specs -> points
@dataclass
class PointMatch:
    """A spec found as a point of a space: its parameter values and the training settings it differs in."""

    values: Dict[str, Any]
    ignored: Dict[str, Tuple[Any, Any]]  # field -> (spec's value, the point's value)


def point_from_spec(spec: Spec, space: SearchSpace) -> PointMatch:
    """The point of ``space`` whose spec equals ``spec`` (ignoring name and training settings).

    Raises SpecError naming the keys in which ``spec`` leaves the space.
    """
    where = spec.source or spec.name
    problems: List[str] = []
    raw: Dict[str, Any] = {}
    for p in space.params:
        seen = []
        for t in p.targets:
            v = _value_of(spec, t)
            if v is not INACTIVE:
                seen.append((t, v))
        if not seen:
            raw[p.name] = _first(p.distribution)
            continue
        vals = {json.dumps(v, sort_keys=True, default=str) for _, v in seen}
        if len(vals) > 1:
            problems.append(f"{p.name}: the stages differ ({', '.join(f'{_tname(t)}={v}' for t, v in seen)}) "
                            "but the space shares one value")
            continue
        try:
            raw[p.name] = p.canonical(seen[0][1])
        except ValueError as exc:
            problems.append(f"{p.name}: {exc}")
    if problems:
        raise SpecError("not a point of the space: " + "; ".join(problems), file=where)
    try:
        got = spec_from_values(space, raw, spec.name)
    except InfeasiblePoint as exc:
        raise SpecError(f"maps to an infeasible point of the space: {exc}", file=where) from None
    a, b = spec_to_dict(spec), spec_to_dict(got)
    diffs = _diff(a, b)
    ignored = {k: v for k, v in diffs.items() if k in TRAINING_FIELDS}
    other = {k: v for k, v in diffs.items() if k not in TRAINING_FIELDS}
    if other:
        shown = "; ".join(f"{k}: {x!r} but the space fixes {y!r}" for k, (x, y) in list(other.items())[:6])
        raise SpecError(f"not a point of the space {space.name}: {shown}", file=where)
    return PointMatch(raw, ignored)


def _value_of(spec: Spec, target: Target) -> Any:
    stage, key = target
    if stage is None:
        v = getattr(spec, key)
        return v[0] if key == "input_size" and v[0] == v[1] else list(v) if isinstance(v, tuple) else v
    return STAGE_KEY_RECORDS[key].read(spec, stage)


def _tname(t: Target) -> str:
    return t[1] if t[0] is None else f"stages[{t[0]}].{t[1]}"


def _first(d: BaseDistribution) -> Any:
    if isinstance(d, CategoricalDistribution):
        return d.choices[0]
    return d.low


def _diff(a: Any, b: Any, path: str = "") -> Dict[str, Tuple[Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: Dict[str, Tuple[Any, Any]] = {}
        for k in list(a) + [k for k in b if k not in a]:
            if k == "name":
                continue
            out.update(_diff(a.get(k), b.get(k), f"{path}.{k}" if path else k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = {}
        for i, (x, y) in enumerate(zip(a, b)):
            out.update(_diff(x, y, f"{path}[{i}]"))
        return out
    return {} if a == b else {path: (a, b)}


def start_points(space: SearchSpace) -> List[Tuple[List[str], PointMatch]]:
    """The space's ``start_from`` specs as points, identical points merged (e.g. S12 and ablation V4)."""
    out: List[Tuple[List[str], PointMatch]] = []
    for path in space.start_from:
        spec = load_spec(path)
        match = point_from_spec(spec, space)
        for names, other in out:
            if other.values == match.values:
                names.append(spec.name)
                break
        else:
            out.append(([spec.name], match))
    return out


def describe_point(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


__all__ = ["SearchSpace", "Param", "InfeasiblePoint", "PointMatch", "load_space", "compile_space",
           "spec_from_trial", "spec_from_values", "suggest_values", "point_from_spec", "start_points",
           "STAGE_KEYS", "SPEC_KEYS", "format_path"]
