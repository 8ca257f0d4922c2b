"""One progress display for every long command: a rich bar with count and ETA on a terminal, one plain
line per step when stderr is piped or redirected (a log, CI), so a long run never looks hung.

Progress goes to stderr, so ``--json`` output on stdout stays parseable. ``ARCHC_PROGRESS=plain``
forces the line form, ``ARCHC_PROGRESS=off`` silences it.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, Optional, Sequence, TypeVar

T = TypeVar("T")


def _mode() -> str:
    forced = os.environ.get("ARCHC_PROGRESS", "").strip().lower()
    if forced in ("off", "plain", "rich"):
        return forced
    return "rich" if sys.stderr.isatty() else "plain"


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """``with Progress("bench", total=n) as p: ... p.advance("sa12 @ 384")`` (or ``p.update(done, status)``).

    ``advance`` marks one step finished and names it; ``update`` sets the count (e.g. from a study that
    other workers also advance) and a status text. ``note`` prints a line without breaking the bar.

    ``weights`` (one per step, in order) are the steps' expected relative costs, e.g. MACs x runs of bench
    points: the ETA is then the time per unit of cost so far times the cost left, not the mean step time
    times the steps left (a 1024-px point after three 224-px ones is not "one more step like those").
    """

    def __init__(self, description: str, total: Optional[int], *, mode: Optional[str] = None,
                 weights: Optional[Sequence[float]] = None):
        self.description = description
        self.total = total
        if weights is not None and (len(weights) != total or any(w < 0 for w in weights) or not sum(weights) > 0):
            raise ValueError(f"weights: {total} non-negative costs with a positive sum expected")
        self.weights = list(weights) if weights is not None else None
        self.mode = mode or _mode()
        self.done = 0
        self.status = ""
        self._start = time.monotonic()
        self._first: Optional[float] = None  # seconds the first step took (weighted ETAs leave it out)
        self._bar = None
        self._task = None

    def __enter__(self) -> "Progress":
        self._start = time.monotonic()
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            eta = [TextColumn("ETA {task.fields[eta]}")] if self.weights else [TextColumn("ETA"), TimeRemainingColumn()]
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("elapsed"), TimeElapsedColumn(), *eta,
                                     TextColumn("{task.fields[status]}", markup=False),
                                     console=Console(stderr=True), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, status="", eta="-:--")
        elif self.mode == "plain":
            print(f"{self.description} 0/{self.total} started" if self.total else f"{self.description} started",
                  file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def eta(self) -> Optional[float]:
        """Seconds left at the pace so far, per step or per unit of expected cost (``weights``); None before
        the first step or without a total."""
        if not self.total or self.done <= 0:
            return None
        elapsed = time.monotonic() - self._start
        if self.weights:
            done, left = sum(self.weights[:self.done]), sum(self.weights[self.done:])
            if self.done < 2 or self._first is None or done <= self.weights[0]:
                return None  # the first step carries the start-up (imports, building and lowering the graph)
            elapsed, done = elapsed - self._first, done - self.weights[0]  # pace by the steps after it
            return elapsed / done * left if done > 0 else None
        return elapsed / self.done * max(self.total - self.done, 0)

    def line(self) -> str:
        """The plain form: ``bench 3/11 (27%) elapsed 0:12 ETA 0:30 · sa12 deploy @ 384``."""
        count = f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total else f"{self.done}"
        eta = self.eta()
        text = f"{self.description} {count} elapsed {_clock(time.monotonic() - self._start)}"
        text += f" ETA {_clock(eta)}" if eta is not None else ""
        return text + (f" · {self.status}" if self.status else "")

    def update(self, done: Optional[int] = None, status: Optional[str] = None) -> None:
        """Set the count and/or the status; the plain form prints a line when the count changes."""
        changed = done is not None and done != self.done
        if done is not None and done >= 1 and self._first is None:
            self._first = time.monotonic() - self._start
        if done is not None:
            self.done = done
        if status is not None:
            self.status = status
        if self.mode == "rich" and self._bar is not None:
            eta = self.eta()
            self._bar.update(self._task, completed=self.done, status=self.status,
                             eta=_clock(eta) if eta is not None else "-:--")
        elif self.mode == "plain" and changed:
            print(self.line(), file=sys.stderr, flush=True)

    def advance(self, status: Optional[str] = None) -> None:
        self.update(self.done + 1, status)

    def note(self, text: str) -> None:
        if self.mode == "rich" and self._bar is not None:
            self._bar.console.print(text)
        elif self.mode != "off":
            print(text, file=sys.stderr, flush=True)


def track(items: Iterable[T], description: str, total: Optional[int] = None,
          label=None) -> Iterator[T]:
    """Iterate with progress: each item counts as one step once the loop body has finished with it."""
    items = list(items) if total is None else items
    total = len(items) if total is None else total
    with Progress(description, total) as p:
        for item in items:
            p.update(status=label(item) if label else "")
            yield item
            p.advance(label(item) if label else None)
