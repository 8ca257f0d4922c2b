"""Resource limits: the largest model archc will build or run (parameters; weights + peak activations).

Options, not constants: ``ARCHC_MAX_PARAMS`` / ``ARCHC_MAX_MEMORY_GB`` in the environment, the CLI's
``--max-params`` / ``--max-memory``, or ``set_limits`` from Python. ``archc.guards`` checks a spec against them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from .errors import SpecError

GB = 1e9
DEFAULT_MAX_PARAMS = 2_000_000_000
#: default memory limit: half the machine's RAM, at most 32 GB (a spec that needs more is refused)
DEFAULT_MAX_MEMORY_CAP = 32 * GB


def _physical_memory() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def _default_memory() -> float:
    ram = _physical_memory()
    return min(DEFAULT_MAX_MEMORY_CAP, ram / 2) if ram else DEFAULT_MAX_MEMORY_CAP


@dataclass(frozen=True)
class Limits:
    """``max_params``: parameters; ``max_memory``: bytes of weights + peak inference activations."""

    max_params: int = DEFAULT_MAX_PARAMS
    max_memory: float = DEFAULT_MAX_MEMORY_CAP


def _env_number(name: str, default: float, scale: float = 1.0) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw) * scale
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        flag = {"ARCHC_MAX_PARAMS": "--max-params", "ARCHC_MAX_MEMORY_GB": "--max-memory"}[name]
        raise SpecError(f"{flag} / {name}: {raw!r} is not a positive number")
    return value


_override: Optional[Limits] = None


def limits() -> Limits:
    """The limits in force: ``set_limits`` if called, else the environment, else the defaults."""
    if _override is not None:
        return _override
    return Limits(max_params=int(_env_number("ARCHC_MAX_PARAMS", DEFAULT_MAX_PARAMS)),
                  max_memory=_env_number("ARCHC_MAX_MEMORY_GB", _default_memory(), GB))


def set_limits(max_params: Optional[float] = None, max_memory_gb: Optional[float] = None) -> Limits:
    """Set the limits for this process (None keeps the current one); returns the limits now in force."""
    global _override
    cur = limits()
    for name, value in (("max_params", max_params), ("max_memory_gb", max_memory_gb)):
        if value is not None and not (value > 0 and value != float("inf")):
            raise SpecError(f"{name} must be a positive number, got {value!r}")
    _override = Limits(max_params=int(max_params) if max_params is not None else cur.max_params,
                       max_memory=max_memory_gb * GB if max_memory_gb is not None else cur.max_memory)
    return _override


def reset_limits() -> None:
    global _override
    _override = None
