"""Fit a device latency profile to (spec, measured latency) points.

The model is deliberately small and physical: ``latency = sum_i c_i * feature_i`` over a handful of
work counts of the deploy graph (a constant, MACs by op kind, attention score elements, ...), with
every ``c_i >= 0`` (a unit of work never saves time), fitted by non-negative least squares on the
*relative* error (a 0.1 ms miss matters more at 0.8 ms than at 4.5 ms). With ten-odd points, more
freedom than that fits the noise and extrapolates badly to new resolutions and layouts.

Rows that describe the same architecture at the same resolution (the paper's Table 4 V4 is S12) are
one point: its latency is the mean of the most precisely reported values, the others are checked
for agreement within their rounding. Leave-one-out drops a whole architecture at a time, so a
duplicate never predicts itself.
"""
from __future__ import annotations

import csv
import datetime as _dt
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ArchcError, SpecError
from ..proxies.rank import inversions, kendall_tau_b

#: the feature set of a profile unless asked otherwise: a per-inference constant, MACs of
#: convolution/linear work, depthwise MACs (memory-bound, far costlier per MAC), and attention score
#: elements (softmax over heads x tokens^2, quadratic in resolution)
DEFAULT_MODEL: Tuple[str, ...] = ("const", "macs_dense", "macs_dw", "attn_elems")

#: features that are sums of others (defined here so profiles stay views of ``FEATURES``)
DERIVED = {"macs_dense": ("macs_conv", "macs_pointwise")}


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
    arch_key: str = ""


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
            row.append(features[n])
    return row


def nnls_relative(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error, exactly, by trying every active set.

    The NNLS optimum is the unconstrained least-squares fit on its own active set, so the best
    feasible fit over all subsets is the optimum; with <= 8 features that is <= 256 tiny solves.
    """
    A = X / y[:, None]
    b = np.ones(len(y))
    k = X.shape[1]
    if k > 10:
        raise ValueError("nnls_relative enumerates active sets: use at most 10 features")
    best, best_coef = math.inf, np.zeros(k)
    for r in range(1, k + 1):
        for subset in itertools.combinations(range(k), r):
            cols = list(subset)
            coef, *_ = np.linalg.lstsq(A[:, cols], b, rcond=None)
            if np.any(coef < -1e-12):
                continue
            full = np.zeros(k)
            full[cols] = np.maximum(coef, 0.0)
            err = float(np.sum((A @ full - b) ** 2))
            if err < best - 1e-15:
                best, best_coef = err, full
    return best_coef


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
                            features=head.features, arch_key=head.arch_key))
    return merged, notes


def fit(points: Sequence[Point], model: Sequence[str] = DEFAULT_MODEL) -> Dict:
    """Fit ``model`` to the points (features filled in); returns coefficients and leave-one-out figures."""
    merged, notes = merge_duplicates(points)
    if len(merged) < len(model) + 1:
        raise ArchcError(f"calibration needs at least {len(model) + 1} distinct architectures for a "
                         f"{len(model)}-term model with a leave-one-out check; got {len(merged)}")
    X = np.array([expand(p.features, model) for p in merged])
    y = np.array([p.latency_ms for p in merged])
    coef = nnls_relative(X, y)
    fitted = X @ coef
    loo = np.zeros(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        loo[i] = X[i] @ nnls_relative(X[keep], y[keep])
    ape = np.abs(loo - y) / y * 100
    # every published row (duplicates included) against the prediction made without its architecture
    by_key = {p.arch_key: i for i, p in enumerate(merged)}
    row_ape = [abs(loo[by_key[p.arch_key]] - p.latency_ms) / p.latency_ms * 100 for p in points]
    return {
        "coefficients": {n: float(c) for n, c in zip(model, coef)},
        "points": [{"label": p.label, "spec": p.spec_path, "resolution": p.resolution,
                    "latency_ms": float(p.latency_ms), "fitted_ms": round(float(f), 4),
                    "loo_ms": round(float(l), 4), "loo_error_pct": round(float((l - p.latency_ms) / p.latency_ms * 100), 2),
                    "features": {k: round(v, 6) for k, v in p.features.items()}}
                   for p, f, l in zip(merged, fitted, loo)],
        "rows": [{"label": p.label, "spec": p.spec_path, "latency_ms": p.latency_ms, "source": p.source}
                 for p in points],
        "duplicates": notes,
        "fit_mape_pct": round(float(np.mean(np.abs(fitted - y) / y) * 100), 3),
        "loo": {
            "mape_pct": round(float(np.mean(ape)), 3),
            "max_ape_pct": round(float(np.max(ape)), 3),
            "rows_mape_pct": round(float(np.mean(row_ape)), 3),
            "kendall_tau": round(float(kendall_tau_b(loo, y)), 4),
            "inversions": inversions(loo, y),
            "fit_kendall_tau": round(float(kendall_tau_b(fitted, y)), 4),
            "fit_inversions": inversions(fitted, y),
            "architectures": len(merged),
            "rows": len(points),
        },
    }


def arch_key(spec, resolution: Optional[int]) -> str:
    """What makes two rows the same measurement: the spec minus its name and train-only settings."""
    from ..spec import spec_to_dict
    d = spec_to_dict(spec)
    for k in ("name", "drop_path_rate", "drop_rate"):
        d.pop(k, None)
    if resolution:
        d["input_size"] = [int(resolution), int(resolution)]
    return json.dumps(d, sort_keys=True)


def featurize(points: Sequence[Point]) -> str:
    """Fill every point's features and architecture key from its spec; returns the graph kind used."""
    from ..spec import load_spec
    from .features import spec_features
    graphs = set()
    for p in points:
        try:
            spec = load_spec(p.spec_path)
        except SpecError as exc:
            raise ArchcError(f"{p.source}: spec {p.spec_path!r}: {exc}") from None
        p.features, graph = spec_features(spec, p.resolution)
        p.arch_key = arch_key(spec, p.resolution)
        graphs.add(graph)
    return ",".join(sorted(graphs))


def read_measurements(path: str) -> List[Point]:
    """Read ``spec,latency_ms[,resolution]`` rows (header required, ``#`` comments allowed).

    Relative spec paths resolve against the CSV's folder first, then the current directory.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise ArchcError(f"{path}: measurements file not found")
    try:
        text = csv_path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchcError(f"{path}: cannot read measurements: {exc}") from None
    lines = [(i + 1, l) for i, l in enumerate(text.splitlines()) if l.strip() and not l.lstrip().startswith("#")]
    if not lines:
        raise ArchcError(f"{path}: no rows; expected a header 'spec,latency_ms[,resolution]' and one row per measurement")
    reader = csv.reader([l for _, l in lines])
    header = [h.strip().lower() for h in next(reader)]
    for col in ("spec", "latency_ms"):
        if col not in header:
            raise ArchcError(f"{path}:{lines[0][0]}: header has no '{col}' column; found {', '.join(header) or 'nothing'}; "
                             f"expected spec,latency_ms[,resolution]")
    unknown = [h for h in header if h not in ("spec", "latency_ms", "resolution", "label")]
    if unknown:
        raise ArchcError(f"{path}:{lines[0][0]}: unknown column '{unknown[0]}'; valid: spec, latency_ms, resolution, label")
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
        if not Path(spec_path).is_file():
            raise ArchcError(f"{where} column 'spec': spec file {spec!r} not found (looked in {csv_path.parent} and the current directory)")
        try:
            ms = float(rec["latency_ms"])
        except ValueError:
            raise ArchcError(f"{where} column 'latency_ms': {rec['latency_ms']!r} is not a number") from None
        if not (math.isfinite(ms) and ms > 0):
            raise ArchcError(f"{where} column 'latency_ms': {rec['latency_ms']!r} must be a positive number of milliseconds")
        res = None
        if rec.get("resolution"):
            try:
                res = int(rec["resolution"])
            except ValueError:
                raise ArchcError(f"{where} column 'resolution': {rec['resolution']!r} is not an integer") from None
            if res < 32 or res > 4096:
                raise ArchcError(f"{where} column 'resolution': {res} is outside 32..4096")
        points.append(Point(label=rec.get("label") or (f"{Path(spec).stem}@{res}" if res else Path(spec).stem), spec_path=spec_path, latency_ms=ms,
                            resolution=res, decimals=decimals_of(rec["latency_ms"]), source=where))
    if not points:
        raise ArchcError(f"{path}: header but no measurement rows")
    return points


def make_profile(points: Sequence[Point], *, name: str, device: str, model: Sequence[str] = DEFAULT_MODEL,
                 generated_by: str, data_source: str) -> Dict:
    """Featurize, fit, and assemble the profile document that ``predict`` reads (YAML-ready)."""
    from .features import FEATURES
    from .features import spec_op_kinds
    from ..spec import load_spec
    graph = featurize(points)
    result = fit(points, model)
    kinds = sorted(set().union(*(spec_op_kinds(load_spec(p.spec_path), p.resolution) for p in points)))
    units = {n: ("ms per inference" if n == "const" else
                 f"ms per unit; feature = {' + '.join(DERIVED[n])}" if n in DERIVED else f"ms per unit; feature in {FEATURES[n]}")
             for n in model}
    ranges = {}
    for n in model:
        if n != "const":
            vals = [expand(p.features, [n])[0] for p in points]
            ranges[n] = [round(min(vals), 6), round(max(vals), 6)]
    return {
        "name": name,
        "kind": "archc-latency-profile",
        "version": 1,
        "device": device,
        "model": "latency_ms = sum(coefficients[f] * feature f); coefficients >= 0, NNLS on relative error",
        "graph": graph,
        "created": _dt.date.today().isoformat(),
        "generated_by": generated_by,
        "data_source": data_source,
        "coefficients": result["coefficients"],
        "units": units,
        "feature_ranges": ranges,
        "op_kinds": kinds,
        "loo": result["loo"],
        "fit_mape_pct": result["fit_mape_pct"],
        "duplicates": result["duplicates"],
        "points": result["points"],
        "rows": result["rows"],
    }


def save_profile(profile: Dict, path: Path, header: str = "") -> Path:
    """Write a profile as YAML (plain types only, readable with ``yaml.safe_load``)."""
    import yaml
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(json.loads(json.dumps(profile)), sort_keys=False, width=120)
    lines = "".join(f"# {l}\n" for l in header.splitlines()) if header else ""
    path.write_text(lines + text)
    return path
