"""JSON Schema for spec files (editor completion), generated from the same field metadata."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Literal, Tuple, Union, get_args, get_origin

from .convert import hints, public_fields
from .model import Spec, StageSpec

_NONE = type(None)


def _family_schema(family: Any, defs: Dict[str, Any]) -> Dict[str, Any]:
    """A kind's name, or the mapping of one of the family's kinds (each kind's parameters, from its record)."""
    options: list = [{"type": "string", "enum": list(family), "description": family.help}]
    for kind in family.kinds():
        name = kind.params.__name__
        if name not in defs:
            defs[name] = {}
            defs[name] = _object_schema(kind.params, defs)
            if family.default != kind.name:
                defs[name]["required"] = ["type"]
        options.append({"$ref": f"#/$defs/{name}"})
    return {"anyOf": options}


def _type_schema(tp: Any, meta: Dict[str, Any], defs: Dict[str, Any]) -> Dict[str, Any]:
    if "family" in meta:
        if get_origin(tp) is Union:
            return {"anyOf": [_family_schema(meta["family"], defs), {"type": "null"}]}
        return _family_schema(meta["family"], defs)
    origin = get_origin(tp)
    if origin is Union:
        inner = [a for a in get_args(tp) if a is not _NONE]
        return {"anyOf": [_type_schema(inner[0], meta, defs), {"type": "null"}]}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}
            defs[name] = _object_schema(tp, defs)
        ref = {"$ref": f"#/$defs/{name}"}
        if "type" in hints(tp):  # string shorthand: downsample: conv
            return {"anyOf": [ref, {"type": "string", "enum": list(_choices(hints(tp)["type"], {}))}]}
        return ref
    if origin is Literal or "choices" in meta:
        return {"type": "string", "enum": list(_choices(tp, meta))}
    if origin in (tuple, Tuple):
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "minItems": 1, "items": _type_schema(args[0], meta, defs)}
        item = _type_schema(args[0], meta, defs)
        return {"anyOf": [item, {"type": "array", "items": item, "minItems": len(args), "maxItems": len(args)}]}
    out: Dict[str, Any] = {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
                           str: {"type": "string", "minLength": 1}}[tp].copy()
    if "min" in meta:
        out["minimum"] = meta["min"]
    if "max" in meta:
        out["maximum"] = meta["max"]
    if meta.get("printable"):
        out["pattern"] = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"  # no control characters (the loader: isprintable)
    if "max_len" in meta:
        out["maxLength"] = meta["max_len"]
    return out


def _choices(tp: Any, meta: Dict[str, Any]) -> Tuple[str, ...]:
    return tuple(meta.get("choices") or get_args(tp))


def _object_schema(cls, defs: Dict[str, Any]) -> Dict[str, Any]:
    props, required = {}, []
    for f in public_fields(cls):
        schema = _type_schema(hints(cls)[f.name], dict(f.metadata), defs)
        schema["description"] = f.metadata.get("help", "")
        if f.default is not dataclasses.MISSING and not dataclasses.is_dataclass(f.default):
            default = f.default
            schema["default"] = list(default) if isinstance(default, tuple) else default
        if f.metadata.get("required"):
            required.append(f.name)
        props[f.name] = schema
    for key, owners in getattr(cls, "flat_keys", dict)().items():  # today's flat mixer keys (head_dim: 32)
        kind, fname = owners[0]
        f = {f.name: f for f in dataclasses.fields(kind.params)}[fname]
        schema = _type_schema(hints(kind.params)[fname], dict(f.metadata), defs)
        schema["description"] = f"the {fname} of a stage's " + " or ".join(k.name for k, _ in owners) + " mixer"
        props[key] = schema
    out = {"type": "object", "description": (cls.__doc__ or "").strip(), "properties": props,
           "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def spec_json_schema() -> Dict[str, Any]:
    """The JSON Schema (2020-12) of an archc spec file."""
    defs: Dict[str, Any] = {}
    root = _object_schema(Spec, defs)
    root["properties"]["base"] = {"type": "string", "description": "a spec file to inherit from (relative path), or a shipped model name such as fastvit_sa12"}
    partial_stage = _object_schema(StageSpec, defs)
    partial_stage.pop("required", None)  # defaults and patches set some keys of a stage, none required
    stage_defaults = dict(partial_stage, description="keys every stage gets unless it sets them (downsample: "
                                                      "stages after the first)")
    root["properties"]["stage_defaults"] = stage_defaults
    # with a base, stages may be an index -> patch mapping (keys of a stage), and nothing is required
    stage_patch = dict(partial_stage, description="keys to change in the inherited stage with this index")
    root["properties"]["stages"] = {"anyOf": [root["properties"]["stages"], {
        "type": "object", "description": "patches of the base's stages by index, e.g. {2: {mixer: attention}}",
        "patternProperties": {"^[0-9]+$": stage_patch}, "additionalProperties": False}]}
    root.pop("required", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "archc spec",
            **root, "$defs": defs}
