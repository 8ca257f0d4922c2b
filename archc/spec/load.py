"""Load a spec: YAML -> inheritance (``base:``) -> overrides -> stage defaults -> checked ``Spec``.

Merging rules (documented in the README):
- mappings merge key by key, the inheriting file winning; lists and scalars replace;
- ``stages`` given as a mapping of index -> mapping patches the inherited stages by index;
- ``stage_defaults`` fills keys a stage does not set (``downsample`` only for stages after the first).
"""
from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Tuple, Union


from ..errors import SpecError, SpecErrorList, did_you_mean
from .convert import convert
from ..blocks import MIXERS
from .model import Spec, StageSpec
from .rules import check_spec
from .yamlsrc import Located, Origins, PathKey, format_path, parse_yaml, read_yaml

SpecSource = Union[str, Path, Mapping[str, Any], Spec]
MAX_BASE_DEPTH = 16


def load_spec(source: SpecSource, overrides: Union[Sequence[str], Mapping[str, Any], None] = None) -> Spec:
    """Load and check a spec from a YAML path, a mapping, or a Spec (returned as is if no overrides).

    ``overrides`` are ``"stages[2].mixer=attention"`` strings or a ``{path: value}`` mapping.
    """
    if isinstance(source, Spec) and not overrides:
        spec_from_located(resolve_raw(source))  # a Spec made with dataclasses.replace skipped the checks
        return source
    if not isinstance(source, (str, Path, Mapping, Spec)) or (isinstance(source, str) and not source.strip()):
        raise SpecError(f"a spec source is a YAML file path, a mapping or an archc.Spec, got {_short(source)}")
    loc = resolve_raw(source)
    if overrides:
        apply_overrides(loc, overrides)
    return spec_from_located(loc)


def _short(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def resolve_raw(source: SpecSource) -> Located:
    """The raw, merged data of a spec with ``base:`` chains resolved (no defaults applied)."""
    if isinstance(source, Spec):
        from .dump import spec_to_dict
        return Located(spec_to_dict(source), {}, source.source or f"<spec {source.name}>")
    if isinstance(source, Mapping):
        _check_nesting(source, "<dict>")
        loc = Located(copy.deepcopy(dict(source)), {}, "<dict>")
        return _resolve_base(loc, Path.cwd(), seen=())
    path = _spec_file(source)
    return _resolve_base(read_yaml(path), path.parent, seen=(path.resolve(),))


def _spec_file(source: Union[str, Path]) -> Path:
    """A path as given, or the shipped spec of a model name (``fastvit_sa12``; see ``archc.catalog``)."""
    from ..catalog import resolve_spec
    try:
        return resolve_spec(source)
    except OSError as exc:  # a name over the file system's limit, a path through a file, ...
        shown = str(source) if len(str(source)) <= 80 else str(source)[:60] + f"... ({len(str(source))} characters)"
        raise SpecError(f"spec {shown!r}: {exc.strerror or exc}") from None


#: deeper nesting than any spec has (a spec is at most stages -> stage -> mixer -> value)
MAX_NESTING = 32


def _check_nesting(data: Any, source: str) -> None:
    """Refuse absurdly nested mappings/lists before anything recursive touches them (no RecursionError)."""
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING:
            raise SpecError(f"{source}: nested deeper than {MAX_NESTING} levels; not a spec")
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)


def _resolve_base(loc: Located, directory: Path, seen: Tuple[Path, ...]) -> Located:
    if not isinstance(loc.data, dict):
        raise loc.error((), f"a spec must be a mapping of keys, got {type(loc.data).__name__}")
    base = loc.data.pop("base", None)
    if base is None:
        return loc
    if not isinstance(base, str):
        raise loc.error(("base",), f"expected a file name, got {base!r}")
    base_path = (directory / base)
    if not base_path.exists():
        from ..catalog import looks_like_path, model_index
        if looks_like_path(base) or base not in model_index():
            hint = did_you_mean(base, model_index()) if not looks_like_path(base) else ""
            raise loc.error(("base",), f"base spec {base!r} not found (looked for {str(base_path)!r}, and no "
                                       f"shipped model has that name{hint})")
        base_path = model_index()[base]  # a model name: the shipped spec
    if base_path.resolve() in seen:
        raise loc.error(("base",), f"inheritance cycle through {base!r}")
    if len(seen) >= MAX_BASE_DEPTH:
        raise loc.error(("base",), f"inheritance deeper than {MAX_BASE_DEPTH} files")
    parent = _resolve_base(read_yaml(base_path), base_path.parent, seen + (base_path.resolve(),))
    merged = copy.deepcopy(parent.data)
    origins: Origins = dict(parent.origins)
    _merge_into(merged, loc.data, (), loc, origins)
    return Located(merged, origins, loc.file, parent.layers + (loc.file,))


def _merge_into(dst: dict, src: dict, path: PathKey, loc: Located, origins: Origins) -> None:
    for key, value in src.items():
        sub = path + (key,)
        if sub in loc.origins:
            origins[sub] = loc.origins[sub]
        if key == "stages" and path == () and isinstance(value, dict):
            _patch_stages(dst, value, loc, origins)
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge_into(dst[key], value, sub, loc, origins)
        else:
            dst[key] = copy.deepcopy(value)
            for p, o in loc.origins.items():
                if p[: len(sub)] == sub:
                    origins[p] = o


def _patch_stages(dst: dict, patches: dict, loc: Located, origins: Origins) -> None:
    stages = dst.get("stages")
    if not isinstance(stages, list):
        raise loc.error(("stages",), "index patches need inherited stages (a 'base' with a stages list)")
    for index, patch in patches.items():
        if not isinstance(index, int) or not 0 <= index < len(stages):
            raise loc.error(("stages", index), f"no stage {index} to patch; the base has stages 0..{len(stages) - 1}")
        if not isinstance(patch, dict):
            raise loc.error(("stages", index), f"a stage patch must be a mapping, got {patch!r}")
        tmp = {"s": stages[index]}
        sub_loc = Located({}, {("s",) + p[2:]: o for p, o in loc.origins.items()
                               if p[:2] == ("stages", index)}, loc.file)
        tmp_origins: Origins = {}
        _merge_into(tmp, {"s": patch}, (), sub_loc, tmp_origins)
        stages[index] = tmp["s"]
        for p, o in tmp_origins.items():
            origins[("stages", index) + p[1:]] = o


# ----------------------------------------------------------------------------------------- overrides
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH_RE = re.compile(rf"{_NAME}(?:\[[0-9]+\]|\.{_NAME})*")
_PART_RE = re.compile(rf"({_NAME})|\[([0-9]+)\]")


def parse_key_path(text: str) -> PathKey:
    """``stages[2].mixer`` -> ``('stages', 2, 'mixer')``; raises SpecError on malformed paths."""
    if not isinstance(text, str) or not _PATH_RE.fullmatch(text):
        raise SpecError(f"malformed key path {text!r} (expected e.g. stages[2].mixer)")
    return tuple(int(i) if i else name for name, i in _PART_RE.findall(text))


def parse_override(text: str) -> Tuple[PathKey, Any]:
    """``"stages[2].mixer=attention"`` -> (path, value); the value is read as a YAML scalar/flow."""
    if not isinstance(text, str) or "=" not in text:
        raise SpecError(f"override {text!r} must look like key.path=value (e.g. stages[2].mixer=attention)")
    key, raw = text.split("=", 1)
    try:
        value = parse_yaml(raw, "override").data if raw.strip() else None
    except SpecError as exc:
        raise SpecError(f"override {text!r}: cannot read value {raw!r}: {exc.message}") from None
    return parse_key_path(key.strip()), value


def apply_overrides(loc: Located, overrides: Union[Sequence[str], Mapping[str, Any]]) -> None:
    items: Iterable[Tuple[PathKey, Any]]
    _check_nesting(overrides, "overrides")
    if isinstance(overrides, Mapping):
        for k in overrides:
            if not isinstance(k, str):
                raise SpecError(f"override key {k!r} must be a key path string such as 'stages[2].mixer'")
        items = [(parse_key_path(k), v) for k, v in overrides.items()]
    elif isinstance(overrides, str):
        items = [parse_override(overrides)]
    elif isinstance(overrides, (list, tuple)):
        items = [parse_override(o) for o in overrides]
    else:
        raise SpecError(f"overrides are a list of 'KEY=VALUE' strings or a {{key path: value}} mapping, got "
                        f"{type(overrides).__name__}")
    for path, value in items:
        set_path(loc, path, value)


def set_path(loc: Located, path: PathKey, value: Any) -> None:
    """Set ``path`` in raw spec data, creating mappings on the way; indexes must exist."""
    where = f"{loc.file} (override)"

    def fail(message: str) -> SpecError:
        return SpecError(message, file=where, path=format_path(path))

    node = loc.data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or not 0 <= part < len(node):
                raise fail(_no_index(node, part, path[:i]))
            if node[part] is None or not isinstance(node[part], (dict, list)):
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise fail(f"{format_path(path[:i])} is not a mapping")
            if isinstance(node.get(part), str) and not isinstance(nxt, int):
                node[part] = {"type": node[part]}  # mixer: attention -> {type: attention} to set mixer.head_dim
            if node.get(part) is None or not isinstance(node[part], (dict, list)):
                if isinstance(nxt, int):
                    raise fail(f"{format_path(path[:i + 1])} is not a list")
                node[part] = {}
            node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not 0 <= last < len(node):
            raise fail(_no_index(node, last, path[:-1]))
    elif not isinstance(node, dict):
        raise fail(f"{format_path(path[:-1])} is not a mapping")
    node[last] = copy.deepcopy(value)
    for j in range(1, len(path)):  # keys the override created point at the override, not the file
        loc.origins.setdefault(path[:j], (where, None))
    loc.origins = {p: o for p, o in loc.origins.items() if p[:len(path)] != path}
    loc.origins[path] = (where, None)


def _no_index(node: Any, index: int, at: PathKey) -> str:
    if not isinstance(node, list):
        return f"{format_path(at)} is not a list"
    valid = f"0 to {len(node) - 1}" if node else "none (the list is empty)"
    return f"no index {index} in {format_path(at)}; valid: {valid}"


# ------------------------------------------------------------------------------------ raw -> Spec
def spec_from_located(loc: Located) -> Spec:
    """The checked Spec of merged raw data. Every mistake of the file is reported at once (SpecErrors, capped
    in the message): unknown keys and bad values first; cross-field rules once the values are sound."""
    data = loc.data
    if not isinstance(data, dict):
        raise loc.error((), f"a spec must be a mapping of keys, got {type(data).__name__}")
    if "base" in data:  # only reachable through an override: bases are resolved before overrides apply
        raise loc.error(("base",), "'base' can only be set in a spec file, not by an override")
    errors = SpecErrorList()
    data = dict(data)
    defaults = data.pop("stage_defaults", None) or {}
    if not isinstance(defaults, dict):
        errors.add(loc.error(("stage_defaults",), f"expected a mapping, got {defaults!r}"))
        defaults = {}
    stage_keys = list(StageSpec.accepted_keys())
    for key in list(defaults):
        if key not in stage_keys:
            errors.add(loc.error(("stage_defaults", key), f"unknown stage key {key!r}"
                                 f"{did_you_mean(key, stage_keys)}; valid keys: {', '.join(stage_keys)}"))
            defaults = {k: v for k, v in defaults.items() if k != key}
    stages = data.get("stages")
    if isinstance(stages, list):
        data["stages"] = [_with_defaults(s, defaults, i, loc) for i, s in enumerate(stages)]
    elif "stages" in data:
        raise loc.error(("stages",), f"expected a list of stages, got {type(stages).__name__}")
    spec = None
    with errors.collect():
        spec = convert(Spec, data, (), loc, also_valid=("base", "stage_defaults"))  # unknown keys reported here
    errors.raise_any()
    spec = dataclasses.replace(spec, source=loc.file)
    check_spec(spec, loc)
    return spec


def _with_defaults(stage: Any, defaults: dict, index: int, loc: Located) -> Any:
    if not isinstance(stage, dict):
        return stage  # the converter reports the type error with its path
    out = dict(stage)
    mixer = out.get("mixer", defaults.get("mixer"))
    name = mixer.get("type") if isinstance(mixer, dict) else mixer
    kind = MIXERS[name] if isinstance(name, str) and name in MIXERS else None
    flat = StageSpec.flat_keys()
    for key, value in defaults.items():
        if key == "downsample" and index == 0 and key not in out:
            continue  # stage 0 takes the stem's output; it gets a downsample only if it sets one
        if kind is not None and ((key in flat and key not in kind.search_keys) or key in kind.unused_keys):
            continue  # a default for another mixer's key (or an FFN's) applies to the stages that have it only
        if key not in out:
            out[key] = copy.deepcopy(value)
            _copy_origin(loc, ("stage_defaults", key), ("stages", index, key))
        elif isinstance(value, dict) and isinstance(out[key], dict) and value.get("type", out[key].get("type")) \
                == out[key].get("type", value.get("type")):  # a default for another kind does not apply
            merged = copy.deepcopy(value)
            merged.update(out[key])
            out[key] = merged
            for sub in value:
                if sub not in stage[key]:
                    _copy_origin(loc, ("stage_defaults", key, sub), ("stages", index, key, sub))
    return out


def _copy_origin(loc: Located, src: PathKey, dst: PathKey) -> None:
    if src in loc.origins and dst not in loc.origins:
        loc.origins[dst] = loc.origins[src]
