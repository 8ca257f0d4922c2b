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
    """Raw data plus the origin of every key path, for error messages. ``layers`` are the files it was
    merged from, deepest ``base:`` first, so a key can be told to be older than another (see StageSpec)."""

    def __init__(self, data: Any, origins: Origins, file: str, layers: Tuple[str, ...] = ()):
        self.data = data
        self.origins = origins
        self.file = file
        self.layers = layers or (file,)

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


#: YAML tags a spec may use (plain data only); anything else, e.g. ``!!python/object``, is refused
_TAG = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {
    yaml.ScalarNode: {_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp")},
    yaml.SequenceNode: {_TAG + "seq"},
    yaml.MappingNode: {_TAG + "map"},
}
#: libyaml's safe composer where PyYAML was built with it (13x faster on ma36's dump), else the pure-Python one
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: limits that keep hostile YAML (alias bombs, deep nesting) from exhausting time or the stack
MAX_NODES = 100_000
MAX_NESTING = 64


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _Composer:
    """Node tree -> plain data, recording the origin of every key path and refusing what specs cannot hold."""

    def __init__(self, file: str, origins: Origins):
        self.file = file
        self.origins = origins
        self.count = 0
        self.active: set = set()  # ids of collection nodes being converted (a recursive alias revisits one)
        self.constructor = yaml.constructor.SafeConstructor()  # scalars only: plain data, never objects

    def fail(self, message: str, node: yaml.Node, path: PathKey) -> SpecError:
        return SpecError(message, file=self.file, line=node.start_mark.line + 1, path=format_path(path) or None)

    def check_tag(self, node: yaml.Node, path: PathKey) -> None:
        if node.tag == _TAG + "merge":
            raise self.fail("YAML merge keys ('<<') are not supported; share settings with 'base:' or "
                            "'stage_defaults'", node, path)
        if node.tag not in _ALLOWED_TAGS.get(type(node), ()):
            tag = node.tag[len(_TAG):] if node.tag.startswith(_TAG) else node.tag
            hint = "; quote the value to make it a string" if isinstance(node, yaml.ScalarNode) else ""
            raise self.fail(f"YAML tag {tag!r} is not allowed (a spec holds plain data: mappings, lists, strings, "
                            f"numbers, booleans, null){hint}", node, path)

    def scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        self.check_tag(node, path)
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            detail = getattr(exc, "problem", None) or str(exc)
            raise self.fail(f"cannot read value {node.value!r}: {_one_line(detail)}", node, path) from None

    def convert(self, node: yaml.Node, path: PathKey, int_keys: bool = False) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(f"too large: more than {MAX_NODES} YAML values (an alias expanding too often?)",
                            node, path)
        if len(path) > MAX_NESTING:
            raise self.fail(f"nested deeper than {MAX_NESTING} levels", node, path)
        self.origins.setdefault(path, (self.file, node.start_mark.line + 1))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        self.check_tag(node, path)
        if id(node) in self.active:
            raise self.fail("recursive YAML alias (an anchor that contains itself)", node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
            return self.mapping(node, path, int_keys)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: PathKey, int_keys: bool) -> Dict[Any, Any]:
        out: Dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail("mapping keys must be plain names", key_node, path)
            key = self.scalar(key_node, path)
            if isinstance(key, bool) or not isinstance(key, (str, int)) or (isinstance(key, int) and not int_keys):
                raise self.fail(f"mapping key {key!r} must be a name", key_node, path)
            if key in out:
                raise SpecError(f"duplicate key {key!r}", file=self.file, line=line, path=format_path(path + (key,)))
            sub = path + (key,)
            self.origins[sub] = (self.file, line)
            # ``stages:`` in an inheriting spec may patch stages by index: {2: {mixer: attention}}
            out[key] = self.convert(value_node, sub, int_keys=(key == "stages" and path == ()))
        return out


def _check_nesting(text: str, file: str) -> None:
    """Refuse nesting deeper than ``MAX_NESTING`` with archc's own error (file, line, key path).

    Runs the pure-Python event parser (iterative, no depth limit of its own) only after the fast
    composer failed, so the message does not depend on libyaml's or Python's recursion limits, which
    differ between PyYAML releases (6.0.4 stops at 1000 levels with its own wording)."""
    stack: list = []  # per open collection: [path, is_mapping, in_key, key_or_index]
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                path = _child_path(stack)
                if len(path) > MAX_NESTING:
                    raise SpecError(f"nested deeper than {MAX_NESTING} levels", file=file,
                                    line=event.start_mark.line + 1, path=format_path(path[:MAX_NESTING + 1]))
                stack.append([path, isinstance(event, yaml.MappingStartEvent), True, 0])
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
                _completed(stack, None)
            elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                _completed(stack, getattr(event, "value", None))
    except yaml.YAMLError:
        return  # a syntax error not about depth: the caller reports the composer's own error


def _child_path(stack: list) -> PathKey:
    if not stack:
        return ()
    path, is_map, in_key, key = stack[-1]
    if not is_map:
        return path + (key,)
    return path + ("?",) if in_key else path + (key if isinstance(key, (str, int)) else "?",)


def _completed(stack: list, scalar: Any) -> None:
    """A node ended inside the innermost open collection: move to its next key, value or index."""
    if not stack:
        return
    top = stack[-1]
    if not top[1]:
        top[3] += 1
    elif top[2]:
        top[2], top[3] = False, scalar
    else:
        top[2] = True


def parse_yaml(text: str, file: str) -> Located:
    """Parse YAML text; syntax errors become ``SpecError`` naming the file and line."""
    try:
        try:
            node = yaml.compose(text, Loader=_LOADER)
        except (yaml.YAMLError, RecursionError):
            _check_nesting(text, file)  # too deep: archc's own message, whatever PyYAML's limits are
            raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = "; ".join(_one_line(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise SpecError(f"YAML syntax error: {problem}", file=file, line=line) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (control characters, ...)
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        raise SpecError(f"YAML error: {_one_line(str(exc).splitlines()[0])}", file=file, line=line) from None
    except yaml.YAMLError as exc:  # pragma: no cover - other unmarked errors are rare
        raise SpecError(f"YAML error: {_one_line(exc)}", file=file) from None
    except RecursionError:
        raise SpecError("YAML nested too deeply", file=file) from None
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "null" and not node.value):
        raise SpecError("file is empty", file=file)
    origins: Origins = {}
    data = _Composer(file, origins).convert(node, ())
    return Located(data, origins, file)


#: a spec or search space larger than this is refused unread (the shipped ones are under 4 kB);
#: ``ARCHC_MAX_SPEC_BYTES`` raises it
MAX_FILE_BYTES = 1 << 20
MAX_FILE_BYTES_CAP = 1 << 30


def max_file_bytes() -> int:
    import os
    raw = os.environ.get("ARCHC_MAX_SPEC_BYTES", "")
    try:
        value = int(raw) if raw.strip() else MAX_FILE_BYTES
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_FILE_BYTES_CAP:
        raise SpecError(f"ARCHC_MAX_SPEC_BYTES={raw!r} must be a whole number of bytes from 1 to "
                        f"{MAX_FILE_BYTES_CAP:,} (1 GiB)")
    return value


def read_text_file(path: Union[str, Path], limit: int) -> str:
    """Read a regular file of at most ``limit`` bytes as UTF-8; anything else is a one-line SpecError.

    The type is checked with ``stat`` before opening, so ``/dev/zero``, a FIFO or a socket is refused at
    once instead of blocking or reading forever; the read stops at ``limit + 1`` bytes in case the file grows."""
    import os
    import stat
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SpecError("file not found", file=str(path)) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except ValueError:  # os.stat's answer to a NUL in the name
        raise SpecError("a file name cannot contain a NUL character", file=ascii(str(path))[1:-1]) from None
    if stat.S_ISDIR(st.st_mode):
        raise SpecError("is a directory, expected a YAML file", file=str(path))
    if not stat.S_ISREG(st.st_mode):
        kind = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise SpecError(f"is {kind}, expected a regular YAML file", file=str(path))
    if st.st_size > limit:
        raise SpecError(f"file is {st.st_size:,} bytes, over the limit of {limit:,} (ARCHC_MAX_SPEC_BYTES)",
                        file=str(path))
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # never block, even if swapped for a FIFO
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    if len(data) > limit:
        raise SpecError(f"file is over the limit of {limit:,} bytes (ARCHC_MAX_SPEC_BYTES)", file=str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"cannot read: not UTF-8 text ({exc})", file=str(path)) from None


def read_yaml(path: Union[str, Path]) -> Located:
    """Read and parse a YAML file (a regular file under ``max_file_bytes()``), errors as ``SpecError``."""
    return parse_yaml(read_text_file(path, max_file_bytes()), str(path))
