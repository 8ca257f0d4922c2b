"""Read YAML into plain Python data while remembering where each key came from.

Errors must name the file and line of the offending key, so we compose the YAML node tree
(``yaml.compose`` with the safe loader, never ``yaml.load``) and convert it ourselves, recording
``(file, line)`` for every key path. Duplicate keys are errors, not silent overwrites.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple, Union

import yaml

from ..errors import SpecError

PathKey = Tuple[Union[str, int], ...]
Origins = Dict[PathKey, Tuple[str, int]]


def format_path(path: PathKey) -> str:
    """``('stages', 2, 'mixer')`` -> ``stages[2].mixer``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Located:
    """Raw data plus the origin of every key path, for error messages."""

    def __init__(self, data: Any, origins: Origins, file: str):
        self.data = data
        self.origins = origins
        self.file = file

    def where(self, path: PathKey) -> Tuple[str, int | None]:
        """The file and line that defined ``path`` (or its nearest defined parent)."""
        p = tuple(path)
        while p:
            if p in self.origins:
                return self.origins[p]
            p = p[:-1]
        return self.origins.get((), (self.file, None))

    def error(self, path: PathKey, message: str) -> SpecError:
        file, line = self.where(path)
        return SpecError(message, file=file, line=line, path=format_path(path) or None)


def _scalar(node: yaml.ScalarNode) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _convert(node: yaml.Node, path: PathKey, origins: Origins, file: str, int_keys: bool = False) -> Any:
    origins.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        out: Dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("mapping keys must be plain names", file=file, line=line,
                                path=format_path(path) or None)
            key = _scalar(key_node)
            if isinstance(key, bool) or not isinstance(key, (str, int)) or (isinstance(key, int) and not int_keys):
                raise SpecError(f"mapping key {key!r} must be a name", file=file, line=line,
                                path=format_path(path) or None)
            if key in out:
                raise SpecError(f"duplicate key '{key}'", file=file, line=line, path=format_path(path + (key,)))
            sub = path + (key,)
            origins[sub] = (file, line)
            # ``stages:`` in an inheriting spec may patch stages by index: {2: {mixer: attention}}
            out[key] = _convert(value_node, sub, origins, file, int_keys=(key == "stages"))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), origins, file) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    raise SpecError(f"unsupported YAML node {node.tag}", file=file, line=node.start_mark.line + 1)


def parse_yaml(text: str, file: str) -> Located:
    """Parse YAML text; syntax errors become ``SpecError`` naming the file and line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"YAML syntax error: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        raise SpecError(f"YAML error: {exc}", file=file) from None
    if node is None:
        raise SpecError("file is empty", file=file)
    origins: Origins = {}
    data = _convert(node, (), origins, file)
    return Located(data, origins, file)


def read_yaml(path: Union[str, Path]) -> Located:
    """Read and parse a YAML file, turning I/O problems into ``SpecError``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, expected a YAML file", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read: {exc}", file=str(path)) from None
    return parse_yaml(text, str(path))
