"""Write a Spec back out as data or YAML that ``load_spec`` reads to an equal Spec."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

import yaml

from .convert import public_fields
from .model import Spec


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        # a key added after specs were first dumped (``since`` in its metadata) is written only when it is set, so
        # earlier dumps, golden files and architecture keys (ground truth, caches) stay what they were
        return {f.name: _plain(getattr(value, f.name)) for f in public_fields(type(value))
                if not (f.metadata.get("since") and getattr(value, f.name) == f.default)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def spec_to_dict(spec: Spec) -> Dict[str, Any]:
    """Every key explicit (no ``base:``), so the file stands alone."""
    return _plain(spec)


def spec_to_yaml(spec: Spec) -> str:
    return yaml.safe_dump(spec_to_dict(spec), sort_keys=False, default_flow_style=None, width=100)


def save_spec(spec: Spec, path: Union[str, Path], header: str = "") -> Path:
    """Write ``spec`` as YAML, atomically (see ``archc.outputs.atomic_write``)."""
    from ..outputs import atomic_write_text
    text = "".join(f"# {line}\n" for line in header.splitlines()) + spec_to_yaml(spec)
    return atomic_write_text(path, text)


def arch_key(spec: Spec, resolution: Optional[int] = None) -> str:
    """An architecture's identity: the spec minus its name and train-only settings (drop rates), at
    ``resolution`` where given. Two specs with one key are the same network to measure, predict or rank."""
    d = spec_to_dict(spec)
    for k in ("name", "drop_path_rate", "drop_rate"):
        d.pop(k, None)
    if resolution:
        d["input_size"] = [int(resolution), int(resolution)]
    return json.dumps(d, sort_keys=True)
