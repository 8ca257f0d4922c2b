"""A search space YAML file -> a static ``SearchSpace``: keys checked against the spec fields they set, rules
that shape choices applied, start points resolved."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

from ..errors import did_you_mean
from ..spec import load_spec, spec_to_dict
from ..spec.convert import convert_value, hints, public_fields
from ..blocks import DOWNSAMPLES, MIXERS
from ..spec.model import Spec
from ..spec.yamlsrc import Located, PathKey, read_yaml
from .keys import NONE, STAGE_KEY_RECORDS
from .model import Param, SPEC_KEYS, STAGE_KEYS, SearchSpace, Target, _RULE_KEYS, _TOP_KEYS


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
        targets = tuple((i, key) for i in range(n) if STAGE_KEY_RECORDS[key].applies(base, i) is None)
        if not targets:
            raise loc.error(("shared", key), f"'{key}' applies to no stage of the base spec")
        _add(loc, params, fixed, key, key, value, ("shared", key), targets)
    for i, entry in enumerate(per_stage):
        for key, (value, origin) in entry.items():
            why = STAGE_KEY_RECORDS[key].applies(base, i)
            if why is not None:
                if origin[0] == "stage_defaults":
                    continue  # a default that does not apply to this stage (e.g. width_mult in stage 0)
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
    return STAGE_KEY_RECORDS[key].value_type()


def _check_value(loc: Located, key: str, value: Any, path: PathKey) -> Any:
    record = STAGE_KEY_RECORDS.get(key)
    if value is None and record is not None and record.part is not None and record.part.optional \
            and record.name == record.part.chooser:
        value = NONE  # an optional part's null is its `none` choice (pos_enc: null)
    tp, meta = _field_meta(key)
    if key == "input_size" and isinstance(value, list):
        raise loc.error(path, "a space varies square inputs only: give an integer")
    value = convert_value(tp, value, meta, path, loc)
    if record is not None and record.whole_numbers and isinstance(value, float) and value.is_integer():
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
    whole = key in STAGE_KEY_RECORDS and STAGE_KEY_RECORDS[key].whole_numbers
    is_int = tp is int or (whole and isinstance(low, int) and isinstance(high, int)
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


def _is_attention(name: Any) -> bool:
    return isinstance(name, str) and name in MIXERS and MIXERS[name].attention


def _apply_attention_rule(loc: Located, params: List[Param], fixed: Dict[Target, Any], rules: dict, n: int) -> None:
    """``attention_in_last: k``: the attention kinds (``Kind.attention``) leave the mixer choices of the stages
    before the last k."""
    k = rules.get("attention_in_last")
    if k is None:
        return
    first_allowed = n - k
    for idx, p in enumerate(list(params)):
        if not any(key == "mixer" for _, key in p.targets):
            continue
        early = [s for s, key in p.targets if key == "mixer" and s is not None and s < first_allowed]
        if not early or not isinstance(p.distribution, CategoricalDistribution) \
                or not any(_is_attention(c) for c in p.distribution.choices):
            continue
        if len(early) != len(p.targets):
            raise loc.error(p.origin, f"a shared mixer cannot follow rules.attention_in_last: {k} "
                                      "(it would differ per stage); give mixers per stage")
        choices = tuple(c for c in p.distribution.choices if not _is_attention(c))
        params.remove(p)
        if len(choices) == 1:
            for t in p.targets:
                fixed[t] = choices[0]
        else:
            params.insert(idx, dataclasses.replace(p, distribution=CategoricalDistribution(choices)))
    for (stage, key), value in fixed.items():
        if key == "mixer" and _is_attention(value) and stage is not None and stage < first_allowed:
            raise loc.error(("rules", "attention_in_last"),
                            f"stages[{stage}].mixer is fixed to {value} but rules.attention_in_last: {k} "
                            f"allows attention only in stages {first_allowed}..{n - 1}")


def _check_width_mult(loc: Located, params: List[Param], fixed: Dict[Target, Any], base: dict, n: int) -> None:
    """A non-integer multiple can never fit a downsample grouped by its input width (``Kind.whole_width_multiple``:
    FastViT's replk patch embedding)."""
    for i in range(1, n):
        ds = base["stages"][i].get("downsample") or {}
        if ds.get("type") not in DOWNSAMPLES or not DOWNSAMPLES[ds["type"]].whole_width_multiple:
            continue
        kind = ds["type"]
        values: List[Tuple[Any, PathKey]] = []
        if (i, "width_mult") in fixed:
            values.append((fixed[(i, "width_mult")], ("stages", i, "width_mult")))
        for p in params:
            if (i, "width_mult") in p.targets:
                d = p.distribution
                if isinstance(d, CategoricalDistribution):
                    values += [(c, p.origin + (j,)) for j, c in enumerate(d.choices)]
                elif isinstance(d, FloatDistribution):
                    raise loc.error(p.origin, f"stages[{i}] has a {kind} patch embedding (groups = the previous "
                                              "width): its width_mult must be a whole number; use a list or an "
                                              "integer range")
        for v, origin in values:
            if not float(v).is_integer():
                raise loc.error(origin, f"width_mult {v} can never be valid in stages[{i}]: its {kind} patch "
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


