"""Turn raw (validated-nothing) data into frozen spec dataclasses, driven by field metadata.

One generic converter reads each dataclass's type hints and field metadata, so adding a key to
``model.py`` is all it takes to parse, validate and document it. Errors carry the key path.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from functools import lru_cache
from typing import Any, Dict, Literal, Tuple, Union, get_args, get_origin

from ..errors import SpecErrorList, closest, did_you_mean
from .yamlsrc import Located, PathKey

_NONE = type(None)


@lru_cache(maxsize=None)
def hints(cls) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def public_fields(cls) -> Tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if not f.metadata.get("internal"))


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "mapping", _NONE: "null"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def convert(cls, data: Any, path: PathKey, loc: Located, also_valid: Tuple[str, ...] = ()):
    """Build dataclass ``cls`` from ``data`` found at ``path``; raise SpecError(s) naming the path: every unknown
    key (``also_valid``: keys the caller handled, named among the valid ones) and every bad value. A required key
    that an unknown key misspells is not reported missing as well."""
    if isinstance(data, str) and "type" in hints(cls):
        data = {"type": data}  # shorthand: ``downsample: conv`` == ``downsample: {type: conv}``
    if not isinstance(data, dict):
        raise loc.error(path, f"expected a mapping, got {_type_name(data)} {_show(data)}")
    if hasattr(cls, "pre_convert"):
        data = cls.pre_convert(data, path, loc)
    fields = {f.name: f for f in public_fields(cls)}
    errors = SpecErrorList()  # every mistake of the mapping, not just the first
    valid = tuple(fields) + tuple(also_valid)
    misspelt = set()
    for key in data:
        if key not in fields:
            misspelt.add(closest(key, valid))
            errors.add(loc.error(path + (key,), f"unknown key {_show(key)}{did_you_mean(key, valid)}; "
                                                f"valid keys: {', '.join(valid)}"))
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            with errors.collect():
                kwargs[name] = convert_value(hints(cls)[name], data[name], f.metadata, path + (name,), loc)
        elif f.metadata.get("required") and name not in misspelt:
            errors.add(loc.error(path + (name,), f"missing required key '{name}' ({f.metadata.get('help', '')})"))
    errors.raise_any()
    return cls(**kwargs)


def convert_value(tp: Any, value: Any, meta: Dict[str, Any], path: PathKey, loc: Located) -> Any:
    origin = get_origin(tp)
    if origin is Union:
        args = [a for a in get_args(tp) if a is not _NONE]
        if value is None:
            if _NONE in get_args(tp):
                return None
        return convert_value(args[0], value, meta, path, loc)
    if value is None:
        raise loc.error(path, "must not be null")
    if "family" in meta:
        return convert_kind(meta["family"], value, path, loc)
    if dataclasses.is_dataclass(tp):
        return convert(tp, value, path, loc)
    if origin is Literal or "choices" in meta:
        choices = tuple(meta.get("choices") or get_args(tp))
        if not isinstance(value, str) or value not in choices:
            raise loc.error(path, f"invalid value {_show(value)}{did_you_mean(value, choices)}; "
                                  f"valid: {', '.join(choices)}")
        return value
    if origin in (tuple, Tuple):
        return _convert_tuple(tp, value, meta, path, loc)
    if tp is bool:
        if not isinstance(value, bool):
            raise loc.error(path, f"expected true or false, got {_type_name(value)} {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise loc.error(path, f"expected an integer{_range(meta)}, got {_type_name(value)} {_show(value)}")
        _check_bounds(value, meta, path, loc)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise loc.error(path, f"expected a finite number{_range(meta)}, got {_type_name(value)} {_show(value)}")
        _check_bounds(value, meta, path, loc)
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value.strip():
            raise loc.error(path, f"expected a non-empty string, got {_type_name(value)} {_show(value)}")
        limit = meta.get("max_len")
        if (meta.get("printable") and not value.isprintable()) or (limit and len(value) > limit):
            # a name is printed in tables and logs: an escape sequence or a NUL must never reach the terminal
            raise loc.error(path, f"invalid value {_show(value)}: allowed are letters, digits, spaces and "
                                  f"punctuation (no control or formatting characters), at most {limit} characters")
        return value
    raise TypeError(f"archc bug: no converter for {tp!r} at {path}")  # pragma: no cover


def convert_kind(family: Any, value: Any, path: PathKey, loc: Located) -> Any:
    """A kind of a plug-in family: its name, or ``{type: NAME, ...}`` (``type`` may be left to the family's
    default), converted with that kind's parameter dataclass."""
    names = tuple(family)
    if isinstance(value, str):
        if value not in family:
            raise loc.error(path, f"invalid value {_show(value)}{did_you_mean(value, names)}; valid: {', '.join(names)}")
        value = {"type": value}
    if not isinstance(value, dict):
        raise loc.error(path, f"invalid value {_show(value)}: expected a mapping, got {_type_name(value)} "
                              f"{_show(value)} (or a {family.name} name); valid: {', '.join(names)}")
    name = value.get("type", family.default)
    if name is None:
        raise loc.error(path, f"missing required key 'type' ({family.help}); valid: {', '.join(names)}")
    if not isinstance(name, str) or name not in family:
        raise loc.error(path + ("type",), f"invalid value {_show(name)}{did_you_mean(name, names)}; "
                                          f"valid: {', '.join(names)}")
    return convert(family[name].params, {**value, "type": name}, path, loc)


def _convert_tuple(tp: Any, value: Any, meta: Dict[str, Any], path: PathKey, loc: Located) -> tuple:
    args = get_args(tp)
    if isinstance(value, tuple):  # Python callers pass tuples (input_size=(224, 224)); YAML gives lists
        value = list(value)
    if len(args) == 2 and args[1] is Ellipsis:  # Tuple[X, ...]
        if not isinstance(value, list):
            raise loc.error(path, f"expected a list, got {_type_name(value)} {_show(value)}")
        if not value:
            raise loc.error(path, "must not be empty")
        errors, items = SpecErrorList(), []
        for i, v in enumerate(value):
            with errors.collect():
                items.append(convert_value(args[0], v, meta, path + (i,), loc))
        errors.raise_any()
        return tuple(items)
    # fixed-size tuple of scalars; a scalar means "the same for all" (input_size: 256)
    if not isinstance(value, list):
        value = [value] * len(args)
    if len(value) != len(args):
        raise loc.error(path, f"expected {len(args)} values, got {len(value)}: {_show(value)}")
    return tuple(convert_value(a, v, meta, path, loc) for a, v in zip(args, value))


def _range(meta: Dict[str, Any]) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    return f" ({lo} to {hi})" if lo is not None and hi is not None else ""


def _check_bounds(value: float, meta: Dict[str, Any], path: PathKey, loc: Located) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise loc.error(path, f"value {_show(value)} out of range; valid: {lo} to {hi}")
    if meta.get("odd") and int(value) % 2 == 0:
        raise loc.error(path, f"kernel size {value} must be odd (centred padding keeps every "
                              f"branch aligned so the branches fold into one conv)")
