"""Ground truth for a latency profile: sample architectures from search spaces, measure, cache.

``archc calibrate --measure`` draws N distinct architectures from one or more search spaces (each
space is a family for the leave-one-family-out check; new families plug in as new space files),
measures every one at every resolution on a measured target with the paper's protocol (warm-up,
then the median of N timed runs, one thread), and appends each figure to a JSONL cache as soon as
it exists, so an interrupted run resumes where it stopped and never measures a point twice.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ArchcError
from .fit import Point


@dataclass
class Sampled:
    """One architecture to measure: its spec, family (the space's name) and a stable id."""

    spec: Any
    family: str
    arch: str


def arch_hash(spec) -> str:
    """Stable id of an architecture: the spec minus name and input size."""
    from .fit import arch_key
    d = json.loads(arch_key(spec, None))
    d.pop("input_size", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _draw(param, rng: random.Random) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution
    d = param.distribution
    if isinstance(d, CategoricalDistribution):
        return rng.choice(list(d.choices))
    if isinstance(d, IntDistribution):
        return rng.randrange(d.low, d.high + 1, d.step)
    return rng.uniform(d.low, d.high)


def sample_spaces(spaces: Sequence[str], n: int, seed: int = 0, max_tries: int = 200) -> List[Sampled]:
    """``n`` distinct feasible architectures, split evenly over ``spaces`` (uniform over each space's values)."""
    from ..space import InfeasiblePoint, load_space, spec_from_values
    if n < 1:
        raise ArchcError(f"--n must be >= 1 (got {n})")
    loaded = [load_space(s) for s in spaces]
    out: List[Sampled] = []
    seen = set()
    for i, space in enumerate(loaded):
        want = n // len(loaded) + (1 if i < n % len(loaded) else 0)
        rng = random.Random(f"{seed}:{space.name}")
        got = tries = 0
        while got < want and tries < want * max_tries:
            tries += 1
            values = {p.name: _draw(p, rng) for p in space.params}
            try:
                spec = spec_from_values(space, values, name=f"{space.name}_c{seed}_{got:03d}")
            except InfeasiblePoint:
                continue
            h = arch_hash(spec)
            if h in seen:
                continue
            seen.add(h)
            out.append(Sampled(spec=spec, family=space.name, arch=h))
            got += 1
        if got < want:
            raise ArchcError(f"{space.file}: found only {got} distinct feasible points of {want} in {tries} draws")
    return out


def cache_key(arch: str, resolution: int, target: str, runtime: str, threads: int) -> str:
    return f"{arch}@{resolution}:{target}:{runtime}:t{threads}"


def read_cache(path: Path) -> Dict[str, Dict[str, Any]]:
    """The cached measurements by key (a torn last line from an interrupted run is ignored)."""
    out: Dict[str, Dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "key" in rec:
            out[rec["key"]] = rec
    return out


def measure_all(samples: Sequence[Sampled], resolutions: Sequence[int], *, target: str, cache: Path,
                runs: int, warmup: int, threads: int = 1, runtime: str = "eager",
                measure: Optional[Callable[..., Any]] = None,
                progress: Optional[Callable[[str, int, int], None]] = None,
                cached_only: bool = False) -> List[Dict[str, Any]]:
    """Measure every (sample, resolution) not yet in ``cache``; returns all records, cached ones included.

    ``cached_only`` measures nothing: a cache measured elsewhere (another machine, pinned shards) is fitted
    here, and points it lacks are left out. Cached records point at this machine's copy of each spec."""
    from ..runtime import inference_model
    from ..spec import load_spec, save_spec, sized_to_input
    if measure is None:
        from .measure import measure_latency as measure
    cache.parent.mkdir(parents=True, exist_ok=True)
    spec_dir = cache.parent / (cache.stem + "_specs")
    spec_dir.mkdir(parents=True, exist_ok=True)
    done = read_cache(cache)
    records = []
    total, i = len(samples) * len(resolutions), 0
    for s in samples:
        spec_path = spec_dir / f"{s.arch}.yaml"
        if not spec_path.is_file():
            save_spec(s.spec, spec_path, header=f"calibration point of family {s.family}")
        model, per_size = None, sized_to_input(s.spec)  # a graph sized to its input is built per resolution
        for res in resolutions:
            i += 1
            key = cache_key(s.arch, res, target, runtime, threads)
            if key in done:
                records.append(dict(done[key], spec=str(spec_path)))
                continue
            if cached_only:
                continue
            if progress:
                progress(f"{s.spec.name} @ {res}", i, total)
            if model is None or per_size:
                model = inference_model(load_spec(s.spec, {"input_size": res}) if per_size else s.spec, None,
                                        deploy=True)
            t0 = time.perf_counter()
            r = measure(s.spec, target, model=model, runs=runs, warmup=warmup, resolution=res, threads=threads,
                        runtime=runtime)
            rec = {"key": key, "arch": s.arch, "family": s.family, "name": s.spec.name, "spec": str(spec_path),
                   "resolution": res, "target": target, "runtime": runtime, "threads": threads, "runs": runs,
                   "warmup": warmup, "ms": r.ms, "iqr_ms": r.iqr_ms, "cv": r.cv, "device": r.detail.get("device"),
                   "load_before": r.detail.get("load_before"), "load_after": r.detail.get("load_after"),
                   "seconds": round(time.perf_counter() - t0, 2)}
            with cache.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            records.append(rec)
    return records


def points_of(records: Sequence[Dict[str, Any]]) -> List[Point]:
    """Calibration points from measurement records; a run's IQR/2 is its stated uncertainty."""
    return [Point(label=f"{r['name']}@{r['resolution']}", spec_path=r["spec"], latency_ms=float(r["ms"]),
                  resolution=int(r["resolution"]), decimals=6, source=f"{r['key']}",
                  uncertainty_ms=(r.get("iqr_ms") or 0.0) / 2, family=r["family"]) for r in records]


def pair_key(arch_a: str, arch_b: str, resolution: int, target: str, runtime: str, threads: int) -> str:
    return f"{arch_a}+{arch_b}@{resolution}:{target}:{runtime}:t{threads}:side-by-side"


def ratio_check(profile_path: str, pairs: Sequence[Tuple[str, str]], resolutions: Sequence[int], *, target: str,
                cache: Path, runs: int, warmup: int, threads: int = 1, runtime: str = "eager",
                measure_pair: Optional[Callable[..., Dict[str, List[float]]]] = None,
                cached_only: bool = False) -> List[Dict[str, Any]]:
    """For each (A, B) spec pair: measured and predicted reduction of B against A at each resolution.

    The pairs are not fitted: this checks the profile on the Fig. 3 question (RepMixer vs pooling). Each
    pair is timed side by side (``measure.measure_side_by_side``, interleaved runs in one process), so the
    measured reduction compares the models, not two moments of the machine; its bootstrap 95% interval is
    reported with it. Records are appended to ``cache`` as they are measured and reused by a rerun.
    """
    from ..runtime import inference_model, input_shape
    from ..spec import load_spec, sized_to_input
    from .measure import reduction_ci
    from .predict import predict_latency
    if measure_pair is None:
        from .measure import measure_side_by_side as measure_pair
    done = read_cache(cache)
    out = []
    for a_path, b_path in pairs:
        a, b = load_spec(a_path), load_spec(b_path)
        ha, hb = arch_hash(a), arch_hash(b)
        models, per_size = None, sized_to_input(a) or sized_to_input(b)
        for res in resolutions:
            key = pair_key(ha, hb, res, target, runtime, threads)
            rec = done.get(key)
            if rec is None:
                if cached_only:
                    continue  # measured elsewhere, or not at this resolution
                if models is None or per_size:
                    models = {k: inference_model(load_spec(v, {"input_size": res}) if per_size else v, None, deploy=True)
                              for k, v in (("a", a), ("b", b))}
                t0 = time.perf_counter()
                samples = measure_pair(models, input_shape(a, 1, res), target, runs=runs, warmup=warmup,
                                       threads=threads, runtime=runtime)
                point, lo, hi = reduction_ci(samples["a"], samples["b"])
                rec = {"key": key, "a": a.name, "b": b.name, "arch_a": ha, "arch_b": hb, "resolution": res,
                       "target": target, "runtime": runtime, "threads": threads, "runs": runs, "warmup": warmup,
                       "a_ms": float(np.median(samples["a"])), "b_ms": float(np.median(samples["b"])),
                       "reduction_pct": round(point, 2), "reduction_ci95_pct": [round(lo, 2), round(hi, 2)],
                       "seconds": round(time.perf_counter() - t0, 2)}
                cache.parent.mkdir(parents=True, exist_ok=True)
                with cache.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
            pa, pb = predict_latency(a, profile_path, res), predict_latency(b, profile_path, res)
            predicted = 100 * (pa.ms - pb.ms) / pa.ms
            out.append({"a": a.name, "b": b.name, "resolution": res, "measured_a_ms": rec["a_ms"],
                        "measured_b_ms": rec["b_ms"], "predicted_a_ms": pa.ms, "predicted_b_ms": pb.ms,
                        "measured_reduction_pct": rec["reduction_pct"],
                        "measured_reduction_ci95_pct": rec["reduction_ci95_pct"],
                        "predicted_reduction_pct": round(predicted, 2),
                        "points_off": round(predicted - rec["reduction_pct"], 2)})
    return out


def plot_heldout(profile: Dict[str, Any], path: Path) -> Path:
    """Predicted (held-out) against measured latency, one colour per family, log-log, y = x and +-10% lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    fams = sorted({p["family"] for p in profile["points"]})
    for i, fam in enumerate(fams):
        pts = [p for p in profile["points"] if p["family"] == fam]
        color = plt.cm.tab10(i % 10)
        ax.scatter([p["latency_ms"] for p in pts], [p["heldout_ms"] for p in pts], s=18, color=color,
                   label=f"{fam}: k-fold held-out")
        if any("lofo_ms" in p for p in pts):
            ax.scatter([p["latency_ms"] for p in pts], [p["lofo_ms"] for p in pts], s=22, facecolors="none",
                       edgecolors=color, label=f"{fam}: family left out")
    lo = min(min(p["latency_ms"], p["heldout_ms"]) for p in profile["points"]) * 0.8
    hi = max(max(p["latency_ms"], p["heldout_ms"]) for p in profile["points"]) * 1.25
    xs = [lo, hi]
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.plot(xs, [x * 1.1 for x in xs], "k:", lw=0.6)
    ax.plot(xs, [x * 0.9 for x in xs], "k:", lw=0.6, label="±10%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency, held out (ms)")
    k = profile["heldout"]["kfold"]
    ax.set_title(f"{profile['name']}: k-fold MAPE {k['mape_pct']:.1f}%, tau {k['kendall_tau']:.2f}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
