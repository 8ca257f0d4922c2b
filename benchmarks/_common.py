"""Shared by the benchmark scripts: machine description, statistics, markdown output."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch


def start(threads: Optional[int]) -> Dict[str, object]:
    """Begin a benchmark: quiet library warnings, set torch's intra-op threads (None: torch's default),
    print the machine and return its description."""
    warnings.filterwarnings("ignore")
    if threads:
        torch.set_num_threads(threads)
    m = machine()
    print(describe_machine(m))
    return m


def randomized(name: str, overrides: Optional[Dict[str, Any]] = None) -> Tuple[Any, torch.nn.Module, torch.nn.Module]:
    """``(spec, train, deploy)`` for ``specs/NAME.yaml``: the train-time model in eval mode with randomised
    BN statistics and layer scales (seed 0; defaults would make the folds trivially exact) and its
    reparameterized deploy graph."""
    import archc
    from archc.runtime import inference_model
    from archc.testing import randomize_
    spec = archc.load_spec(f"specs/{name}.yaml", overrides=overrides)
    train = randomize_(archc.build(spec), seed=0).eval()
    return spec, train, inference_model(spec, model=train)


def machine() -> Dict[str, object]:
    from archc.latency.measure import device_name
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": device_name("cpu"), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "loadavg_1_5_15": load,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}


def stats(samples: Sequence[float]) -> Dict[str, float]:
    from archc.latency.measure import summarize
    med, iqr, cv = summarize(samples)
    return {"median_ms": med, "iqr_ms": iqr, "cv": cv, "runs": len(samples)}


def ratio_ci(a: Sequence[float], b: Sequence[float], n: int = 2000, seed: int = 0) -> List[float]:
    """Bootstrap 95% interval of median(a) / median(b)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a), np.asarray(b)
    ra = np.median(rng.choice(a, (n, a.size)), axis=1)
    rb = np.median(rng.choice(b, (n, b.size)), axis=1)
    lo, hi = np.percentile(ra / rb, [2.5, 97.5])
    return [float(lo), float(hi)]


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def describe_machine(m: Dict[str, object]) -> str:
    return (f"Machine: {m['cpu']}; torch {m['torch']}, {m['threads']} thread(s); load average (1/5/15 min) at "
            f"start {m['loadavg_1_5_15']}; {m['date']}.\nCommand: `{m['command']}`")


def finish(report: Dict[str, object], json_path: str = None) -> int:
    """End a benchmark: record and print the load average at the end, write ``report`` as JSON if asked."""
    import json
    report["loadavg_end"] = machine()["loadavg_1_5_15"]
    print(f"\nload average at end: {report['loadavg_end']}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
    return 0
