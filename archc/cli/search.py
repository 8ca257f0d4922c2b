"""``archc search --latency-ms 1.5``: latency-constrained architecture search on Optuna.

Rerunning the same command continues the same study (SQLite under runs/ by default); ``--trials N``
is the total for the study. See search/README.md for the space format and the trial accounting.
"""
from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

from ..search.defaults import DEFAULT_STORAGE, SAMPLERS
from . import COMMANDS
from .common import add_train_args, console, human, implied_objective, print_json, table, train_settings
from .progress import Progress

if TYPE_CHECKING:  # the search loads Optuna and torch: imported where a command runs, so --help stays fast
    from ..search.census import Census
    from ..search.report import SearchReport


def register(sub) -> None:
    from ..proxies.names import DEFAULT, NAMES
    p = sub.add_parser("search", help=COMMANDS["search"],
                       description="Search a space of architectures for the best score within a latency "
                                   f"budget. Without data it maximises the '{DEFAULT}' proxy, the parameter count in "
                                   "millions (M params): the biggest model that fits the budget, the best zero-cost "
                                   "signal against a trained ground truth (Kendall tau-b 0.62); with --data it "
                                   "trains each candidate briefly and maximises its validation top-1 (tau-b 0.69, "
                                   "higher in each FastViT latency band; docs/ACCURACY_SIGNALS.md). "
                                   "Rerun the same command to continue an interrupted search.")
    p.add_argument("--latency-ms", type=float, required=True, metavar="MS", help="latency budget in milliseconds")
    p.add_argument("--space", default=None, help="search space: a YAML file or a shipped space by name "
                   "(fastvit, tiny) (default: fastvit, FastViT's four-stage layout; with --supernet, the space the "
                   "supernet was trained on)")
    p.add_argument("--target", default="iphone12pro",
                   help="latency target: a device profile (predicted) or cpu/cuda/onnxruntime/coreml/iphone "
                        "(measured) (default: %(default)s, predicted)")
    p.add_argument("--objective", default=None, metavar="NAME",
                   help=f"score to maximise: a zero-cost proxy ({', '.join(NAMES)}; default: {DEFAULT}, "
                        "i.e. M params; with --data: train), 'train': train each candidate briefly on --data "
                        "or synthetic images and score its validation top-1 (see the train options below), or "
                        "'supernet': validation top-1 with weights inherited from --supernet (about a second each)")
    p.add_argument("--supernet", default=None, metavar="DIR",
                   help="a supernet trained by `archc supernet train` on the search space (implies --objective "
                        "supernet); the study is bound to it: resuming with another supernet is refused")
    p.add_argument("--trials", type=int, default=40, metavar="N",
                   help="finished trials in total for the study, across reruns and workers (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop starting trials after this long (this run; rerun to continue)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help="Optuna RDB storage URL; share a postgresql:// URL between machines (default: %(default)s)")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="study name (default: SPACE-TARGET-BUDGETms-OBJECTIVE)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes on this machine")
    p.add_argument("--seed", type=int, default=None,
                   help="sampler seed (non-negative): trial k draws from (seed, k), so machines may share it")
    p.add_argument("--out", default=None, metavar="DIR", help="results directory (default: runs/STUDY)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default: %(default)s)")
    p.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                   help="heartbeat interval; a killed worker's trial is retried after 3x this (default: %(default)s)")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="int8: time each candidate quantized as `archc export --precision int8` writes it (ONNX "
                        "Runtime, archc's recipe; needs --target onnxruntime; calibrated on seeded random images, "
                        "which time the same graph)")
    p.add_argument("--latency-runs", type=int, default=20, metavar="N",
                   help="measured targets: timed runs per candidate; the final re-measurement uses 5x "
                        "(default: %(default)s)")
    p.add_argument("--score-infeasible", action="store_true",
                   help="also score candidates over the budget (slower; fills the Pareto plot)")
    p.add_argument("--no-macs", action="store_true",
                   help="skip the MACs column of the summary (profiling each candidate's deploy graph takes seconds)")
    p.add_argument("--json", action="store_true",
                   help="print the summary (summary.json's content) as JSON on stdout; progress stays on stderr")
    add_train_args(p)
    p.set_defaults(func=run)


class SearchProgress:
    """The shared progress display fed by the study's census: trials, feasible count, best so far."""

    def __init__(self, total: int):
        self.total = total
        self.bar = Progress("search", total=total)
        self.started = False

    def __enter__(self) -> "SearchProgress":
        return self  # the bar appears with the first report, after the settings and storage checked out

    def __exit__(self, *exc) -> None:
        if self.started:
            self.bar.__exit__(*exc)

    def status(self, text: str) -> None:
        """Inside a trial (a training candidate): what it is doing now, on the same line."""
        if not self.started:
            self.bar.__enter__()
            self.started = True
        self.bar.update(status=text)

    def __call__(self, c: Census, trial) -> None:
        if not self.started:
            self.bar.__enter__()
            self.started = True
        best = "-" if c.best is None else f"{c.best.values[0]:.4g} @ {c.best.values[1]:.3g} ms (#{c.best.number})"
        status = f"feasible {c.feasible} · pruned {c.pruned} · failed {c.failed} · running {len(c.running)} · best {best}"
        self.bar.update(min(c.n_finished, self.total), status)
        from ..search.census import ERROR_ATTR
        if trial is not None and trial.user_attrs.get(ERROR_ATTR) and trial.state.name == "FAIL":
            self.bar.note(f"trial {trial.number} failed: {trial.user_attrs[ERROR_ATTR][:200]}")


def _supernet_space(directory) -> str:
    """The space a supernet was trained on, as its training named it (a shipped name or a file path)."""
    from ..errors import ArchcError
    from ..space import resolve_space_path
    from ..supernet.score import supernet_info
    info = supernet_info(directory)
    for candidate in (info["config"].get("space"), info["space"]["name"]):
        try:
            resolve_space_path(candidate)
            return candidate
        except ArchcError:
            continue
    raise ArchcError(f"--supernet {directory} was trained on the space '{info['space']['name']}' "
                     f"({info['config'].get('space')}), which is not here; pass --space FILE with that space")


def run(args) -> int:
    from ..search.objective import Objective
    from ..search.report import finalize
    from ..search.runner import SearchConfig, run_search, storage_errors, validate
    from ..search.storage import mask_url
    from ..threads import torch_threads
    objective = implied_objective(args)
    space = args.space
    if space is None:
        if objective == "supernet" and args.supernet:
            space = _supernet_space(args.supernet)
        else:
            space = "fastvit"
    cfg = SearchConfig(latency_ms=args.latency_ms, space=space, target=args.target, objective=objective,
                       supernet=args.supernet,
                       trials=args.trials, timeout=args.timeout, storage=args.storage, study=args.study,
                       workers=args.workers, seed=args.seed, out=args.out, sampler=args.sampler,
                       heartbeat=args.heartbeat, score_infeasible=args.score_infeasible,
                       latency_runs=args.latency_runs, precision=args.precision)
    cfg.train = train_settings(args, cfg.resolved_objective())
    con = console(stderr=args.json)  # with --json, stdout holds the JSON only
    if cfg.resolved_objective() == "train":
        validate(cfg)  # bad settings or data: one error line, not a description of them first
        from ..train import TrainConfig
        con.print(f"objective train: {TrainConfig.from_dict(cfg.train).describe()}")
    elif cfg.resolved_objective() == "supernet":
        validate(cfg)  # no supernet, or one of another space: one error line before the study opens
        from ..supernet.score import describe_supernet
        con.print(f"objective supernet: {describe_supernet(cfg.supernet)}")
    with SearchProgress(cfg.trials) as bar:
        result = run_search(cfg, progress=bar)
    study, space = result.study, result.space
    out = cfg.out_dir(space)
    con.print(f"study {study.study_name} in {mask_url(cfg.storage)}: {result.census.n_finished} of {cfg.trials} "
              f"trials finished ({result.seconds:.0f} s this run)", soft_wrap=True)  # one line, however long the URL
    if result.workers < cfg.workers:
        con.print(f"note: ran {result.workers} worker(s), not {cfg.workers}: capped by the trials left and this "
                  "machine's cores")
    for i, code in enumerate(result.worker_exit_codes, 1):
        if code:
            con.print(f"warning: worker {i} exited with code {code}")
    objective = Objective(space=space, objective=cfg.resolved_objective(), target=cfg.target, budget_ms=cfg.latency_ms,
                          n_trials=cfg.trials, lock_dir=Path(cfg.lock_dir), latency_runs=cfg.latency_runs)
    with torch_threads(1), storage_errors(cfg.storage):
        report = finalize(study, space, objective, out, metrics=not args.no_macs)
    all_failed(study, report, out)
    if args.json:
        print_json({**report.to_dict(), "storage": mask_url(cfg.storage), "seconds_this_run": round(result.seconds, 1),
                    "worker_exit_codes": result.worker_exit_codes})
        return 0
    print_report(report, con)
    return 0




def all_failed(study, report: SearchReport, out: Path) -> None:
    """SearchError when every finished trial FAILED: the cause is then the setup (data, memory, export), not the
    budget, so say so with the first error instead of suggesting a larger --latency-ms."""
    from ..errors import SearchError
    from ..search.census import ERROR_ATTR
    c = report.census
    if not c.failed or c.failed != c.n_finished:
        return
    first = min((t for t in study.get_trials(deepcopy=False) if t.number in c.finished), key=lambda t: t.number)
    raise SearchError(f"all {c.failed} finished trials failed, so there is no candidate; the first (trial "
                      f"{first.number}): {first.user_attrs.get(ERROR_ATTR, 'no error recorded')[:300]} "
                      f"(every trial: {out / 'trials.csv'})")


def print_report(report: SearchReport, con=None) -> None:
    from ..blocks import MIXERS
    from ..proxies import objective_label
    from ..search.report import fmt, held_out
    con = con or console()
    c = report.census
    con.print(f"trials: {c.complete} complete, {c.pruned} pruned (infeasible), {c.failed} failed; "
              f"{c.feasible} within {report.budget_ms:g} ms on {report.target}"
              + (f"; {c.abandoned} abandoned (killed workers, retried)" if c.abandoned else "") + (f"; {c.surplus} surplus" if c.surplus else ""))
    measured = any(c.final_kind == "measured" for c in report.candidates)
    rows = []
    for rank, cand in enumerate(report.candidates, 1):
        m = cand.metrics
        row = [rank, cand.trial.number, cand.variant or "", fmt(cand.score)]
        row += [fmt(cand.search_ms), fmt(cand.final_ms)] if measured else [fmt(cand.final_ms), held_out(cand)]
        row += [human(m.params) if m else human(cand.trial.user_attrs.get("params_m", 0) * 1e6),
                human(m.macs) if m else "-", ",".join(map(str, cand.spec.depths)),
                ",".join(map(str, cand.spec.widths)), "-".join(MIXERS.abbrev(x) for x in cand.spec.mixers)]
        rows.append(row)
    ms_cols = ["search ms", "final ms"] if measured else ["predicted ms", "± held-out"]
    how = "re-measured" if measured else "re-predicted"
    con.print(table(f"feasible Pareto front (score: {objective_label(report.objective)}; latency down; {how})",
                    ["#", "trial", "start point", "score"] + ms_cols + ["params", "MACs", "depths", "widths", "mixers"],
                    rows, right=["#", "trial", "score", "params", "MACs"] + ms_cols))
    for cand in report.dropped:
        con.print(f"dropped trial {cand.trial.number}: re-measured {cand.final_ms:.4g} ms is over the budget "
                  f"(search: {cand.search_ms:.4g} ms)")
    best, bv = report.best, report.best_variant
    if best is not None:
        con.print(f"best: trial {best.trial.number}, score {best.score:.6g}, {best.final_detail} -> {best.path}")
    else:
        fast = report.fastest
        seen = "" if fast is None else (f"; the fastest trial seen, {fast['trial']}"
                                        + (f" ({fast['variant']})" if fast.get("variant") else "")
                                        + f", took {fast['latency_ms']:.4g} ms")
        con.print(f"no candidate within {report.budget_ms:g} ms{seen}; raise --latency-ms or --trials")
    if bv is not None:
        msg = f"best start point within budget: {bv.user_attrs['variant']} (trial {bv.number}), score {bv.values[0]:.6g}, {bv.values[1]:.4g} ms"
        if best is not None:
            msg += f"; best candidate scores {best.score - bv.values[0]:+.4g} relative to it"
        con.print(msg)
    con.print(f"candidates: {report.files['candidates']}/ ({len(report.candidates)} specs for `archc build`)")
    con.print("files: " + ", ".join(str(v) for k, v in report.files.items() if k != "candidates"))
