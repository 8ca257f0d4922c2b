"""archc's exception hierarchy.

Every error a user can cause is an ``ArchcError``; the CLI prints ``str(error)`` as one line and
exits non-zero. Anything else escaping is a bug in archc, and the CLI shows it as such.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Optional


class ArchcError(Exception):
    """Base class for errors caused by user input or the environment, not by archc bugs."""


class SpecError(ArchcError):
    """A spec (or search space) is malformed: names the file, line, key path, value and choices."""

    def __init__(self, message: str, *, file: Optional[str] = None, line: Optional[int] = None,
                 path: Optional[str] = None):
        self.message = message
        self.file = file
        self.line = line
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}" if self.line else str(self.file)
        if self.path:
            where = f"{where} {self.path}" if where else self.path
        return f"{where}: {self.message}" if where else self.message


class WeightsError(ArchcError):
    """A checkpoint does not fit the model (missing, unexpected or wrongly-shaped keys) or cannot be read."""


class LoweringError(ArchcError):
    """A reparameterization pass produced a graph that is not equivalent, or broke its invariant."""


class ExportError(ArchcError):
    """An export failed or its output did not verify."""


class DeviceError(ArchcError):
    """A latency target cannot run here (no GPU, no macOS, no attached iPhone, no profile)."""


class SearchError(ArchcError):
    """A search could not start or continue (bad storage URL, incompatible study, ...)."""


class DataError(ArchcError):
    """A training dataset cannot be used (missing directory, no classes, unreadable image): names the path.
    Not a candidate's fault, so it stops a search instead of failing every trial alike."""


class TrainError(ArchcError):
    """A candidate's brief training failed (e.g. the loss became NaN): that trial fails, the search goes on."""


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
