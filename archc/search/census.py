"""Trial accounting that keeps ``--trials N`` exact across resumes, workers and machines.

A study's *finished* trials are those the search evaluated to the end:

- COMPLETE (built, measured, scored),
- PRUNED (an infeasible point: a rule violation or a latency over budget, not scored),
- FAIL with the ``error`` user attribute (the candidate failed: build error, out of memory, export).

Not counted: trials a killed worker left behind (heartbeat-stale FAILs; Optuna re-enqueues a copy
with the same parameters, which takes their place) and *surplus* trials (see below).

Slots: a trial may run only if fewer than N trials that hold a slot come before it (by trial number,
which the database assigns atomically). Slot holders are the finished trials, the RUNNING ones and
the WAITING retry copies of stale trials. When two workers start the last free slot at once, both
see each other after ``ask()``; the one with the higher number is *surplus*: it ends FAIL with the
user attribute ``surplus`` before suggesting anything, and does not count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set

import optuna
from optuna.trial import FrozenTrial, TrialState

ERROR_ATTR = "error"              # the failure message
ERROR_TRIAL_ATTR = "error_trial"  # the number of the trial that failed (retry copies inherit user attributes)
SURPLUS_ATTR = "surplus"          # the number of the surplus trial


def own(t: FrozenTrial, attr: str) -> bool:
    """Whether ``t`` itself set ``attr`` (a number attribute), rather than inheriting it as a retry copy."""
    return t.user_attrs.get(attr) == t.number


@dataclass
class Census:
    finished: List[int] = field(default_factory=list)      # trial numbers, ascending
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: List[int] = field(default_factory=list)
    waiting_retries: List[int] = field(default_factory=list)
    waiting_other: int = 0                                  # enqueued start points not yet run
    abandoned: int = 0   # FAIL without a recorded error: killed (stale) or stopped by a DeviceError or ^C
    surplus: int = 0
    feasible: int = 0
    best: Optional[FrozenTrial] = None                      # highest score among feasible COMPLETE trials

    @property
    def n_finished(self) -> int:
        return len(self.finished)

    def holders(self) -> List[int]:
        return sorted(self.finished + self.running + self.waiting_retries)


def retried_numbers(trials: Sequence[FrozenTrial]) -> Set[int]:
    """Numbers of stale trials that a retry copy replaced."""
    out: Set[int] = set()
    for t in trials:
        out.update(t.system_attrs.get("retry_history", ()))
    return out


def is_feasible(t: FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())


def take_census(trials: Sequence[FrozenTrial]) -> Census:
    c = Census()
    replaced = retried_numbers(trials)
    for t in sorted(trials, key=lambda t: t.number):
        if own(t, SURPLUS_ATTR):
            c.surplus += 1
        elif t.state == TrialState.COMPLETE:
            c.finished.append(t.number)
            c.complete += 1
            if is_feasible(t):
                c.feasible += 1
                if c.best is None or t.values[0] > c.best.values[0]:
                    c.best = t
        elif t.state == TrialState.PRUNED:
            c.finished.append(t.number)
            c.pruned += 1
        elif t.state == TrialState.FAIL:
            if own(t, ERROR_TRIAL_ATTR) and t.number not in replaced:
                c.finished.append(t.number)
                c.failed += 1
            else:
                c.abandoned += 1
        elif t.state == TrialState.RUNNING:
            c.running.append(t.number)
        elif t.state == TrialState.WAITING:
            if "failed_trial" in t.system_attrs:
                c.waiting_retries.append(t.number)
            else:
                c.waiting_other += 1
    return c


def census(study: optuna.Study) -> Census:
    return take_census(study.get_trials(deepcopy=False))


def slot_rank(study: optuna.Study, number: int) -> int:
    """How many slot holders come before trial ``number`` (the trial may run iff this is < N)."""
    c = census(study)
    return sum(1 for n in c.holders() if n < number)


def counts(study: optuna.Study) -> Dict[str, int]:
    c = census(study)
    return {"finished": c.n_finished, "complete": c.complete, "pruned": c.pruned, "failed": c.failed,
            "running": len(c.running), "abandoned": c.abandoned, "surplus": c.surplus, "feasible": c.feasible}
