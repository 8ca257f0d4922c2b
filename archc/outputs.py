"""Output paths: checked writable before the work starts, and names that can never become paths.

A run that computes for minutes and then fails to write (read-only folder, a file where a folder is
expected, a full disk) wastes the work, so commands call these first. A spec's ``name`` comes from a
file someone else wrote: as a file name it is reduced to a safe stem, so ``name: ../../x`` or
``name: /tmp/x`` stays inside the output folder.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Union

from .errors import ArchcError

PathLike = Union[str, Path]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def file_stem(name: str, default: str = "model") -> str:
    """A spec or study name as a file-name stem: no separators, no leading dots, at most 100 characters."""
    stem = _UNSAFE.sub("_", str(name)).strip("._")[:100]
    return stem or default


def check_name(name: str, what: str = "--name") -> str:
    """A user-given file-name stem: refuse anything that is a path or not a plain name."""
    if not name or name != file_stem(name, default=""):
        raise ArchcError(f"{what} {name!r}: must be a plain file name (letters, digits, _ . + = -), not a path; "
                         f"e.g. {file_stem(name)!r}")
    return name


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def writable_dir(path: PathLike, what: str = "--out") -> Path:
    """Create ``path`` if needed and prove a file can be written there; ArchcError otherwise."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ArchcError(f"{what} {str(p)!r}: exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".archc-write-test-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ArchcError(f"{what} {str(p)!r}: cannot write there: {_why(exc)}") from None
    return p


def writable_file(path: PathLike, what: str = "--save") -> Path:
    """``path`` is a file that can be written (its folder is created and probed; an existing folder is refused)."""
    p = Path(path)
    if p.is_dir():
        raise ArchcError(f"{what} {str(p)!r}: is a folder; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise ArchcError(f"{what} {str(p)!r}: cannot write there: permission denied")
    writable_dir(p.parent if str(p.parent) else Path("."), what=f"{what} {str(p)!r}: folder")
    return p


def atomic_torch_save(obj, path: PathLike, what: str = "") -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash or a full disk leaves the old file
    (or none), never a truncated one. A write that fails is an ArchcError naming the file and why."""
    import torch
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, p)
    except OSError as exc:
        raise ArchcError(f"{what + ' ' if what else ''}{str(p)!r}: cannot write: {_why(exc)}"
                         + ("; nothing was replaced" if p.exists() else "")) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return p
