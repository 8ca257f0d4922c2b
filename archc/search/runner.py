"""Run a search: create or resume the study, start workers, keep ``--trials N`` exact.

Every worker (a process; ``--workers N`` starts N on this machine, other machines join by running
the same command against the same PostgreSQL URL) loops:

1. fail stale trials (heartbeats; their retry copies are enqueued by the storage's callback);
2. stop once N trials finished (see ``census``);
3. if fewer than N trials are finished or running, run ``study.optimize`` until that is reached;
   otherwise wait for the running ones (they finish, or go stale and come back as retries).

So a command that returns has left the study with exactly N finished trials (unless ``--timeout``
ran out first), and rerunning it after ``kill -9`` continues the same study.
"""
from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import optuna
import torch

from ..errors import ArchcError, SearchError
from ..threads import torch_threads
from .census import Census, census
from .objective import (SUPERNET, TRAIN, Objective, Surplus, TrialFailed, check_objective, check_target, default_latency,
                        make_score_fn)
from .report import trial_rows, write_trials
from .sampler import SAMPLERS, make_sampler
from ..space import SearchSpace, load_space, start_points
from .storage import DEFAULT_STORAGE, heartbeat_orphans, mask_url, open_storage, scrub


@dataclass
class SearchConfig:
    """Everything a worker needs (plain data, so it crosses process boundaries)."""

    latency_ms: float
    space: str = "fastvit"  # a shipped space by name, or a space file
    target: str = "iphone12pro"
    objective: Optional[str] = None          # None: archc.proxies.DEFAULT; "train": brief training
    train: Optional[Dict[str, Any]] = None   # archc.train.TrainConfig fields for objective "train"
    supernet: Optional[str] = None           # the folder of a trained supernet, for objective "supernet"
    trials: int = 40
    timeout: Optional[float] = None
    storage: str = DEFAULT_STORAGE
    study: Optional[str] = None
    workers: int = 1
    seed: Optional[int] = None
    out: Optional[str] = None
    sampler: str = "tpe"
    heartbeat: int = 10
    score_infeasible: bool = False
    latency_runs: int = 20
    precision: str = "fp32"                  # "int8": candidates timed quantized (ONNX Runtime, archc's recipe)
    lock_dir: str = "runs/locks"
    n_startup_trials: int = 10

    def resolved_objective(self) -> str:
        if self.objective:
            return self.objective
        from ..proxies import DEFAULT
        return DEFAULT

    def study_name(self, space: SearchSpace) -> str:
        if self.study:
            return self.study
        budget = f"{self.latency_ms:g}".replace(".", "p")
        precision = "" if self.precision == "fp32" else f"-{self.precision}"
        return f"{space.name}-{self.target}{precision}-{budget}ms-{self.resolved_objective()}"

    def out_dir(self, space: SearchSpace) -> Path:
        from ..outputs import file_stem
        return Path(self.out) if self.out else Path("runs") / file_stem(self.study_name(space), "study")


META_ATTR = "archc_search"         # one study attribute, set at once, so a loader sees all of it or none
ENQUEUED_ATTR = "archc_enqueued"   # the creator has enqueued the space's start points
#: how long a second process waits for the creator of a study to mark and fill it
CREATOR_WAIT_S = 60.0


def _meta(cfg: SearchConfig, space: SearchSpace) -> Dict[str, Any]:
    meta = {"space": space.name, "space_fingerprint": space.fingerprint(), "target": cfg.target,
            "latency_ms": float(cfg.latency_ms), "objective": cfg.resolved_objective()}
    if cfg.precision != "fp32":  # int8 latencies do not compare with fp32 ones (fp32 studies keep their old identity)
        meta["precision"] = cfg.precision
    if meta["objective"] == TRAIN:  # scores from other training settings do not compare: part of the identity
        from ..train import TrainConfig
        meta["train"] = TrainConfig.from_dict(cfg.train).fingerprint()
    if meta["objective"] == SUPERNET:  # another supernet (or the same one trained further) scores differently
        from ..supernet.score import supernet_info
        meta["supernet"] = supernet_info(cfg.supernet)["id"]
    return meta


def _wait_for(study: optuna.Study, attr: str) -> Any:
    """The study attribute ``attr`` once its creator (another process or machine) has set it, or None."""
    deadline = time.monotonic() + CREATOR_WAIT_S
    while True:
        value = study._storage.get_study_user_attrs(study._study_id).get(attr)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def validate(cfg: SearchConfig, target: bool = True) -> None:
    """Reject bad settings before anything starts (one clear message each); ``target=False`` when a
    latency function is injected (the target is then only a label)."""
    if not isinstance(cfg.latency_ms, (int, float)) or not 0 < cfg.latency_ms < float("inf"):
        raise SearchError(f"--latency-ms must be a finite positive number of milliseconds, got {cfg.latency_ms}")
    if cfg.trials < 1:
        raise SearchError(f"--trials must be at least 1, got {cfg.trials}")
    if cfg.workers < 1:
        raise SearchError(f"--workers must be at least 1, got {cfg.workers}")
    if cfg.timeout is not None and not cfg.timeout > 0:
        raise SearchError(f"--timeout must be a positive number of seconds, got {cfg.timeout}")
    if cfg.seed is not None and cfg.seed < 0:
        raise SearchError(f"--seed must be a non-negative integer, got {cfg.seed}")
    if cfg.heartbeat < 1:
        raise SearchError(f"--heartbeat must be at least 1 second, got {cfg.heartbeat}")
    if cfg.sampler not in SAMPLERS:
        raise SearchError(f"unknown sampler '{cfg.sampler}'; valid: {', '.join(SAMPLERS)}")
    if cfg.precision not in ("fp32", "int8"):
        raise SearchError(f"--precision {cfg.precision!r}: valid: fp32, int8")
    if cfg.precision != "fp32" and cfg.target != "onnxruntime":
        raise SearchError(f"--precision {cfg.precision} times candidates quantized in ONNX Runtime: use --target "
                          f"onnxruntime (device profiles predict fp32 graphs; '{cfg.target}' cannot time int8)")
    name = check_objective(cfg.resolved_objective(), SearchError)
    if cfg.train and name != TRAIN:
        raise SearchError("--data and --train-* options apply to --objective train only")
    if name == TRAIN:
        from ..train import TrainConfig
        from ..train.folder import find_classes
        train = TrainConfig.from_dict(cfg.train).check()
        if train.data:
            find_classes(Path(train.data))  # a missing folder stops here; workers read it in full
    if cfg.supernet and name != SUPERNET:
        raise SearchError(f"--supernet applies to --objective supernet only (objective: {name})")
    if name == SUPERNET:
        check_supernet_space(cfg)
    if target:
        check_target(cfg.target)


def smallest_values(space: SearchSpace) -> Dict[str, Any]:
    """Each parameter's lowest value (the first choice where the choices are not numbers)."""
    out: Dict[str, Any] = {}
    for p in space.params:
        d = p.distribution
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            numbers = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in d.choices)
            out[p.name] = min(d.choices) if numbers else d.choices[0]
        else:
            out[p.name] = d.low
    return out


def check_train_batch(space: SearchSpace, train) -> None:
    """Pre-flight of ``--objective train``: the memory guard (and the other checks of the training spec) on the
    space's smallest point, or where that breaks a rule on the start points. If none of them can train at
    ``--train-batch`` and ``--train-resolution``, no trial can: refuse before the first instead of failing each."""
    from ..errors import SpecError
    from ..space import InfeasiblePoint, spec_from_values
    from ..spec import load_spec
    from ..train.loop import check_training_memory, training_spec
    try:
        specs = [spec_from_values(space, smallest_values(space), name=f"{space.name}_smallest")]
        which = "the space's smallest point"
    except InfeasiblePoint:
        specs, which = [load_spec(p) for p in space.start_from], "every start point"
    first = None
    for spec in specs:
        try:
            check_training_memory(training_spec(spec, spec.num_classes, train.resolution, spec.in_chans), train.batch)
            return
        except SpecError as exc:
            first = first or exc
    if first is not None:
        raise SearchError(f"--train-batch {train.batch} at --train-resolution {train.resolution}: {which} cannot "
                          f"train ({first.message}), so no trial could; lower --train-batch or --train-resolution")


def check_supernet_space(cfg: SearchConfig) -> None:
    """The supernet must have been trained on the search space itself (same file content): a candidate outside
    its shared shapes cannot inherit weights, and one from an edited space would be scored by stale weights."""
    import hashlib
    from ..space import resolve_space_path
    from ..supernet.score import supernet_info
    if not cfg.supernet:
        raise SearchError("--objective supernet needs --supernet DIR (a folder made by `archc supernet train`)")
    have = supernet_info(cfg.supernet)["space"]
    path = resolve_space_path(cfg.space)
    sha = hashlib.sha256(path.read_text().encode()).hexdigest()[:16]
    if sha != have["sha256"]:
        raise SearchError(f"--supernet {cfg.supernet} was trained on the space '{have['name']}' (sha256 "
                          f"{have['sha256']}), not on --space {cfg.space} ({path}, sha256 {sha}); search "
                          f"--space {have['name']}, or train a supernet of this space")


def open_study(cfg: SearchConfig, space: SearchSpace, sampler: Optional[optuna.samplers.BaseSampler] = None,
               create: bool = True) -> optuna.Study:
    """Create the study (and enqueue the space's start points) or load it, checking it is the same search."""
    storage = open_storage(cfg.storage, cfg.heartbeat)
    name = cfg.study_name(space)
    created = False
    try:
        if create:
            try:
                study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                            directions=["maximize", "minimize"])
                created = True
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        else:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        raise SearchError(f"no study '{name}' in {mask_url(cfg.storage)}") from None
    if len(study.directions) != 2:
        raise SearchError(f"study '{name}' in {mask_url(cfg.storage)} is not an archc search study "
                          "(it has one objective); choose another --study")
    meta = _meta(cfg, space)
    where = f"study '{name}' in {mask_url(cfg.storage)}"
    if created:
        study.set_user_attr(META_ATTR, meta)
        with warnings.catch_warnings():  # experimental in Optuna 5.0, yet what optuna-dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(cfg))  # the dashboard shows these instead of values_0/1
    else:
        have = study.user_attrs.get(META_ATTR)
        if have is None and study.get_trials(deepcopy=False):
            raise SearchError(f"{where} was not made by archc search; use --study NAME to start a new study")
        if have is None:
            have = _wait_for(study, META_ATTR)  # created a moment ago by another process
        if have is None:  # its creator stopped before marking it: adopt it
            study.set_user_attr(META_ATTR, meta)
            have = meta
        keys = list(meta) + [k for k in have if k not in meta]  # a key only the study has differs too (precision)
        diff = [f"{k}: study has {have.get(k)!r}, this run {meta.get(k)!r}" for k in keys if have.get(k) != meta.get(k)]
        if diff:
            raise SearchError(f"{where} was made by a different search (" + "; ".join(diff)
                              + "); use --study NAME to start a new study")
    # the creator enqueues the start points; others wait for that, so none is enqueued twice
    if not created and not study.user_attrs.get(ENQUEUED_ATTR):
        _wait_for(study, ENQUEUED_ATTR)
    if not study.user_attrs.get(ENQUEUED_ATTR):
        for names, match in start_points(space):
            attrs = {"variant": ", ".join(names)}
            if match.ignored:
                attrs["variant_differs"] = "; ".join(f"{k}: {a!r} in the spec, {b!r} here"
                                                     for k, (a, b) in match.ignored.items())
            study.enqueue_trial(match.values, user_attrs=attrs, skip_if_exists=True)
        study.set_user_attr(ENQUEUED_ATTR, True)
    return study


def metric_names(cfg: SearchConfig) -> List[str]:
    """The two objectives as optuna-dashboard labels them: the score (what it is) and the latency (where)."""
    from ..proxies import objective_label
    where = cfg.target + ("" if cfg.precision == "fp32" else f" ({cfg.precision})")
    return [f"score: {objective_label(cfg.resolved_objective())}", f"latency_ms on {where}"]


ProgressFn = Callable[[Census, Optional[optuna.trial.FrozenTrial]], None]


#: seconds between two streamed writes of trials.csv by one worker (each write reads every trial from storage)
STREAM_EVERY_S = 5.0


def run_worker(cfg: SearchConfig, *, space: Optional[SearchSpace] = None,
               progress: Optional[ProgressFn] = None, should_stop: Callable[[], bool] = lambda: False,
               latency_fn=None, score_fn=None) -> Census:
    """One worker's loop (see the module docstring); returns the final census."""
    space = space or load_space(cfg.space)
    study = open_study(cfg, space, create=False)
    study.sampler = make_sampler(cfg.sampler, cfg.seed, cfg.n_startup_trials)  # seeded per trial number
    score_fn = score_fn or make_score_fn(cfg.resolved_objective(), cfg.train, cfg.supernet)
    if hasattr(score_fn, "prepare"):
        score_fn.prepare()  # open the training data now: a bad folder stops the worker before any trial
    if hasattr(score_fn, "on_status") and hasattr(progress, "status"):
        score_fn.on_status = progress.status  # minutes of training per candidate: say how far it is
    objective = Objective(space=space, objective=cfg.resolved_objective(), target=cfg.target,
                          budget_ms=cfg.latency_ms, n_trials=cfg.trials, lock_dir=Path(cfg.lock_dir),
                          score_infeasible=cfg.score_infeasible, latency_runs=cfg.latency_runs,
                          latency_fn=latency_fn or default_latency, score_fn=score_fn, precision=cfg.precision)
    deadline = None if cfg.timeout is None else time.monotonic() + cfg.timeout
    poll = min(2.0, float(cfg.heartbeat))

    streamed = {"at": 0.0}

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        c = census(study)
        if progress:
            progress(c, trial)
        if time.monotonic() - streamed["at"] >= STREAM_EVERY_S or c.n_finished >= cfg.trials:
            # trials.csv / trials.json as the search goes (atomically replaced): a stopped or killed search
            # leaves the table of what it finished; the final report rewrites them with the same rows
            write_trials(trial_rows(study, space), cfg.out_dir(space))
            streamed["at"] = time.monotonic()
        if c.n_finished + len(c.running) >= cfg.trials or should_stop():
            study.stop()

    storage = open_storage(cfg.storage, cfg.heartbeat)
    study_id = storage.get_study_id_from_name(study.study_name)
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            heartbeat_orphans(storage, study_id, older_than_s=3 * cfg.heartbeat)
            optuna.storages.fail_stale_trials(study)
        c = census(study)
        if progress:
            progress(c, None)
        if c.n_finished >= cfg.trials or should_stop():
            return c
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return c
        if c.n_finished + len(c.running) < cfg.trials:
            try:
                study.optimize(objective, timeout=remaining, callbacks=[after_trial], catch=(TrialFailed, Surplus),
                               gc_after_trial=False)
            except ValueError as exc:
                # the trial was ended elsewhere while this worker ran it (failed as stale by another worker
                # while this one was starved of CPU, its retry already queued): nothing to record, go on
                if not str(exc).startswith("Cannot tell a "):
                    raise
        else:
            time.sleep(poll if remaining is None else max(0.05, min(poll, remaining)))


def worker_count(requested: int, trials_left: int) -> int:
    """``--workers`` capped by the trials left and this machine's cores: more processes than either only
    cost memory (500 workers on a small machine called the OOM killer)."""
    return max(1, min(requested, trials_left, os.cpu_count() or 1))


def _threads_per_worker(workers: int) -> int:
    """One intra-op thread per worker: a trial is many small batch-1 ops (build, fx passes, profiling),
    where a second thread costs more than it gives; measured 4-9x slower per prediction with 2 threads
    on the 2-core development VM under load. Use ``--workers`` to use more cores. (A measured target
    sets its own threads for timing.)"""
    return 1


def _worker_process(cfg_dict: Dict[str, Any], index: int, parent: int) -> None:
    """Entry point of a spawned worker: quiet, single-purpose, exits when its parent dies."""
    from ..process import die_with_parent
    die_with_parent(parent)  # at once, even mid-trial (its heartbeat goes stale and the trial is retried)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = SearchConfig(**cfg_dict)
    torch.set_num_threads(_threads_per_worker(cfg.workers))
    try:
        with storage_errors(cfg.storage):
            run_worker(cfg, should_stop=lambda: os.getppid() != parent)
    except KeyboardInterrupt:
        sys.exit(130)
    except ArchcError as exc:  # one line, like the CLI; the parent reports the exit code
        print(f"archc: worker {index}: error: {exc}", file=sys.stderr)
        sys.exit(2)


@dataclass
class SearchRun:
    study: optuna.Study
    space: SearchSpace
    census: Census
    worker_exit_codes: List[int] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1  # processes this run started (``--workers`` after the cap)


def run_search(cfg: SearchConfig, *, progress: Optional[ProgressFn] = None, latency_fn=None,
               score_fn=None) -> SearchRun:
    """Open the study, run ``cfg.workers`` workers (this process is worker 0) and return when done."""
    with storage_errors(cfg.storage):
        return _run_search(cfg, progress, latency_fn, score_fn)


def _storage_cause(exc: BaseException) -> Optional[BaseException]:
    """The database error behind ``exc``, if any: Optuna wraps it (StorageInternalError) or loses it behind
    an error of its own (an UnboundLocalError in ``_run_trial`` when the tell and the re-read both fail)."""
    import sqlalchemy.exc
    seen = 0
    cur: Optional[BaseException] = exc
    while cur is not None and seen < 20:
        if isinstance(cur, (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)):
            inner = cur.__cause__ or cur.__context__
            return inner if isinstance(inner, sqlalchemy.exc.SQLAlchemyError) else cur
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return None


@contextlib.contextmanager
def storage_errors(url: str):
    """A database failure during the search (an outage, a lost connection, a locked file) becomes one masked
    line; the finished trials are stored, so rerunning the command resumes. Optuna's heartbeat thread
    reports such a failure in one line too, not with a traceback."""
    import threading
    old_hook = threading.excepthook

    def thread_hook(args) -> None:
        cause = _storage_cause(args.exc_value) if args.exc_value is not None else None
        if cause is None:
            return old_hook(args)
        print(f"archc: warning: storage {mask_url(url)} failed in thread {args.thread.name if args.thread else '?'}: "
              f"{_first_line(cause, url)}", file=sys.stderr)

    threading.excepthook = thread_hook
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only database failures are turned into SearchError
        cause = _storage_cause(exc)
        if cause is None:
            raise
        raise SearchError(f"storage {mask_url(url)} failed: {_first_line(cause, url)}; the finished trials are "
                          "stored: rerun the same command to resume") from None
    finally:
        threading.excepthook = old_hook


def _first_line(exc: BaseException, url: str) -> str:
    text = scrub(str(exc), url).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _run_search(cfg: SearchConfig, progress: Optional[ProgressFn], latency_fn, score_fn) -> SearchRun:
    validate(cfg, target=latency_fn is None)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(cfg.space)
    if cfg.resolved_objective() == TRAIN:
        from ..train import TrainConfig
        check_train_batch(space, TrainConfig.from_dict(cfg.train))
    from ..outputs import writable_dir
    writable_dir(cfg.out_dir(space), "--out")  # results are written as trials finish: fail now, not after them
    t0 = time.monotonic()
    study = open_study(cfg, space)
    cfg = dataclasses.replace(cfg, workers=worker_count(cfg.workers, cfg.trials - census(study).n_finished))
    procs = []
    if cfg.workers > 1:
        if latency_fn is not None or score_fn is not None:
            raise SearchError("injected latency/score functions work with one worker only")
        ctx = multiprocessing.get_context("spawn")
        for i in range(1, cfg.workers):
            p = ctx.Process(target=_worker_process, args=(dataclasses.asdict(cfg), i, os.getpid()),
                            name=f"archc-search-worker-{i}")
            p.start()
            procs.append(p)
    try:
        with torch_threads(_threads_per_worker(cfg.workers)):
            final = run_worker(cfg, space=space, progress=progress, latency_fn=latency_fn, score_fn=score_fn)
    except BaseException:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(timeout=10)
        raise
    codes = []
    for p in procs:
        p.join()
        codes.append(p.exitcode)
    final = census(study)
    return SearchRun(study=study, space=space, census=final, worker_exit_codes=codes,
                     seconds=time.monotonic() - t0, workers=cfg.workers)
