"""Every accuracy signal ranked against a trained ground truth (``benchmarks/groundtruth.py``'s JSONL).

A row is one trained (architecture, seed) point. Per architecture the truth is the mean over its seeds of
``test_top1`` (the official test split, never used to choose anything while training) or, with
``truth="val"``, of ``val_top1``. A signal scores each architecture's spec (zero-cost proxies on seeded,
untrained weights at the spec's own resolution; ``params``; ``train`` = the brief-training objective); then:

- Kendall tau-b and Spearman rho between signal and truth, over all architectures and within each latency
  band (where the parameter count carries little), each with a bootstrap 95% interval
  (``scipy.stats.bootstrap``, paired resampling of architectures, percentile method);
- per band, the top-1 regret of the signal's pick: the band's best true accuracy minus that of the
  architecture the signal ranks first (0 = it picked the best);
- the noise ceiling: Kendall tau between seed replicates (seed 0 vs seed 1 accuracy of the same
  architectures), the most any signal can be expected to reach against one training run.
"""
from __future__ import annotations

import json
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ArchcError
from ..rankstats import kendall_tau_b, spearman_rho

REQUIRED = ("arch", "spec", "family", "seed", "val_top1", "test_top1", "latency_ms", "params", "band")
FILE_NAME = "fashion_mnist_groundtruth.jsonl"
MAX_BYTES = 64 << 20


@dataclass
class Arch:
    """One architecture of the ground truth, its seeds averaged."""

    arch: str
    id: str
    spec: dict
    family: str
    band: str
    latency_ms: float
    params: int
    truth: float                      # mean over seeds, percent
    by_seed: Dict[int, float] = field(default_factory=dict)


@dataclass
class SignalEval:
    signal: str
    kendall_tau: float
    kendall_tau_ci: Tuple[float, float]
    spearman: float
    spearman_ci: Tuple[float, float]
    bands: List[dict]
    seconds: float
    scores: Dict[str, float]

    def to_json(self) -> dict:
        return {"signal": self.signal, "kendall_tau": self.kendall_tau, "kendall_tau_ci": list(self.kendall_tau_ci),
                "spearman": self.spearman, "spearman_ci": list(self.spearman_ci), "bands": self.bands,
                "seconds": round(self.seconds, 2), "scores": self.scores}


def default_file() -> Path:
    """The ground truth shipped in ``archc/data/groundtruth``."""
    return Path(__file__).resolve().parents[1] / "data" / "groundtruth" / FILE_NAME


def read_groundtruth(path: Path, truth: str = "test") -> List[Arch]:
    """The architectures of a ground-truth JSONL, seeds averaged; a clear error for a bad file or row."""
    import os
    import stat
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ArchcError(f"{path}: ground truth not found ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArchcError(f"{path}: not a regular file")
    if st.st_size > MAX_BYTES:
        raise ArchcError(f"{path}: {st.st_size} bytes, more than a ground truth holds ({MAX_BYTES >> 20} MiB)")
    key = {"test": "test_top1", "val": "val_top1"}.get(truth)
    if key is None:
        raise ArchcError(f"--truth {truth!r}: valid: test, val")
    archs: Dict[str, Arch] = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ArchcError(f"{path}:{n}: not a JSON row ({exc.msg})") from None
        missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
        if missing:
            raise ArchcError(f"{path}:{n}: row lacks {', '.join(missing)} (a ground-truth row has "
                             f"{', '.join(REQUIRED)})")
        a = archs.get(row["arch"])
        if a is None:
            a = archs[row["arch"]] = Arch(row["arch"], str(row.get("id", len(archs))), row["spec"], row["family"],
                                          str(row["band"]), float(row["latency_ms"]), int(row["params"]), 0.0)
        a.by_seed[int(row["seed"])] = float(row[key])
    for a in archs.values():
        a.truth = statistics.fmean(a.by_seed.values())
    if len(archs) < 3:
        raise ArchcError(f"{path}: {len(archs)} architectures; ranking needs at least 3")
    return list(archs.values())


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: Callable, n: int = 1000,
                 seed: int = 0) -> Tuple[float, float]:
    """Paired percentile bootstrap 95% interval of ``statistic(x, y)`` (``scipy.stats.bootstrap``)."""
    from scipy import stats
    if len(x) < 3:
        return (float("nan"), float("nan"))
    with warnings.catch_warnings():  # a perfectly ranked set is degenerate (every resample gives 1): say so, no warn
        warnings.simplefilter("ignore")
        res = stats.bootstrap((np.asarray(x, float), np.asarray(y, float)), lambda a, b: statistic(a, b),
                              paired=True, vectorized=False, n_resamples=n, method="percentile",
                              confidence_level=0.95, random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return (round(float(lo), 4), round(float(hi), 4))


def _r(v: float) -> float:
    return round(float(v), 4) if np.isfinite(v) else float("nan")


def rank_signal(name: str, archs: Sequence[Arch], scores: Dict[str, float], seconds: float = 0.0) -> SignalEval:
    """Correlations (overall, per band) with intervals, and the per-band regret of ``scores``."""
    x = [scores[a.arch] for a in archs]
    y = [a.truth for a in archs]
    bands = []
    for band in sorted({a.band for a in archs}):
        members = [a for a in archs if a.band == band]
        bx, by = [scores[a.arch] for a in members], [a.truth for a in members]
        pick = max(members, key=lambda a: scores[a.arch])
        bands.append({"band": band, "n": len(members),
                      "latency_ms": [round(min(a.latency_ms for a in members), 4),
                                     round(max(a.latency_ms for a in members), 4)],
                      "kendall_tau": _r(kendall_tau_b(bx, by)) if len(members) > 1 else float("nan"),
                      "kendall_tau_ci": bootstrap_ci(bx, by, kendall_tau_b) if len(members) > 2 else None,
                      "spearman": _r(spearman_rho(bx, by)) if len(members) > 1 else float("nan"),
                      "regret": round(max(by) - pick.truth, 4), "pick": pick.id})
    return SignalEval(name, _r(kendall_tau_b(x, y)), bootstrap_ci(x, y, kendall_tau_b), _r(spearman_rho(x, y)),
                      bootstrap_ci(x, y, spearman_rho), bands, seconds,
                      {a.id: round(float(scores[a.arch]), 6) for a in archs})


def noise_ceiling(archs: Sequence[Arch]) -> dict:
    """Kendall tau (with interval) between the accuracies of two seeds of the same architectures."""
    both = [a for a in archs if 0 in a.by_seed and 1 in a.by_seed]
    out = {"n": len(both)}
    if len(both) >= 3:
        x, y = [a.by_seed[0] for a in both], [a.by_seed[1] for a in both]
        out.update(kendall_tau=_r(kendall_tau_b(x, y)), kendall_tau_ci=bootstrap_ci(x, y, kendall_tau_b),
                   mean_abs_diff=round(statistics.fmean(abs(p - q) for p, q in zip(x, y)), 4))
        out["bands"] = []
        for band in sorted({a.band for a in both}):
            m = [a for a in both if a.band == band]
            if len(m) > 1:
                out["bands"].append({"band": band, "n": len(m), "kendall_tau": _r(kendall_tau_b(
                    [a.by_seed[0] for a in m], [a.by_seed[1] for a in m]))})
    return out


def signal_scores(archs: Sequence[Arch], signal: str, *, seed: int = 0, batch: Optional[int] = None,
                  train_score=None, progress: Optional[Callable[[str, str], None]] = None) -> Dict[str, float]:
    """``signal``'s score of each architecture (proxies at the spec's own resolution)."""
    from ..spec import load_spec
    from . import score
    out = {}
    for a in archs:
        if progress is not None:
            progress(signal, a.id)
        spec = load_spec(a.spec)
        if signal == "train":
            out[a.arch] = float(train_score(spec))
        else:
            out[a.arch] = score(spec, signal, seed=seed, batch=batch, resolution=spec.input_size[0])
    return out


def evaluate_groundtruth(archs: Sequence[Arch], signals: Sequence[str], *, seed: int = 0,
                         batch: Optional[int] = None, train_score=None,
                         progress: Optional[Callable[[str, str], None]] = None) -> List[SignalEval]:
    results = []
    for name in signals:
        t0 = time.perf_counter()
        scores = signal_scores(archs, name, seed=seed, batch=batch, train_score=train_score, progress=progress)
        results.append(rank_signal(name, archs, scores, time.perf_counter() - t0))
    return results
