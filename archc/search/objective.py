"""The search objective: ``trial -> spec_from_trial -> build -> latency (constraint) -> proxy score``.

Two objectives, ``(score, latency_ms)``: score up, latency down. The budget enters as the constraint
``latency = latency_ms - budget`` through ``trial.set_constraint`` (read by TPE and NSGA-II). Outcomes:

- COMPLETE: within budget (or any latency with ``score_infeasible``), scored;
- PRUNED: infeasible, not scored: a rule violation (constraint ``rules`` > 0, nothing built) or a
  latency over budget (constraint ``latency`` > 0); latency is measured first so over-budget points
  cost no scoring;
- FAIL with user attributes ``error``/``error_trial``: the candidate failed (build error, out of
  memory, export or measurement failure of this candidate, a training loss that became NaN). The
  study goes on.

A ``DeviceError`` (the target cannot run here at all) or a ``DataError`` (the training data cannot be
read) is not the candidate's fault: it stops the search with one clear message instead of failing
every trial the same way.

The score is a zero-cost proxy (``archc.proxies``), ``train`` (``archc.train``: brief training,
validation top-1) or ``supernet`` (``archc.supernet``: validation top-1 with weights inherited from a trained
supernet, about a second per candidate). A score function may return a float with an ``attrs`` mapping (``archc.train.Score``);
those details are recorded per trial as ``score_KEY``.
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import optuna

from ..builder import build_seeded
from ..errors import DataError, DeviceError
from ..latency import LatencyTarget, latency, resolve_target
from .census import ERROR_ATTR, ERROR_TRIAL_ATTR, SURPLUS_ATTR, slot_rank
from .locks import device_lock
from ..space import InfeasiblePoint, SearchSpace, spec_from_values, suggest_values
from ..spec import spec_to_yaml

LatencyFn = Callable[..., Any]          # (spec, target, **kw) -> LatencyResult
ScoreFn = Callable[[Any, str], float]     # (spec, objective name) -> score

TRAIN = "train"  # the brief-training objective
SUPERNET = "supernet"  # inherited weights of a trained supernet; every other objective name is a proxy


class TrialFailed(Exception):
    """Raised to end a trial as FAIL after recording why; caught by ``study.optimize``."""


class Surplus(Exception):
    """Raised when a trial finds the study full (another worker took the last slot)."""


def default_latency(spec, target, **kw):
    return latency(spec, target, **kw)


def default_score(spec, name: str, model=None) -> float:
    """The proxy on the spec, built and fed as ``archc.proxies.score`` does (seeded: reproducible). ``model``:
    the trial's candidate from ``build_seeded(spec)`` (seed 0, the proxies' seed), scored instead of a rebuild
    (not for a graph sized to its input, which a proxy scores at its own resolution)."""
    from ..proxies import score
    from ..spec import sized_to_input
    return score(model if model is not None and not sized_to_input(spec) else spec, name)


default_score.takes_model = True  # the objective hands it the candidate it built


def objective_names() -> list:
    """Valid ``--objective`` values: the zero-cost proxies, ``train`` and ``supernet``."""
    from ..proxies import PROXIES
    return list(PROXIES) + [TRAIN, SUPERNET]


def check_objective(name: str, error: type = None) -> str:
    """``name`` if it is an objective; otherwise ``error`` (default ArchcError) listing the valid ones."""
    from ..errors import ArchcError, did_you_mean
    names = objective_names()
    if name not in names:
        raise (error or ArchcError)(f"unknown objective '{name}'{did_you_mean(name, names)}; valid: {', '.join(names)}")
    return name


def make_score_fn(name: str, train: Optional[Dict[str, Any]] = None, supernet: Optional[str] = None) -> ScoreFn:
    """The score function for objective ``name``: the seeded proxy, a ``TrainScore`` set up from
    ``train`` (``archc.train.TrainConfig`` fields; None: its defaults), or a ``SupernetScore`` of the
    supernet in the folder ``supernet``."""
    if name == TRAIN:
        from ..train import TrainConfig, TrainScore
        return TrainScore(TrainConfig.from_dict(train))
    if name == SUPERNET:
        from ..supernet.score import SupernetScore
        if not supernet:
            from ..errors import ArchcError
            raise ArchcError("--objective supernet needs --supernet DIR (a folder made by `archc supernet train`)")
        return SupernetScore(supernet)
    return default_score


def is_predicted(target) -> bool:
    """Whether ``target`` is a device profile (predicted, no lock needed) rather than a measured device."""
    return resolve_target(target).predicted


def check_target(target) -> str:
    """Return 'predicted' or 'measured'; DeviceError listing the valid targets otherwise."""
    return resolve_target(target).kind


@dataclass
class Objective:
    space: SearchSpace
    objective: str                    # a proxy name (archc.proxies.PROXIES) or "train"
    target: str
    budget_ms: float
    n_trials: int
    lock_dir: Path = Path("runs/locks")
    score_infeasible: bool = False
    latency_runs: int = 20
    latency_warmup: int = 5
    latency_fn: LatencyFn = default_latency
    score_fn: ScoreFn = default_score
    precision: str = "fp32"           # "int8": measured quantized (ONNX Runtime, archc.quant.recipe)
    resolved: LatencyTarget = field(init=False)

    def __post_init__(self) -> None:
        self.resolved = resolve_target(self.target)  # once: predicted or measured, and how

    @property
    def measured(self) -> bool:
        return self.resolved.measured

    def __call__(self, trial: optuna.Trial) -> Any:
        self._claim(trial)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        values = suggest_values(trial, self.space)
        try:
            spec = spec_from_values(self.space, values, name=f"{self.space.name}_t{trial.number:04d}")
        except InfeasiblePoint as exc:
            trial.set_user_attr("infeasible", "; ".join(exc.reasons))
            trial.set_user_attr("pruned_reason", "breaks a rule of the space")
            # as bad as a point twice over budget per broken rule: ranks below near-misses
            trial.set_constraint("rules", float(len(exc.reasons)) * max(self.budget_ms, 1.0))
            raise optuna.TrialPruned(f"infeasible: {'; '.join(exc.reasons)}")
        trial.set_constraint("rules", 0.0)
        trial.set_user_attr("depths", ",".join(map(str, spec.depths)))
        trial.set_user_attr("widths", ",".join(map(str, spec.widths)))
        trial.set_user_attr("mixers", ",".join(spec.mixers))
        trial.set_user_attr("spec", spec_to_yaml(spec))  # the candidate as archc build takes it (dashboard shows it)
        try:
            return self._evaluate(trial, spec)
        except (optuna.TrialPruned, DeviceError, DataError, ImportError, KeyboardInterrupt):
            raise  # not the candidate's fault: a missing device, package or dataset stops the search
        except Exception as exc:  # noqa: BLE001 - MemoryError, RuntimeError, ExportError, ...: the candidate failed
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}"[:2000])
            trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            trial.set_user_attr(ERROR_TRIAL_ATTR, trial.number)
            raise TrialFailed(f"{type(exc).__name__}: {exc}") from exc

    def _claim(self, trial: optuna.Trial) -> None:
        """End the trial as surplus when N trials already hold slots before it."""
        if slot_rank(trial.study, trial.number) >= self.n_trials:
            trial.set_user_attr(SURPLUS_ATTR, trial.number)
            trial.study.stop()
            raise Surplus(f"the study already has {self.n_trials} trials")

    def _evaluate(self, trial: optuna.Trial, spec) -> Any:
        t0 = time.perf_counter()
        # the trial's one build (seeded as the proxies build): a candidate that cannot be built fails here, before
        # any latency work; its parameter count, its predicted or measured latency and its proxy score all use it
        model = build_seeded(spec)
        trial.set_user_attr("params_m", round(sum(p.numel() for p in model.parameters()) / 1e6, 4))
        lat = self.measure(spec, final=False, model=model)
        trial.set_user_attr("latency_ms", lat.ms)
        trial.set_user_attr("latency_kind", lat.kind)
        if (lat.detail or {}).get("extrapolation"):  # a prediction outside the profile's fitted range
            trial.set_user_attr("latency_extrapolation", str(lat.detail["extrapolation"])[:500])
        if lat.cv is not None:
            trial.set_user_attr("latency_cv", lat.cv)
        trial.set_constraint("latency", lat.ms - self.budget_ms)
        if lat.ms > self.budget_ms and not self.score_infeasible:
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
            trial.set_user_attr("pruned_reason", f"latency {lat.ms:.4g} ms over the budget {self.budget_ms:g} ms")
            raise optuna.TrialPruned(f"latency {lat.ms:.3f} ms over the budget {self.budget_ms} ms")
        raw = self.score_fn(spec, self.objective, **({"model": model} if getattr(self.score_fn, "takes_model", False)
                                                     else {}))
        del model
        value = float(raw)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"objective {self.objective} returned {value}")
        trial.set_user_attr("score", value)
        for key, detail in (getattr(raw, "attrs", None) or {}).items():
            trial.set_user_attr(f"score_{key}", detail)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        return value, lat.ms

    def measure(self, spec, final: bool, model=None):
        """Latency of ``spec``; the final re-measurement of a candidate takes 5x the runs. ``model``: the
        candidate already built from ``spec`` (lowered here instead of building the spec again)."""
        return latency_of(spec, self.resolved, lock_dir=self.lock_dir,
                          runs=self.latency_runs * (5 if final else 1), warmup=self.latency_warmup,
                          latency_fn=self.latency_fn, model=model, precision=self.precision)


def latency_of(spec, target, *, lock_dir: Path, runs: int, warmup: int,
               latency_fn: Optional[LatencyFn] = None, model=None, precision: str = "fp32"):
    """Latency of ``spec`` on ``target`` (a name or a resolved ``LatencyTarget``): measurements hold the target's
    lock, predictions do not. ``latency_fn(spec, name, **kw)`` replaces the measurement (tests, custom devices).
    ``model``: a train-time model built from ``spec``; archc's own measurement and prediction lower it rather
    than building the spec again. ``precision`` other than fp32 is passed to measurements (``archc.latency``)."""
    target = resolve_target(target)
    own = latency_fn is None or latency_fn is default_latency
    if own:
        latency_fn = lambda s, _name, **kw: target.latency(s, **kw)  # noqa: E731  (resolved once, not per call)
    if target.measured:
        with device_lock(lock_dir, target.name):
            extra = {"model": model} if own and model is not None else {}
            if precision != "fp32":
                extra["precision"] = precision
            return latency_fn(spec, target.name, runs=runs, warmup=warmup, **extra)
    if own and model is not None:
        from ..latency.features import remember_train_model
        remember_train_model(spec, model)
    return latency_fn(spec, target.name)
