"""The end of a search: re-measure the feasible Pareto front and write what a user takes away.

Outputs in ``--out``: ``candidates/*.yaml`` (each kept candidate as a spec ``archc build`` takes as
is), ``trials.csv`` and ``trials.json`` (every trial, with its state and why), ``pareto.png``, and
``summary.json``. A candidate whose re-measured (or re-predicted) latency exceeds the budget is
dropped from the candidates and listed as dropped.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..outputs import atomic_write_text, file_stem
from ..spec import Spec, save_spec
from .census import (ERROR_ATTR, ERROR_TRIAL_ATTR, SURPLUS_ATTR, Census, is_feasible, own, retried_numbers,
                     take_census)
from .metrics import SpecMetrics, spec_metrics
from .objective import Objective
from ..proxies import objective_label
from ..space import SearchSpace, spec_from_values


@dataclass
class Candidate:
    trial: FrozenTrial
    spec: Spec
    score: float
    search_ms: float
    final_ms: float
    final_kind: str
    final_detail: str
    within_budget: bool
    metrics: Optional[SpecMetrics] = None
    final_error_pct: Optional[float] = None  # predicted: the profile's held-out error for this prediction
    path: Optional[Path] = None

    @property
    def variant(self) -> str:
        return str(self.trial.user_attrs.get("variant", ""))


@dataclass
class SearchReport:
    study_name: str
    budget_ms: float
    target: str
    objective: str
    census: Census
    candidates: List[Candidate]          # kept: feasible Pareto front, re-measured within budget
    dropped: List[Candidate]             # on the search's front, but over budget when re-measured
    best_variant: Optional[FrozenTrial]  # the best start point (paper variant) within budget
    files: Dict[str, Path] = field(default_factory=dict)
    fastest: Optional[Dict[str, Any]] = None  # the lowest latency any trial reached (says how far the budget is)

    @property
    def best(self) -> Optional[Candidate]:
        return max(self.candidates, key=lambda c: c.score) if self.candidates else None

    def to_dict(self) -> Dict[str, Any]:
        def cand(c: Candidate) -> Dict[str, Any]:
            return {"trial": c.trial.number, "name": c.spec.name, "variant": c.variant or None, "score": c.score,
                    "search_latency_ms": c.search_ms, "final_latency_ms": c.final_ms, "final_kind": c.final_kind,
                    "final_error_pct": c.final_error_pct, "within_budget": c.within_budget, "params": c.metrics.params if c.metrics else None,
                    "macs": c.metrics.macs if c.metrics else None, "macs_graph": c.metrics.graph if c.metrics else None,
                    "depths": list(c.spec.depths), "widths": list(c.spec.widths), "mixers": list(c.spec.mixers),
                    "spec_file": str(c.path) if c.path else None, "params_point": c.trial.params}
        bv = self.best_variant
        c = self.census
        return {
            "study": self.study_name, "target": self.target, "latency_budget_ms": self.budget_ms,
            "objective": self.objective,
            "trials": {"finished": c.n_finished, "complete": c.complete, "pruned": c.pruned, "failed": c.failed,
                       "feasible": c.feasible, "abandoned": c.abandoned, "surplus": c.surplus},
            "candidates": [cand(x) for x in self.candidates],
            "dropped": [cand(x) for x in self.dropped],
            "best_variant": None if bv is None else {"trial": bv.number, "variant": bv.user_attrs.get("variant"),
                                                     "score": bv.values[0], "latency_ms": bv.values[1]},
            "fastest_seen": self.fastest,
            "files": {k: str(v) for k, v in self.files.items()},
        }


def trial_status(t: FrozenTrial, replaced: set) -> str:
    """A trial's standing in the count: finished states, or why it does not count."""
    if own(t, SURPLUS_ATTR):
        return "surplus"
    if t.state == TrialState.FAIL:
        if t.number in replaced:
            return "retried"       # a killed worker's trial; a copy with the same parameters took its place
        return "failed" if own(t, ERROR_TRIAL_ATTR) else "abandoned"
    return t.state.name.lower()


def trial_rows(study: optuna.Study, space: SearchSpace) -> List[Dict[str, Any]]:
    trials = study.get_trials(deepcopy=False)
    replaced = retried_numbers(trials)
    rows = []
    for t in trials:
        ua = t.user_attrs
        reason = ua.get(ERROR_ATTR) if t.state == TrialState.FAIL else ua.get("pruned_reason")
        row: Dict[str, Any] = {
            "number": t.number, "status": trial_status(t, replaced), "variant": ua.get("variant", ""),
            "score": t.values[0] if t.values else ua.get("score"),
            "latency_ms": t.values[1] if t.values else ua.get("latency_ms"),
            "latency_kind": ua.get("latency_kind"), "feasible": is_feasible(t),
            "constraint_latency": t.constraints.get("latency"), "constraint_rules": t.constraints.get("rules"),
            "params_m": ua.get("params_m"), "depths": ua.get("depths"), "widths": ua.get("widths"),
            "mixers": ua.get("mixers"), "reason": reason or ua.get("infeasible"),
            "retry_of": t.system_attrs.get("failed_trial"), "seconds": ua.get("seconds"),
            "start": t.datetime_start.isoformat() if t.datetime_start else None,
            "complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
        }
        row.update({k: v for k, v in ua.items() if k.startswith("score_")})  # e.g. train: top1, losses
        for p in space.params:
            row[f"p:{p.name}"] = t.params.get(p.name, t.system_attrs.get("fixed_params", {}).get(p.name))
        rows.append(row)
    return rows


def write_trials(rows: List[Dict[str, Any]], out: Path) -> Dict[str, Path]:
    csv_path, json_path = out / "trials.csv", out / "trials.json"
    cols: List[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    # atomic: a reader (or a crash) sees the old table or the new one
    atomic_write_text(csv_path, f.getvalue())
    atomic_write_text(json_path, json.dumps(rows, indent=1, default=str))
    return {"trials_csv": csv_path, "trials_json": json_path}


def plot_pareto(study: optuna.Study, out: Path, objective: str, target: str, budget_ms: float,
                numbers: Optional[Dict[int, int]] = None) -> Optional[Path]:
    """``plot_pareto_front`` (feasible points coloured, infeasible grey) plus the budget, the start points and
    each kept candidate's number (``numbers``: trial number -> NN of ``candidates/NN_*.yaml``)."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna 5 reads the trials' set_constraint values itself: scored over-budget trials come out grey
        ax = optuna.visualization.matplotlib.plot_pareto_front(
            study, target_names=[f"score: {objective_label(objective)}", _latency_axis(study, target)])
    _draw_pruned(ax, study, objective)
    ax.axhline(budget_ms, color="tab:red", linestyle="--", linewidth=1, label=f"budget {budget_ms:g} ms")
    ax.figure.set_size_inches(8, 6)
    ax.figure.tight_layout()  # the final layout first: labels are placed in its pixels
    labels = []  # start-point names and candidate numbers, placed so that none overlaps another
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("variant"):
            labels.append((t.user_attrs["variant"].replace("fastvit_", ""), t.values, dict(fontsize=7)))
        if numbers and t.number in numbers:
            labels.append((f"{numbers[t.number]:02d}", t.values,
                           dict(fontsize=8, fontweight="bold", color="tab:red")))
    _place_labels(ax, labels)
    ax.set_title(f"{study.study_name}: trials (grey: over budget; red NN: candidates/NN_*.yaml)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    path = out / "pareto.png"
    ax.figure.savefig(path, dpi=120)
    plt.close(ax.figure)
    return path


def _latency_axis(study: optuna.Study, target: str) -> str:
    """The latency axis says how its figures were obtained: measured here, or predicted by a device profile."""
    kinds = {t.user_attrs.get("latency_kind") for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    how = {frozenset({"measured"}): "measured median", frozenset({"predicted"}): "predicted by its device profile"}
    return f"latency on {target} (ms, {how.get(frozenset(kinds - {None}), 'measured or predicted')})"


#: label offsets (points) tried in turn: below the marker first, then around it, then further out
_OFFSETS = [(-4, -11), (4, 4), (-4, 6), (6, -4), (-14, -4), (-4, -20), (4, 13), (12, 8), (-20, 6), (12, -16)]


def _place_labels(ax, labels) -> None:
    """Annotate each (text, (x, y), style) at the first offset whose box overlaps no label placed before and
    no marker; the last offset where all collide (a dense cluster): still readable, and rare."""
    fig = ax.figure
    to_px = ax.transData.transform
    scale = fig.dpi / 72.0
    markers = [to_px(v) for _, v, _ in labels]
    placed = []  # (x0, y0, x1, y1) in pixels

    def box(px, dx, dy, text, size):
        w, h = 0.62 * size * len(text) * scale, 1.1 * size * scale
        x0, y0 = px[0] + dx * scale, px[1] + dy * scale
        return (x0, y0, x0 + w, y0 + h)

    def hits(b, own):
        over = any(b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3] for o in placed)
        return over or any(b[0] - 2 < m[0] < b[2] + 2 and b[1] - 2 < m[1] < b[3] + 2
                           for m in markers if tuple(m) != tuple(own))

    for text, values, style in labels:
        px = to_px(values)
        size = style.get("fontsize", 8)
        for dx, dy in _OFFSETS:
            b = box(px, dx, dy, text, size)
            if not hits(b, px):
                break
        placed.append(b)
        ax.annotate(text, values, xytext=(dx, dy), textcoords="offset points", **style)


def _draw_pruned(ax, study: optuna.Study, objective: str) -> None:
    """Over-budget trials pruned before scoring, in grey: at their parameter count for the params proxy
    (that count *is* the score), else as latency ticks on the left edge (their score is unknown)."""
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
              if isinstance(t.user_attrs.get("latency_ms"), (int, float))]
    if not pruned:
        return
    ys = [t.user_attrs["latency_ms"] for t in pruned]
    if objective == "params" and all(isinstance(t.user_attrs.get("params_m"), (int, float)) for t in pruned):
        ax.scatter([t.user_attrs["params_m"] for t in pruned], ys, color="#bbbbbb", marker="x", zorder=1,
                   label=f"over budget, pruned ({len(pruned)})")
    else:
        ax.plot([ax.get_xlim()[0]] * len(pruned), ys, linestyle="none", marker="_", markersize=14, color="#999999",
                label=f"over budget, pruned unscored ({len(pruned)}; latency only)")


def finalize(study: optuna.Study, space: SearchSpace, objective: Objective, out: Path, *,
             metrics: bool = True) -> SearchReport:
    """Re-measure the feasible Pareto front, keep what stays within budget, write every output."""
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    c = take_census(trials)
    front = [t for t in study.best_trials if is_feasible(t)]  # Optuna: feasible trials only when constrained
    front.sort(key=lambda t: (-t.values[0], t.values[1]))
    kept: List[Candidate] = []
    dropped: List[Candidate] = []
    for t in front:
        spec = spec_from_values(space, t.params, name=f"{space.name}_t{t.number:04d}")
        lat = objective.measure(spec, final=True)
        cand = Candidate(trial=t, spec=spec, score=t.values[0], search_ms=t.values[1], final_ms=lat.ms,
                         final_kind=lat.kind, final_detail=lat.describe(), within_budget=lat.ms <= objective.budget_ms,
                         final_error_pct=lat.expected_error_pct if lat.kind == "predicted" else None)
        (kept if cand.within_budget else dropped).append(cand)
    files: Dict[str, Path] = {}
    cdir = out / "candidates"
    cdir.mkdir(exist_ok=True)
    for old in cdir.glob("*.yaml"):
        old.unlink()  # a rerun replaces the previous front
    for rank, cand in enumerate(kept, 1):
        if metrics:
            cand.metrics = spec_metrics(cand.spec)
        header = (f"archc search candidate {rank} of {len(kept)}: study {study.study_name}, trial {cand.trial.number}"
                  + (f" (start point {cand.variant})" if cand.variant else "") + "\n"
                  f"score ({objective.objective}) {cand.score:.6g}; latency {cand.final_detail}; "
                  f"budget {objective.budget_ms:g} ms\n"
                  f"space {space.file}: " + ", ".join(f"{k}={v}" for k, v in cand.trial.params.items()))
        cand.path = save_spec(cand.spec, cdir / f"{rank:02d}_{file_stem(cand.spec.name)}.yaml", header=header)
    variants = [t for t in trials if t.user_attrs.get("variant") and is_feasible(t)]
    best_variant = max(variants, key=lambda t: t.values[0]) if variants else None
    files.update(write_trials(trial_rows(study, space), out))
    numbers = {cand.trial.number: rank for rank, cand in enumerate(kept, 1)}
    png = plot_pareto(study, out, objective.objective, objective.target, objective.budget_ms, numbers)
    if png:
        files["pareto_png"] = png
    files["candidates"] = cdir
    report = SearchReport(study_name=study.study_name, budget_ms=objective.budget_ms, target=objective.target,
                          objective=objective.objective, census=c, candidates=kept, dropped=dropped,
                          best_variant=best_variant, files=files, fastest=fastest_seen(trials))
    summary = out / "summary.json"
    files["summary_json"] = summary
    atomic_write_text(summary, json.dumps(report.to_dict(), indent=1, default=str))
    return report


def held_out(cand: Candidate) -> str:
    """The profile's held-out error for a predicted latency, marked '*' where it was widened."""
    if cand.final_error_pct is None:
        return "-"
    return f"±{cand.final_error_pct:.1f}%" + ("*" if "outside" in cand.final_detail or "extrapolates" in cand.final_detail
                                               or "never saw" in cand.final_detail else "")


def fastest_seen(trials: List[FrozenTrial]) -> Optional[Dict[str, Any]]:
    """The trial with the lowest latency, scored or pruned (a pruned trial keeps it in ``latency_ms``)."""
    best = None
    for t in trials:
        ms = t.values[1] if t.values else t.user_attrs.get("latency_ms")
        if isinstance(ms, (int, float)) and math.isfinite(ms) and (best is None or ms < best[1]):
            best = (t, float(ms))
    if best is None:
        return None
    t, ms = best
    return {"trial": t.number, "latency_ms": ms, "latency_kind": t.user_attrs.get("latency_kind"),
            "variant": t.user_attrs.get("variant") or None}


def fmt(x: Optional[float], digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"
