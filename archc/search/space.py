"""Search spaces: a YAML file under ``search/`` compiled to a *static* Optuna space.

A space names a base spec (everything it does not vary comes from there), then per stage and for
the whole spec which keys vary. Each key is fixed (a scalar), a choice (a list) or a range
(``{low, high, step, log}``). Every trial suggests the same parameters with the same distributions
(inactive ones included, e.g. ``pos_enc_kernel`` of a stage without positional encoding), so
multivariate TPE and NSGA-II see one fixed space.

Rules are handled in one of two ways (documented in search/README.md):

- rules decidable per key *shape the choices* when the space is compiled: ``attention_in_last: k``
  removes ``attention`` from the mixer choices of the other stages; a non-integer ``width_mult`` in
  a stage whose patch embedding is ``replk`` (a grouped conv) can never be valid and is an error;
- rules that depend on several parameters (``widths_non_decreasing``, whole attention heads,
  replk widths that are multiples of the previous width, ...) are checked per point: a violating
  point raises :class:`InfeasiblePoint`; the search records such a trial as PRUNED with a positive
  ``rules`` constraint (so the samplers learn to avoid the region) without building it.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

from ..errors import ArchcError, SpecError, did_you_mean
from ..spec import load_spec, spec_to_dict
from ..spec.convert import convert_value, hints, public_fields
from ..blocks import DOWNSAMPLES, MIXERS, POS_ENCS
from ..spec.model import Spec, StageSpec
from ..spec.yamlsrc import Located, PathKey, format_path, read_yaml

#: space keys of a stage that are StageSpec fields of the same name
_STAGE_FIELDS = ("depth", "width", "mixer", "mlp_ratio", "ffn_kernel", "ffn", "conv_branches")
#: space keys that set a parameter of the stage's mixer kind (each kind declares its own: archc.blocks)
_MIXER_KEYS = tuple(MIXERS.search_keys())
#: space keys of a stage with their own meaning
_STAGE_EXTRA = {
    "width_mult": "width as a multiple of the previous stage's width (stages after the first)",
    "downsample_kernel": "kernel of the stage's patch embedding (its downsample)",
    "pos_enc": "none or a positional encoding kind: positional encoding after the downsample",
    "pos_enc_kernel": "kernel of the positional encoding",
}
#: every stage key, in the order a stage's parameters are suggested and listed
STAGE_KEYS = (("depth", "width", "width_mult", "mixer", "mlp_ratio") + _MIXER_KEYS
              + ("ffn", "ffn_kernel", "conv_branches", "downsample_kernel", "pos_enc", "pos_enc_kernel"))
#: top-level spec keys a space may fix or vary (scalars only)
SPEC_KEYS = ("input_size", "num_classes", "in_chans", "activation", "norm", "layer_scale_init", "drop_path_rate",
             "drop_rate")
#: spec fields that are training settings, not architecture: a start point may differ from the
#: space's base in these (e.g. Apple trains SA36/MA36 with layer scale 1e-6)
TRAINING_FIELDS = ("layer_scale_init", "drop_path_rate", "drop_rate")
POS_ENC_CHOICES = ("none",) + tuple(POS_ENCS)
_TOP_KEYS = ("name", "description", "base", "spec", "shared", "stage_defaults", "stages", "rules", "start_from")
_RULE_KEYS = {
    "attention_in_last": "attention only in the last k stages (shapes the mixer choices)",
    "widths_non_decreasing": "every stage at least as wide as the one before (checked per point)",
}

Target = Tuple[Optional[int], str]  # (stage index or None for the whole spec, space key)


class InfeasiblePoint(ArchcError):
    """A point of a space breaks a rule (of the space or of the spec language); it is not built."""

    def __init__(self, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__("infeasible point: " + "; ".join(self.reasons))


@dataclass(frozen=True)
class Param:
    """One Optuna parameter: its name, distribution and where its value goes in the spec."""

    name: str
    distribution: BaseDistribution
    targets: Tuple[Target, ...]
    origin: PathKey  # key path in the space file, for messages

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(self.name, d.choices)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(self.name, d.low, d.high, step=d.step, log=d.log)

    def canonical(self, value: Any) -> Any:
        """The distribution's own representation of ``value`` (``2.0`` -> choice ``2``), or raise ValueError."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            for c in d.choices:
                if (c is value) if isinstance(c, bool) or isinstance(value, bool) else (c == value):
                    return c
            raise ValueError(f"{value!r} is not one of {list(d.choices)}")
        if isinstance(d, IntDistribution):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool) and d._contains(value):
                return value
            raise ValueError(f"{value!r} is not in {d.low}..{d.high} step {d.step}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and d._contains(float(value)):
            return float(value)
        raise ValueError(f"{value!r} is not in {d.low}..{d.high}")


@dataclass(frozen=True)
class SearchSpace:
    """A compiled search space: the base spec, the parameters, the fixed values and the rules."""

    name: str
    file: str
    base: Dict[str, Any]                      # the base spec, every key explicit (spec_to_dict)
    params: Tuple[Param, ...]
    fixed: Dict[Target, Any]
    rules: Dict[str, Any]
    start_from: Tuple[str, ...] = ()           # spec files to enqueue first (resolved paths)
    description: str = ""

    @property
    def n_stages(self) -> int:
        return len(self.base["stages"])

    def distributions(self) -> Dict[str, BaseDistribution]:
        return {p.name: p.distribution for p in self.params}

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def fingerprint(self) -> str:
        """A hash of everything that decides which spec a point maps to (not the file's layout)."""
        blob = json.dumps({
            "base": self.base,
            "params": [(p.name, optuna.distributions.distribution_to_json(p.distribution), p.targets)
                       for p in self.params],
            "fixed": sorted((repr(k), v) for k, v in self.fixed.items()),
            "rules": self.rules,
        }, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def size(self) -> float:
        """Number of distinct points (inf for float ranges)."""
        n = 1.0
        for p in self.params:
            d = p.distribution
            if isinstance(d, CategoricalDistribution):
                n *= len(d.choices)
            elif isinstance(d, IntDistribution):
                n *= (d.high - d.low) // d.step + 1
            else:
                return math.inf
        return n


# ------------------------------------------------------------------------------------------- loading

def resolve_space_path(path: Union[str, Path]) -> Path:
    """A space path, or a shipped space by name (``fastvit``) or by its repository path
    (``search/fastvit.yaml``), so the default works from any directory after ``pip install .``."""
    from ..catalog import resolve_space
    return resolve_space(path)


def load_space(path: Union[str, Path]) -> SearchSpace:
    """Read and compile a search space YAML file; errors are SpecError with file, line and key path."""
    path = resolve_space_path(path)
    loc = read_yaml(path)
    return compile_space(loc, Path(path).parent)


def compile_space(loc: Located, directory: Path) -> SearchSpace:
    data = loc.data
    if not isinstance(data, dict):
        raise loc.error((), f"a search space must be a mapping of keys, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            raise loc.error((key,), f"unknown key '{key}'{did_you_mean(key, _TOP_KEYS)}; valid keys: {', '.join(_TOP_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or not all(c.isalnum() or c in "-_." for c in name):
        raise loc.error(("name",), f"expected a name of letters, digits, '-', '_' or '.', got {name!r}")
    base_name = data.get("base")
    if not isinstance(base_name, str):
        raise loc.error(("base",), f"expected the path of the base spec (relative to the space file), got {base_name!r}")
    base_path = directory / base_name
    if not base_path.is_file():
        from ..catalog import looks_like_path, model_index
        if looks_like_path(base_name) or base_name not in model_index():
            raise loc.error(("base",), f"base spec '{base_name}' not found (looked for {base_path}, and no "
                                       f"shipped model has that name{did_you_mean(base_name, model_index())})")
        base_path = model_index()[base_name]
    base_spec = load_spec(base_path)  # its own errors name its own file
    base = spec_to_dict(base_spec)
    n = len(base["stages"])

    rules = _compile_rules(loc, data.get("rules"), n)
    keys: Dict[Target, Tuple[Any, PathKey]] = {}   # every varied or fixed key: (raw value, origin)

    spec_section = _mapping(loc, data, "spec")
    for key, value in spec_section.items():
        if key not in SPEC_KEYS:
            raise loc.error(("spec", key), f"unknown spec key '{key}'{did_you_mean(key, SPEC_KEYS)}; "
                                           f"valid: {', '.join(SPEC_KEYS)}")
        keys[(None, key)] = (value, ("spec", key))

    shared = _mapping(loc, data, "shared")
    defaults = _mapping(loc, data, "stage_defaults")
    for section, mapping in (("shared", shared), ("stage_defaults", defaults)):
        for key in mapping:
            _check_stage_key(loc, (section, key), key)
    for key in defaults:
        if key in shared:
            raise loc.error(("stage_defaults", key), f"'{key}' is shared by all stages (shared.{key}); "
                                                     "remove it here or from shared")
    stages = data.get("stages", [])
    if not isinstance(stages, list):
        raise loc.error(("stages",), f"expected a list of {n} stages (one mapping per stage of the base), "
                                     f"got {type(stages).__name__}")
    if stages and len(stages) != n:
        raise loc.error(("stages",), f"the space has {len(stages)} stages but its base "
                                     f"'{base_name}' has {n}; give one entry per stage")
    per_stage: List[Dict[str, Tuple[Any, PathKey]]] = []
    for i in range(n):
        raw = stages[i] if stages else {}
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise loc.error(("stages", i), f"expected a mapping of stage keys, got {raw!r}")
        entry: Dict[str, Tuple[Any, PathKey]] = {}
        for key, value in defaults.items():
            entry[key] = (value, ("stage_defaults", key))
        for key, value in raw.items():
            _check_stage_key(loc, ("stages", i, key), key)
            if key in shared:
                raise loc.error(("stages", i, key), f"'{key}' is shared by all stages (shared.{key}); "
                                                    "remove it here or from shared")
            entry[key] = (value, ("stages", i, key))
        if "width" in entry and "width_mult" in entry:
            w_origin, m_origin = entry["width"][1], entry["width_mult"][1]
            drop = "width" if w_origin[0] == "stage_defaults" else "width_mult" if m_origin[0] == "stage_defaults" else None
            if drop is None:
                raise loc.error(m_origin, "give either width or width_mult for a stage, not both")
            del entry[drop]
        per_stage.append(dict(sorted(entry.items(), key=lambda kv: STAGE_KEYS.index(kv[0]))))

    params: List[Param] = []
    fixed: Dict[Target, Any] = {}
    for (stage, key), (value, origin) in keys.items():
        _add(loc, params, fixed, key, key, value, origin, ((stage, key),))
    for key, value in shared.items():
        targets = tuple((i, key) for i in range(n) if _applies(base, i, key))
        if not targets:
            raise loc.error(("shared", key), f"'{key}' applies to no stage of the base spec")
        _add(loc, params, fixed, key, key, value, ("shared", key), targets)
    for i, entry in enumerate(per_stage):
        for key, (value, origin) in entry.items():
            if not _applies(base, i, key):
                if origin[0] == "stage_defaults":
                    continue  # a default that does not apply to this stage (e.g. width_mult in stage 0)
                why = ("stage 0 has no previous stage" if key == "width_mult"
                       else f"stages[{i}] of the base has no downsample")
                raise loc.error(origin, f"'{key}' does not apply here: {why}")
            _add(loc, params, fixed, f"stages[{i}].{key}", key, value, origin, ((i, key),))

    _apply_attention_rule(loc, params, fixed, rules, n)
    _check_width_mult(loc, params, fixed, base, n)
    names = [p.name for p in params]
    assert len(names) == len(set(names)), f"archc bug: duplicate parameter names {names}"

    start = _start_points(loc, data.get("start_from"), directory)
    space = SearchSpace(name=name, file=loc.file, base=base, params=tuple(params), fixed=fixed, rules=rules,
                        start_from=start, description=str(data.get("description") or ""))
    return space


def _mapping(loc: Located, data: dict, key: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise loc.error((key,), f"expected a mapping, got {value!r}")
    return value


def _check_stage_key(loc: Located, path: PathKey, key: Any) -> None:
    if key not in STAGE_KEYS:
        raise loc.error(path, f"unknown stage key '{key}'{did_you_mean(key, STAGE_KEYS)}; valid: {', '.join(STAGE_KEYS)}")


def _applies(base: dict, stage: int, key: str) -> bool:
    if key == "width_mult":
        return stage > 0
    if key == "downsample_kernel":
        return base["stages"][stage].get("downsample") is not None
    return True


def _compile_rules(loc: Located, raw: Any, n: int) -> Dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise loc.error(("rules",), f"expected a mapping of rules, got {raw!r}")
    out: Dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _RULE_KEYS:
            valid = "; ".join(f"{k}: {v}" for k, v in _RULE_KEYS.items())
            raise loc.error(("rules", key), f"unknown rule '{key}'{did_you_mean(key, _RULE_KEYS)}; valid: {valid}")
        if key == "attention_in_last":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= n:
                raise loc.error(("rules", key), f"expected a number of stages from 0 to {n}, got {value!r}")
        elif not isinstance(value, bool):
            raise loc.error(("rules", key), f"expected true or false, got {value!r}")
        out[key] = value
    return out


# ----------------------------------------------------------------------------- values and distributions
def _field_meta(key: str) -> Tuple[Any, Dict[str, Any]]:
    """(type, metadata) the spec language uses for a space key, so values are checked the same way."""
    if key in SPEC_KEYS:
        f = {f.name: f for f in public_fields(Spec)}[key]
        tp = int if key == "input_size" else hints(Spec)[key]
        return tp, dict(f.metadata)
    if key == "mixer":
        return str, {"choices": tuple(MIXERS)}
    if key in _STAGE_FIELDS:
        f = {f.name: f for f in public_fields(StageSpec)}[key]
        return hints(StageSpec)[key], dict(f.metadata)
    for family in (MIXERS, DOWNSAMPLES, POS_ENCS):
        if key in family.search_keys():
            cls, f = family.params_field(key)
            return hints(cls)[f.name], dict(f.metadata)
    if key == "pos_enc":
        return str, {"choices": POS_ENC_CHOICES}
    if key == "width_mult":
        return float, {"min": 0.0625, "max": 64.0}
    raise KeyError(key)  # pragma: no cover - keys are checked before


def _check_value(loc: Located, key: str, value: Any, path: PathKey) -> Any:
    if key == "pos_enc" and value is None:
        value = "none"
    tp, meta = _field_meta(key)
    if key == "input_size" and isinstance(value, list):
        raise loc.error(path, "a space varies square inputs only: give an integer")
    value = convert_value(tp, value, meta, path, loc)
    if key == "width_mult" and isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def _add(loc: Located, params: List[Param], fixed: Dict[Target, Any], name: str, key: str, value: Any,
         origin: PathKey, targets: Tuple[Target, ...]) -> None:
    """A list becomes a categorical parameter (one choice: fixed), a mapping a range, a scalar a fixed value."""
    if isinstance(value, list):
        if not value:
            raise loc.error(origin, "an empty list of choices")
        choices = []
        for j, v in enumerate(value):
            v = _check_value(loc, key, v, origin + (j,))
            if v in choices:
                raise loc.error(origin + (j,), f"choice {v!r} is listed twice")
            choices.append(v)
        if len(choices) == 1:
            for t in targets:
                fixed[t] = choices[0]
            return
        params.append(Param(name, CategoricalDistribution(tuple(choices)), targets, origin))
        return
    if isinstance(value, dict):
        params.append(Param(name, _range(loc, key, value, origin), targets, origin))
        return
    value = _check_value(loc, key, value, origin)
    for t in targets:
        fixed[t] = value


def _range(loc: Located, key: str, raw: dict, origin: PathKey) -> BaseDistribution:
    allowed = ("low", "high", "step", "log")
    for k in raw:
        if k not in allowed:
            raise loc.error(origin + (k,), f"unknown range key '{k}'{did_you_mean(k, allowed)}; valid: {', '.join(allowed)}")
    for k in ("low", "high"):
        if k not in raw:
            raise loc.error(origin, f"a range needs 'low' and 'high' (e.g. {{low: 1, high: 6}}); missing '{k}'")
    tp, meta = _field_meta(key)
    if tp is str or tp is bool:
        raise loc.error(origin, f"'{key}' takes names, not a range: give a list of choices")
    low = _check_value(loc, key, raw["low"], origin + ("low",))
    high = _check_value(loc, key, raw["high"], origin + ("high",))
    if low > high:
        raise loc.error(origin, f"low {low} is greater than high {high}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise loc.error(origin + ("log",), f"expected true or false, got {log!r}")
    step = raw.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise loc.error(origin + ("step",), f"expected a positive number, got {step!r}")
    if step is not None and log:
        raise loc.error(origin + ("step",), "a range takes step or log, not both")
    is_int = tp is int or (key == "width_mult" and isinstance(low, int) and isinstance(high, int)
                           and (step is None or float(step).is_integer()))
    if is_int:
        if step is not None and not float(step).is_integer():
            raise loc.error(origin + ("step",), f"'{key}' is an integer: the step must be a whole number, got {step}")
        step = int(step or 1)
        if meta.get("odd") and (low % 2 == 0 or step % 2):
            raise loc.error(origin, f"kernel sizes must be odd: use an odd low and an even step "
                                    f"(e.g. {{low: 3, high: 7, step: 2}}), got low {low}, step {step}")
        if (high - low) % step:
            raise loc.error(origin + ("high",), f"high {high} is not low {low} plus a whole number of steps {step}")
        return IntDistribution(int(low), int(high), log=log, step=1 if log else step)
    return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))


def _apply_attention_rule(loc: Located, params: List[Param], fixed: Dict[Target, Any], rules: dict, n: int) -> None:
    k = rules.get("attention_in_last")
    if k is None:
        return
    first_allowed = n - k
    for idx, p in enumerate(list(params)):
        if not any(key == "mixer" for _, key in p.targets):
            continue
        early = [s for s, key in p.targets if key == "mixer" and s is not None and s < first_allowed]
        if not early or not isinstance(p.distribution, CategoricalDistribution) or "attention" not in p.distribution.choices:
            continue
        if len(early) != len(p.targets):
            raise loc.error(p.origin, f"a shared mixer cannot follow rules.attention_in_last: {k} "
                                      "(it would differ per stage); give mixers per stage")
        choices = tuple(c for c in p.distribution.choices if c != "attention")
        params.remove(p)
        if len(choices) == 1:
            for t in p.targets:
                fixed[t] = choices[0]
        else:
            params.insert(idx, dataclasses.replace(p, distribution=CategoricalDistribution(choices)))
    for (stage, key), value in fixed.items():
        if key == "mixer" and value == "attention" and stage is not None and stage < first_allowed:
            raise loc.error(("rules", "attention_in_last"),
                            f"stages[{stage}].mixer is fixed to attention but rules.attention_in_last: {k} "
                            f"allows attention only in stages {first_allowed}..{n - 1}")


def _check_width_mult(loc: Located, params: List[Param], fixed: Dict[Target, Any], base: dict, n: int) -> None:
    """A non-integer multiple can never give a replk patch embedding (groups = previous width) whole groups."""
    for i in range(1, n):
        ds = base["stages"][i].get("downsample") or {}
        if ds.get("type") != "replk":
            continue
        values: List[Tuple[Any, PathKey]] = []
        if (i, "width_mult") in fixed:
            values.append((fixed[(i, "width_mult")], ("stages", i, "width_mult")))
        for p in params:
            if (i, "width_mult") in p.targets:
                d = p.distribution
                if isinstance(d, CategoricalDistribution):
                    values += [(c, p.origin + (j,)) for j, c in enumerate(d.choices)]
                elif isinstance(d, FloatDistribution):
                    raise loc.error(p.origin, f"stages[{i}] has a replk patch embedding (groups = the previous "
                                              "width): its width_mult must be a whole number; use a list or an "
                                              "integer range")
        for v, origin in values:
            if not float(v).is_integer():
                raise loc.error(origin, f"width_mult {v} can never be valid in stages[{i}]: its replk patch "
                                        "embedding is a grouped conv (groups = the previous width), so the width "
                                        "must be a whole multiple; valid: whole numbers (or downsample type conv)")


def _start_points(loc: Located, raw: Any, directory: Path) -> Tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise loc.error(("start_from",), f"expected a list of spec files, got {raw!r}")
    out = []
    for j, name in enumerate(raw):
        p = directory / name
        if not p.is_file():
            raise loc.error(("start_from", j), f"spec '{name}' not found (looked for {p})")
        out.append(str(p))
    return tuple(out)


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
            if v is not _INACTIVE:
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


_INACTIVE = object()


def _value_of(spec: Spec, target: Target) -> Any:
    stage, key = target
    if stage is None:
        v = getattr(spec, key)
        return v[0] if key == "input_size" and v[0] == v[1] else list(v) if isinstance(v, tuple) else v
    s = spec.stages[stage]
    if key == "width_mult":
        return s.width / spec.stages[stage - 1].width
    if key == "downsample_kernel":
        return s.downsample.kernel if s.downsample is not None else None
    if key == "pos_enc":
        return s.pos_enc.type if s.pos_enc is not None else "none"
    if key == "pos_enc_kernel":
        return s.pos_enc.kernel if s.pos_enc is not None else _INACTIVE
    if key == "mixer":
        return s.mixer.type
    if key in _MIXER_KEYS:
        fname = MIXERS[s.mixer.type].search_keys.get(key)
        return getattr(s.mixer, fname) if fname is not None else _INACTIVE
    return getattr(s, key)


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
