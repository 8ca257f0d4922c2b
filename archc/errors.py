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


class SpecErrors(SpecError):
    """Several mistakes in one spec, reported together (a file's every typo in one run, like a compiler).
    ``errors`` holds each ``SpecError`` in file order; the message shows the first ``MAX_SHOWN``. Its own
    file/line/path/message are the first error's, so code reading one error keeps working."""

    MAX_SHOWN = 10

    def __init__(self, errors):
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line, path=first.path)

    def _render(self) -> str:
        shown = [e._render() for e in self.errors[:self.MAX_SHOWN]]
        more = len(self.errors) - len(shown)
        return "\n".join(shown + ([f"... and {more} more"] if more > 0 else []))


class SpecErrorList:
    """Collects the ``SpecError``s of independent parts of a spec, then raises them as one (``raise_any``)."""

    def __init__(self):
        self.errors = []

    def add(self, error: SpecError) -> None:
        self.errors.extend(error.errors if isinstance(error, SpecErrors) else [error])

    def collect(self):
        """``with errors.collect(): ...``: a SpecError raised inside is recorded and the work goes on."""
        return _Collect(self)

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            ordered = sorted(self.errors, key=lambda e: (e.line is None, e.line or 0))  # file order where known
            raise SpecErrors(ordered)


class _Collect:
    def __init__(self, owner: SpecErrorList):
        self.owner = owner

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, SpecError):
            self.owner.add(exc)
            return True
        return False


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


def closest(value: object, choices: Iterable[str]) -> Optional[str]:
    """The choice ``value`` most likely misspells, or None."""
    if not isinstance(value, str):
        return None
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = closest(value, choices)
    return f" (did you mean '{close}'?)" if close else ""
