"""Import coremltools quietly: off macOS it logs one 'Failed to load _ML...Proxy' warning per native
class it cannot load, and it warns that torch 2.13 is untested; neither is actionable for an archc user
(archc says itself where Core ML cannot predict). Other coremltools messages pass through."""
from __future__ import annotations

import importlib
import logging
from typing import Any

_NOISE = ("Failed to load _ML", "has not been tested with coremltools")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in _NOISE)


def import_coremltools(error_cls: type, what: str) -> Any:
    """``coremltools``, or ``error_cls`` with the ``archc[export]`` hint if it is not installed."""
    noise = _DropNoise()
    handlers = list(logging.getLogger().handlers) + ([logging.lastResort] if logging.lastResort else [])
    for h in handlers:
        h.addFilter(noise)
    try:
        ct = importlib.import_module("coremltools")
        for sub in ("coremltools.models.model", "coremltools.models.compute_plan",
                    "coremltools.models.compute_device"):
            try:
                importlib.import_module(sub)
            except ImportError:
                pass
        return ct
    except ImportError as exc:
        raise error_cls(f"{what} needs coremltools >= 8.3 (pip install 'archc[export]')") from exc
    finally:
        for h in handlers:
            h.removeFilter(noise)
