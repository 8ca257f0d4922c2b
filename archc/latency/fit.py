"""Fit a device latency profile to (spec, measured latency) points, and say how wrong it is.

The model (``costmodel.py``) prices compute, memory traffic and per-op overhead, all prices >= 0,
fitted on the *relative* error weighted by each point's stated uncertainty (a 0.1 ms miss matters
more at 0.8 ms than at 4.5 ms; a chart reading of +-0.15 ms weighs less than a +-0.005 ms ModelBench
figure) plus ``ERROR_FLOOR`` (the model's own error: no point is trusted beyond it). Linear models
are solved by ``scipy.optimize.nnls``; the roofline ``max`` model by ``scipy.optimize.least_squares``
with bounds at zero. Which model is used is chosen by *held-out* error, never in-sample fit:
k-fold over architectures (every resolution of an architecture sits in the same fold, so no point
predicts itself or its twin) and leave-one-family-out (a whole family predicted by the others).

Rows that describe the same architecture at the same resolution (the paper's Table 4 V4 is S12) are
one point: its latency is the mean of the most precisely reported values, the others are checked
for agreement within their rounding.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import least_squares, nnls

from ..catalog import looks_like_path, model_index
from ..errors import ArchcError, SpecError, did_you_mean
from ..rankstats import inversions, kendall_tau_b
from ..spec import arch_key  # noqa: F401  (public here too: archc.latency.fit.arch_key)
from .costmodel import CANDIDATES, CostModel, Stack, aggregate, predict

#: the v1 feature set (compute only), kept for ``archc calibrate --features``
DEFAULT_MODEL: Tuple[str, ...] = ("const", "macs_dense", "macs_dw", "attn_elems")

#: features that are sums of others (defined here so profiles stay views of ``FEATURES``)
DERIVED = {"macs_dense": ("macs_conv", "macs_pointwise")}

#: relative error no point is trusted beyond, whatever its stated uncertainty (the model's own error)
ERROR_FLOOR = 0.02
#: folds of the k-fold check unless asked otherwise (0: one fold per architecture)
DEFAULT_FOLDS = 5


@dataclass
class Point:
    """One measured latency of one spec (at one resolution)."""

    label: str
    spec_path: str
    latency_ms: float
    resolution: Optional[int] = None
    decimals: int = 3
    source: str = ""          # "file.csv:row" for error messages and the profile's record
    features: Dict[str, float] = field(default_factory=dict)
    arch_key: str = ""        # architecture + resolution: rows with one key are one measurement
    uncertainty_ms: Optional[float] = None
    family: str = ""
    arch_id: str = ""         # architecture without resolution: the unit of the k-fold split
    table: Any = None         # features.NodeTable of the deploy graph


def decimals_of(text: str) -> int:
    text = text.strip().lower()
    if "e" in text:
        return 6
    return len(text.split(".", 1)[1]) if "." in text else 0


def expand(features: Dict[str, float], names: Sequence[str]) -> List[float]:
    row = []
    for n in names:
        if n == "const":
            row.append(1.0)
        elif n in DERIVED:
            row.append(sum(features[k] for k in DERIVED[n]))
        else:
            row.append(features.get(n, 0.0))
    return row


def nnls_relative(X: np.ndarray, y: np.ndarray, w: Optional[np.ndarray] = None) -> np.ndarray:
    """Non-negative least squares on the (weighted) relative error: ``scipy.optimize.nnls``."""
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    A = X / y[:, None] * w[:, None]
    scale = np.maximum(np.abs(A).max(axis=0), 1e-300)  # column scaling: GMAC and MB differ by 1e3
    coef, _ = nnls(A / scale, w, maxiter=50 * max(1, X.shape[1]))
    return coef / scale


def fit_prices(model: CostModel, stack: Stack, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The model's prices (``model.terms`` order) minimising the weighted relative squared error.

    A term whose feature is zero in every point (an op kind the data never had) is priced 0: the data
    say nothing about it, and a free price would let the optimiser put anything there.
    """
    A = aggregate(stack, model.terms, model.channel_block, model.cache_mb)
    active = np.flatnonzero(np.abs(A).max(axis=0) > 0) if len(A) else np.arange(0)
    coef = np.zeros(len(model.terms))
    if not len(active):
        return coef
    coef[active] = nnls_relative(A[:, active], y, w)
    if model.linear:
        return coef

    def full(c_active: np.ndarray) -> np.ndarray:
        c = np.zeros(len(model.terms))
        c[active] = c_active
        return c

    def resid(c_active: np.ndarray) -> np.ndarray:
        return w * (predict(model, full(c_active), stack) / y - 1.0)

    scale = np.maximum(np.abs(A[:, active]).mean(axis=0), 1e-12)
    start = coef[active]
    best, best_cost = start, float(np.sum(resid(start) ** 2))
    for x0 in (start, np.maximum(start, 0.2 / scale / len(active))):
        r = least_squares(resid, x0, bounds=(0.0, np.inf), x_scale=1.0 / scale, method="trf", max_nfev=2000)
        cost = float(np.sum(r.fun ** 2))
        if cost < best_cost:
            best, best_cost = np.maximum(r.x, 0.0), cost
    return full(best)


def weights_of(points: Sequence[Point], floor: float = ERROR_FLOOR) -> np.ndarray:
    """1 / relative standard error of each point: its stated uncertainty and the model floor combined."""
    rel = np.array([(p.uncertainty_ms or 0.0) / p.latency_ms for p in points])
    return 1.0 / np.sqrt(rel ** 2 + floor ** 2)


def group_folds(groups: Sequence[str], k: int, seed: int = 0) -> List[np.ndarray]:
    """Indices of ``k`` test folds that never split a group (``k`` <= 0 or >= groups: one group per fold)."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    if k <= 0 or k >= len(names):
        k = len(names)
    fold_of = {g: i % k for i, g in enumerate(names)}
    return [np.array([i for i, g in enumerate(groups) if fold_of[g] == f]) for f in range(k)]


def _stack(points: Sequence[Point]) -> Stack:
    return Stack.of([p.table for p in points], [p.features.get("attn_elems", 0.0) for p in points])


def heldout_predictions(points: Sequence[Point], model: CostModel, folds: Sequence[np.ndarray],
                        floor: float = ERROR_FLOOR) -> np.ndarray:
    """Each point predicted by a fit that never saw its fold."""
    stack, y, w = _stack(points), np.array([p.latency_ms for p in points]), weights_of(points, floor)
    out = np.full(len(points), np.nan)
    for test in folds:
        train = np.setdiff1d(np.arange(len(points)), test)
        if len(train) == 0:
            continue
        coef = fit_prices(model, stack.subset(train), y[train], w[train])
        out[test] = predict(model, coef, stack.subset(test))
    return out


def error_stats(pred: np.ndarray, y: np.ndarray) -> Dict[str, Any]:
    ok = np.isfinite(pred)
    ape = np.abs(pred[ok] - y[ok]) / y[ok] * 100
    if not len(ape):
        return {}
    return {"mape_pct": round(float(ape.mean()), 3), "max_ape_pct": round(float(ape.max()), 3),
            "p90_ape_pct": round(float(np.percentile(ape, 90)), 3),
            "kendall_tau": round(float(kendall_tau_b(pred[ok], y[ok])), 4), "inversions": inversions(pred[ok], y[ok]),
            "points": int(ok.sum())}


def evaluate_model(points: Sequence[Point], model: CostModel, folds: int = DEFAULT_FOLDS, seed: int = 0,
                   floor: float = ERROR_FLOOR) -> Dict[str, Any]:
    """Held-out figures of ``model``: k-fold over architectures and, with >= 2 families, leave-one-family-out."""
    y = np.array([p.latency_ms for p in points])
    kf = group_folds([p.arch_id or p.arch_key for p in points], folds, seed)
    kpred = heldout_predictions(points, model, kf, floor)
    out: Dict[str, Any] = {"model": model.name, "kfold": {**error_stats(kpred, y), "folds": len(kf)},
                           "kfold_ms": kpred}
    families = sorted({p.family for p in points})
    if len(families) >= 2:
        lf = [np.array([i for i, p in enumerate(points) if p.family == f]) for f in families]
        lpred = heldout_predictions(points, model, lf, floor)
        out["lofo"] = {**error_stats(lpred, y), "families": {
            f: error_stats(lpred[idx], y[idx]) for f, idx in zip(families, lf)}}
        out["lofo_ms"] = lpred
    return out


def selection_score(ev: Dict[str, Any]) -> float:
    """Mean of the k-fold and leave-one-family-out MAPE (k-fold alone with one family)."""
    k = ev["kfold"].get("mape_pct", math.inf)
    return (k + ev["lofo"]["mape_pct"]) / 2 if "lofo" in ev and ev["lofo"] else k


def merge_duplicates(points: Sequence[Point]) -> Tuple[List[Point], List[str]]:
    """One point per architecture; notes say which rows were merged and whether they agreed."""
    groups: Dict[str, List[Point]] = {}
    for p in points:
        groups.setdefault(p.arch_key, []).append(p)
    merged, notes = [], []
    for rows in groups.values():
        if len(rows) == 1:
            merged.append(rows[0])
            continue
        finest = max(r.decimals for r in rows)
        precise = [r for r in rows if r.decimals == finest]
        value = float(np.mean([r.latency_ms for r in precise]))
        agree = all(abs(r.latency_ms - value) <= 0.5 * 10 ** (-r.decimals) + 1e-9 for r in rows)
        head = precise[0]
        others = ", ".join(f"{r.label}={r.latency_ms:g}" for r in rows)
        notes.append(f"same architecture: {others} -> one point {value:g} ms (most precise value"
                     f"{'s' if len(precise) > 1 else ''}); {'consistent within rounding' if agree else 'DISAGREE beyond rounding'}")
        merged.append(Point(label="=".join(r.label for r in rows), spec_path=head.spec_path, latency_ms=value,
                            resolution=head.resolution, decimals=finest, source=head.source,
                            features=head.features, arch_key=head.arch_key,
                            uncertainty_ms=min((r.uncertainty_ms for r in precise if r.uncertainty_ms is not None),
                                               default=None),
                            family=head.family, arch_id=head.arch_id, table=head.table))
    return merged, notes


def fit(points: Sequence[Point], model: Optional[CostModel] = None, *,
        candidates: Sequence[CostModel] = CANDIDATES, folds: int = DEFAULT_FOLDS, seed: int = 0,
        floor: float = ERROR_FLOOR) -> Dict[str, Any]:
    """Choose a cost model by held-out error (or take ``model``), fit it to all points, report its errors.

    Points need ``features``, ``table``, ``arch_key``/``arch_id`` and ``family`` (see ``featurize``).
    """
    merged, notes = merge_duplicates(points)
    archs = len({p.arch_id or p.arch_key for p in merged})
    pool = [model] if model is not None else list(candidates)
    if archs < min(len(m.terms) for m in pool) + 1:
        raise ArchcError(f"calibration needs at least {min(len(m.terms) for m in pool) + 1} distinct architectures "
                         f"for a {min(len(m.terms) for m in pool)}-term model with a held-out check; got {archs}")
    pool = [m for m in pool if archs >= len(m.terms) + 1] or pool[:1]
    evals = [evaluate_model(merged, m, folds, seed, floor) for m in pool]
    best = min(range(len(pool)), key=lambda i: selection_score(evals[i]))
    chosen, ev = pool[best], evals[best]
    y = np.array([p.latency_ms for p in merged])
    stack = _stack(merged)
    coef = fit_prices(chosen, stack, y, weights_of(merged, floor))
    fitted = predict(chosen, coef, stack)
    kpred, lpred = ev["kfold_ms"], ev.get("lofo_ms")
    pts = []
    for i, p in enumerate(merged):
        row = {"label": p.label, "spec": p.spec_path, "resolution": p.resolution, "family": p.family,
               "latency_ms": float(p.latency_ms), "uncertainty_ms": p.uncertainty_ms,
               "fitted_ms": round(float(fitted[i]), 4), "heldout_ms": round(float(kpred[i]), 4),
               "heldout_error_pct": round(float((kpred[i] - p.latency_ms) / p.latency_ms * 100), 2)}
        if lpred is not None:
            row["lofo_ms"] = round(float(lpred[i]), 4)
            row["lofo_error_pct"] = round(float((lpred[i] - p.latency_ms) / p.latency_ms * 100), 2)
        row["features"] = {k: round(v, 6) for k, v in p.features.items()}
        pts.append(row)
    heldout = {"kfold": ev["kfold"], **({"lofo": ev["lofo"]} if "lofo" in ev else {}),
               "selection": "lowest mean of k-fold and leave-one-family-out MAPE" if "lofo" in ev
               else "lowest k-fold MAPE (one family: no family left out)",
               "fit_mape_pct": round(float(np.mean(np.abs(fitted - y) / y) * 100), 3),
               "fit_kendall_tau": round(float(kendall_tau_b(fitted, y)), 4), "fit_inversions": inversions(fitted, y),
               "architectures": archs, "points": len(merged), "rows": len(points), "error_floor": floor}
    return {
        "combine": chosen.combine,
        "channel_block": chosen.channel_block,
        "cache_mb": chosen.cache_mb,
        "coefficients": {n: float(c) for n, c in zip(chosen.terms, coef)},
        "heldout": heldout,
        "candidates": [{"model": e["model"], "kfold_mape_pct": e["kfold"].get("mape_pct"),
                        "kfold_max_pct": e["kfold"].get("max_ape_pct"), "kfold_tau": e["kfold"].get("kendall_tau"),
                        **({"lofo_mape_pct": e["lofo"].get("mape_pct"), "lofo_max_pct": e["lofo"].get("max_ape_pct")}
                           if "lofo" in e else {}), "chosen": i == best} for i, e in enumerate(evals)],
        "points": pts,
        "rows": [{"label": p.label, "spec": p.spec_path, "latency_ms": p.latency_ms, "source": p.source}
                 for p in points],
        "duplicates": notes,
    }


def spec_of(path: str):
    """The spec a measurement row names: a spec file, or an archc checkpoint's stored spec."""
    from ..spec import load_spec
    from ..catalog import is_checkpoint_path
    from ..weights import checkpoint_spec
    return load_spec(checkpoint_spec(path)["spec"]) if is_checkpoint_path(path) else load_spec(path)


def featurize(points: Sequence[Point], progress: Optional[Callable[[int, str], None]] = None) -> str:
    """Fill every point's features, node table and keys from its spec (each builds and traces its graph: the
    slow part of a calibration, so ``progress(done, label)`` hears of each); returns the graph kind used."""
    from .features import spec_features, spec_node_table
    graphs = set()
    for i, p in enumerate(points):
        if progress:
            progress(i, f"features of {p.label}")
        try:
            spec = spec_of(p.spec_path)
        except SpecError as exc:
            raise ArchcError(f"{p.source}: spec {p.spec_path!r}: {exc}") from None
        p.features, graph = spec_features(spec, p.resolution)
        p.table = spec_node_table(spec, p.resolution)
        p.arch_key = arch_key(spec, p.resolution)
        p.arch_id = arch_key(spec, None).replace(json.dumps(list(spec.input_size)), "")
        p.family = p.family or "all"
        graphs.add(graph)
    return ",".join(sorted(graphs))


#: a measurements CSV is tens to hundreds of rows; these bounds refuse what no calibration needs, before reading
MAX_MEASUREMENTS_BYTES = 16 * 2 ** 20
MAX_MEASUREMENTS_ROWS = 20_000
MAX_FIELD_CHARS = 4096
#: 1 ns to 1000 s: outside this a figure is a unit mistake, and 1e-300 or 1e308 break the fit's arithmetic
MIN_LATENCY_MS, MAX_LATENCY_MS = 1e-6, 1e6
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")


def read_measurements(path: str) -> List[Point]:
    """Read ``spec,latency_ms[,resolution]`` rows (header required, ``#`` comments allowed).

    Relative spec paths resolve against the CSV's folder first, then the current directory.
    """
    csv_path = Path(path)
    try:
        st = csv_path.stat()  # before opening: a FIFO or a device would block or never end
    except OSError:
        raise ArchcError(f"{path}: measurements file not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArchcError(f"{path}: not a regular file (a measurements CSV is read whole)")
    if st.st_size > MAX_MEASUREMENTS_BYTES:
        raise ArchcError(f"{path}: {st.st_size:,} bytes, over the limit of {MAX_MEASUREMENTS_BYTES:,} for a "
                         f"measurements CSV (at most {MAX_MEASUREMENTS_ROWS:,} rows)")
    try:
        text = csv_path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchcError(f"{path}: cannot read measurements: {exc}") from None
    lines = [(i + 1, l) for i, l in enumerate(text.splitlines()) if l.strip() and not l.lstrip().startswith("#")]
    if not lines:
        raise ArchcError(f"{path}: no rows; expected a header 'spec,latency_ms[,resolution]' and one row per measurement")
    if len(lines) - 1 > MAX_MEASUREMENTS_ROWS:
        raise ArchcError(f"{path}: {len(lines) - 1:,} rows, over the limit of {MAX_MEASUREMENTS_ROWS:,} measurements "
                         "(a profile is fitted from tens to hundreds; split the file or sample it)")
    for lineno, line in lines:
        bad = CONTROL_CHARS.search(line)
        if bad:
            raise ArchcError(f"{path}:{lineno}: control character {bad.group()!r} in the row; measurements are plain text")
        if len(line) > MAX_FIELD_CHARS:
            raise ArchcError(f"{path}:{lineno}: a row of {len(line):,} characters, over the limit of {MAX_FIELD_CHARS:,}")
    reader = csv.reader([l for _, l in lines])
    header = [h.strip().lower() for h in next(reader)]
    for col in ("spec", "latency_ms"):
        if col not in header:
            raise ArchcError(f"{path}:{lines[0][0]}: header has no '{col}' column; found {', '.join(header) or 'nothing'}; "
                             f"expected spec,latency_ms[,resolution]")
    valid = ("spec", "latency_ms", "resolution", "label", "family", "uncertainty_ms")
    unknown = [h for h in header if h not in valid]
    if unknown:
        raise ArchcError(f"{path}:{lines[0][0]}: unknown column '{unknown[0]}'; valid: {', '.join(valid)}")
    points: List[Point] = []
    for (lineno, _), row in zip(lines[1:], reader):
        where = f"{path}:{lineno}"
        if len(row) != len(header):
            raise ArchcError(f"{where}: {len(row)} fields, the header has {len(header)} ({','.join(header)})")
        rec = {h: v.strip() for h, v in zip(header, row)}
        spec = rec["spec"]
        if not spec:
            raise ArchcError(f"{where} column 'spec': empty spec path")
        resolved = csv_path.parent / spec
        spec_path = str(resolved if resolved.is_file() else Path(spec))
        if not Path(spec_path).is_file() and not looks_like_path(spec) and spec in model_index():
            spec_path = str(model_index()[spec])  # a shipped model's name, as everywhere a spec path goes
        if not Path(spec_path).is_file():
            where_looked = (f"{csv_path.parent} and the current directory" if str(csv_path.parent) not in ("", ".")
                            else "the current directory")
            raise ArchcError(f"{where} column 'spec': spec file {spec!r} not found (looked in {where_looked}) and "
                             f"no shipped model of that name{did_you_mean(spec, list(model_index()))}")
        try:
            ms = float(rec["latency_ms"])
        except ValueError:
            raise ArchcError(f"{where} column 'latency_ms': {rec['latency_ms']!r} is not a number") from None
        if not (math.isfinite(ms) and MIN_LATENCY_MS <= ms <= MAX_LATENCY_MS):
            raise ArchcError(f"{where} column 'latency_ms': {rec['latency_ms']!r} must be a number of milliseconds "
                             f"from {MIN_LATENCY_MS:g} to {MAX_LATENCY_MS:g}")
        res = None
        if rec.get("resolution"):
            try:
                res = int(rec["resolution"])
            except ValueError:
                raise ArchcError(f"{where} column 'resolution': {rec['resolution']!r} is not an integer") from None
            if res < 32 or res > 4096:
                raise ArchcError(f"{where} column 'resolution': {res} is outside 32..4096")
        unc = None
        if rec.get("uncertainty_ms"):
            try:
                unc = float(rec["uncertainty_ms"])
            except ValueError:
                unc = -1.0
            if not (math.isfinite(unc) and unc >= 0):
                raise ArchcError(f"{where} column 'uncertainty_ms': {rec['uncertainty_ms']!r} must be a non-negative number of milliseconds")
        points.append(Point(label=rec.get("label") or (f"{Path(spec).stem}@{res}" if res else Path(spec).stem), spec_path=spec_path, latency_ms=ms,
                            resolution=res, decimals=decimals_of(rec["latency_ms"]), source=where,
                            uncertainty_ms=unc, family=rec.get("family", "")))
    if not points:
        raise ArchcError(f"{path}: header but no measurement rows")
    return points


def error_model(heldout: Dict[str, Any]) -> Dict[str, Any]:
    """The error a prediction states: k-fold figures inside the calibration data, family-out figures outside.

    ``*_pct`` is the typical (mean) miss, ``*_bound_pct`` the worst held-out miss, drawn as the band.
    With one family nothing measured the cost of leaving the data, so outside is twice the k-fold error.
    """
    k = heldout["kfold"]
    lofo = heldout.get("lofo")
    inside = {"inside_pct": k["mape_pct"], "inside_bound_pct": k["max_ape_pct"]}
    if lofo:
        return {**inside, "outside_pct": max(lofo["mape_pct"], k["mape_pct"]),
                "outside_bound_pct": max(lofo["max_ape_pct"], k["max_ape_pct"]),
                "basis": "inside: k-fold over architectures; outside: leave-one-family-out"}
    return {**inside, "outside_pct": 2 * k["mape_pct"], "outside_bound_pct": 2 * k["max_ape_pct"],
            "basis": "inside: k-fold over architectures; outside: twice that (one family, none left out)"}


def make_profile(points: Sequence[Point], *, name: str, device: str, model: Optional[CostModel] = None,
                 candidates: Sequence[CostModel] = CANDIDATES, folds: int = DEFAULT_FOLDS,
                 generated_by: str, data_source: str, floor: float = ERROR_FLOOR,
                 progress: Optional[Callable[[int, str], None]] = None) -> Dict:
    """Featurize, choose and fit the model, and assemble the profile document ``predict`` reads (YAML-ready).
    ``progress(done, label)``: each point's features, then the fit (done = len(points))."""
    from .features import FEATURES, spec_op_kinds, spec_op_patterns
    graph = featurize(points, progress)
    if progress:
        progress(len(points), f"fitting {'the model' if model else f'{len(candidates)} candidate models'} "
                              f"({folds}-fold held out)")
    result = fit(points, model, candidates=candidates, folds=folds, floor=floor)
    specs = [(spec_of(p.spec_path), p.resolution) for p in points]
    kinds = sorted(set().union(*(spec_op_kinds(s, r) for s, r in specs)))
    patterns = sorted(set().union(*(spec_op_patterns(s, r) for s, r in specs)))
    terms = list(result["coefficients"])
    units = {n: ("ms per inference" if n == "const" else
                 f"ms per unit; feature in {FEATURES.get(n, n)}") for n in terms}
    stack = _stack(points)
    agg = aggregate(stack, [t for t in terms if t != "const"] + ["attn_elems"], result["channel_block"],
                    result["cache_mb"])
    ranges = {}
    for j, n in enumerate([t for t in terms if t != "const"] + ["attn_elems"]):
        ranges[n] = [round(float(agg[:, j].min()), 6), round(float(agg[:, j].max()), 6)]
    for extra in ("pixels", "mbytes_per_gmac"):
        vals = [p.features.get(extra, 0.0) for p in points]
        ranges[extra] = [round(min(vals), 6), round(max(vals), 6)]
    return {
        "name": name,
        "kind": "archc-latency-profile",
        "version": 2,
        "device": device,
        "model": ("latency_ms = const + attn_elems term + sum over ops of "
                  + ("max(compute, traffic)" if result["combine"] == "max" and "mbytes" in terms else "(compute + traffic)")
                  + " + per-op overhead; prices >= 0, weighted relative least squares"),
        "combine": result["combine"],
        **({"channel_block": result["channel_block"]} if any("misaligned" in t for t in terms) else {}),
        **({"cache_mb": result["cache_mb"]} if "mbytes_spill" in terms else {}),
        "graph": graph,
        "created": _dt.date.today().isoformat(),
        "generated_by": generated_by,
        "data_source": data_source,
        "coefficients": result["coefficients"],
        "units": units,
        "heldout": result["heldout"],
        "error": error_model(result["heldout"]),
        "candidates": result["candidates"],
        "feature_ranges": ranges,
        "op_kinds": kinds,
        "op_patterns": patterns,
        "families": sorted({p.family for p in points}),
        "duplicates": result["duplicates"],
        "points": result["points"],
        "rows": result["rows"],
    }


def save_profile(profile: Dict, path: Path, header: str = "") -> Path:
    """Write a profile as YAML (plain types only, readable with ``yaml.safe_load``), atomically: a FIFO or a
    device at ``path`` is refused, a full disk leaves the old profile."""
    import yaml
    from ..outputs import atomic_write_text
    text = yaml.safe_dump(json.loads(json.dumps(profile)), sort_keys=False, width=120)
    lines = "".join(f"# {l}\n" for l in header.splitlines()) if header else ""
    return atomic_write_text(path, lines + text, "profile")
