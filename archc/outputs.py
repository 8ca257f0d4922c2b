"""Output paths: checked writable before the work starts, and names that can never become paths.

A run that computes for minutes and then fails to write (read-only folder, a file where a folder is
expected, a full disk) wastes the work, so commands call these first. A spec's ``name`` comes from a
file someone else wrote: as a file name it is reduced to a safe stem, so ``name: ../../x`` or
``name: /tmp/x`` stays inside the output folder.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

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
        try:
            with open(probe, "wb") as f:
                f.write(b"\n")  # one byte: an empty file is still created on a full disk
        finally:
            os.unlink(probe)
    except OSError as exc:
        raise ArchcError(f"{what} {str(p)!r}: cannot write there: {_why(exc)}") from None
    return p


def _not_regular(mode: int) -> str:
    return ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")


def regular_or_absent(path: PathLike, what: str = "--out") -> Path:
    """Refuse an existing ``path`` that is not a regular file: writing would block on a FIFO or go to a
    device, and an atomic rename would replace the node itself (it once replaced /dev/full)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        return p  # nothing there yet (a file in place of its folder: writable_dir names that)
    except (OSError, ValueError) as exc:
        raise ArchcError(f"{what} {str(p)!r}: cannot write there: "
                         f"{_why(exc) if isinstance(exc, OSError) else 'the name holds a NUL'}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ArchcError(f"{what} {str(p)!r}: is a folder; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise ArchcError(f"{what} {str(p)!r}: is {_not_regular(st.st_mode)}; give the path of a regular file")
    return p


def writable_file(path: PathLike, what: str = "--save") -> Path:
    """``path`` is a regular file (or none yet) that can be written: its folder is created and probed."""
    p = regular_or_absent(path, what)
    if p.exists() and not os.access(p, os.W_OK):
        raise ArchcError(f"{what} {str(p)!r}: cannot write there: permission denied")
    writable_dir(p.parent if str(p.parent) else Path("."), what=f"{what} {str(p)!r}: folder")
    return p


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None], what: str = "") -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``: a crash or a full disk
    leaves the old file (or none), never a truncated one, and no temporary file. A write that fails is an
    ArchcError naming the file and why; an existing target that is not a regular file is refused first."""
    p = Path(path)
    label = f"{what + ' ' if what else ''}{str(p)!r}"
    regular_or_absent(p, what or "output")
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:  # a file object: torch.save reports a full disk as OSError, not RuntimeError
            write(f)
        os.replace(tmp, p)
    except OSError as exc:
        raise ArchcError(f"{label}: cannot write: {_why(exc)}" + ("; nothing was replaced" if p.exists() else "")) \
            from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return p


def atomic_write_text(path: PathLike, text: str, what: str = "") -> Path:
    """``atomic_write`` of UTF-8 text (specs, profiles, CSV and JSON tables)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), what)


def atomic_torch_save(obj, path: PathLike, what: str = "") -> Path:
    """``torch.save`` through ``atomic_write``."""
    import torch
    return atomic_write(path, lambda f: torch.save(obj, f), what)
