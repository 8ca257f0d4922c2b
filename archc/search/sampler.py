"""Optuna samplers for ``archc search``, seeded per trial number.

Why per trial: workers and machines share one study, and the database gives every trial its own
number. A sampler whose random state comes from ``(--seed, trial number)`` therefore never draws the
same random points in two processes (a per-process seed did: two commands whose seeds differed by the
number of trials each had seen drew the same points, evaluating every point twice), and a resumed
study does not replay its earlier draws. With no ``--seed`` each process seeds from the OS.

The samplers themselves keep no state between trials that matters here: TPE and NSGA-II read the
history from the storage each time, so a fresh inner sampler per trial changes only its random state.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from ..errors import SearchError
from .defaults import SAMPLERS



def base_sampler(kind: str, seed: Optional[int], n_startup_trials: int) -> BaseSampler:
    """Samplers that read ``trial.set_constraint`` values (Optuna 5)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "tpe":
            # multivariate needs the static space; constant_liar keeps parallel workers apart
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                              n_startup_trials=n_startup_trials)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, n_startup_trials))
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"unknown sampler '{kind}'; valid: {', '.join(SAMPLERS)}")


def trial_seed(seed: int, number: int) -> int:
    """A well-mixed 32-bit seed for trial ``number`` of a search seeded ``seed`` (distinct inputs give
    unrelated streams, unlike ``seed + number``)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Delegates to ``make(trial_seed(seed, trial.number))``, made afresh before each trial."""

    def __init__(self, make: Callable[[Optional[int]], BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._inner = make(trial_seed(seed, 0))  # replaced before each trial

    def __str__(self) -> str:
        return f"TrialSeeded({self._inner})"

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner = self._make(trial_seed(self._seed, trial.number))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> Dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: Dict[str, BaseDistribution]) -> Dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Optional[Sequence[float]]) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def make_sampler(kind: str, seed: Optional[int], n_startup_trials: int) -> BaseSampler:
    """The ``--sampler`` for a search seeded ``seed`` (a non-negative int; None: from the OS, not
    reproducible)."""
    if seed is None:
        return base_sampler(kind, None, n_startup_trials)
    return TrialSeededSampler(lambda s: base_sampler(kind, s, n_startup_trials), seed)
