"""Latency-driven slimming vs ``archc search --objective train`` on the same data and about equal compute.

Both run on one small EfficientFormer space (benchmarks/spaces/ef_small.yaml: 64x64 input, 10 classes) under
one predicted budget on one device profile, train on the built-in synthetic textures with the same
TrainConfig, one thread:

- slim: supernet training (``--supernet-steps``) + greedy slimming + training the slimmed spec with the
  train objective's settings (its score is comparable with the search's);
- search: ``archc search --objective train`` (TPE, seeded) with as many trials as fit in slim's wall time
  (measured here first), at least ``--min-trials``.

Compute is matched by wall-clock seconds on this machine (the cost that matters to a user; training steps
are reported too). Run:  PYTHONPATH=. python benchmarks/slim_vs_search.py --budget 0.5
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, start  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "benchmarks" / "spaces" / "ef_small.yaml"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=0.5, help="latency budget, ms (default: %(default)s)")
    ap.add_argument("--target", default="iphone12pro")
    ap.add_argument("--supernet-steps", type=int, default=100)
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--min-trials", type=int, default=3)
    ap.add_argument("--eval-seeds", type=int, default=3,
                    help="retrain both picks with this many training seeds in all (evaluation, not search compute)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    m = start(1)
    from archc.latency import latency
    from archc.search.slim import run_slim
    from archc.space import load_space
    from archc.train import TrainConfig
    from archc.train.score import TrainScore

    space = load_space(SPACE)
    cfg = TrainConfig(steps=args.train_steps)
    t0 = time.perf_counter()
    res = run_slim(space, args.budget, lambda s: latency(s, args.target).ms,
                   TrainConfig(steps=args.supernet_steps))
    t_slim = time.perf_counter() - t0
    score = TrainScore(cfg)(res.spec, "slim")
    t_total = time.perf_counter() - t0
    slim_row = {"method": "slim", "seconds": round(t_total, 1), "supernet_seconds": round(res.train_seconds, 1),
                "slimming_seconds": round(t_slim - res.train_seconds, 1), "steps": len(res.steps),
                "latency_ms": round(res.latency_ms, 4), "top1": round(float(score), 2),
                "depths": list(res.spec.depths), "widths": list(res.spec.widths),
                "meta3d": res.spec.stages[-1].mixer.meta3d, "params": sum(p.numel() for p in
                                                                          __import__("archc").build(res.spec).parameters())}
    print(json.dumps(slim_row))
    # one search trial's cost, then as many trials as fit in slim's time
    out = Path(tempfile.mkdtemp(prefix="archc-svs-"))
    trials, t_search, summary = args.min_trials, 0.0, {}
    cmd = [sys.executable, "-m", "archc", "search", "--space", str(SPACE), "--latency-ms", str(args.budget),
           "--target", args.target, "--objective", "train", "--train-steps", str(args.train_steps), "--seed", "0",
           "--storage", f"sqlite:///{out}/study.db", "--out", str(out / "out")]
    t1 = time.perf_counter()
    while True:
        subprocess.run(cmd + ["--trials", str(trials)], check=True, cwd=ROOT, capture_output=True)
        t_search = time.perf_counter() - t1
        if t_search >= t_total:
            break
        per = t_search / trials
        trials = max(trials + 1, int(t_total / per))
    summary = json.loads((out / "out" / "summary.json").read_text())
    best = (summary.get("candidates") or [{}])[0]  # the best feasible candidate by score
    search_row = {"method": "search --objective train", "seconds": round(t_search, 1), "trials": trials,
                  "latency_ms": round(best.get("final_latency_ms", float("nan")), 4), "top1": best.get("score"),
                  "depths": best.get("depths"), "widths": best.get("widths"),
                  "meta3d": (best.get("params_point") or {}).get(f"stages[{space.n_stages - 1}].meta3d"),
                  "params": best.get("params")}
    print(json.dumps(search_row))
    # evaluation only (not search compute): both picks retrained with further seeds, for the noise
    import archc
    picks = {"slim": res.spec, "search": archc.load_spec(best["spec_file"])} if best else {"slim": res.spec}
    for name, spec in picks.items():
        row = slim_row if name == "slim" else search_row
        extra = [float(TrainScore(TrainConfig(steps=args.train_steps, seed=k))(spec, name))
                 for k in range(1, args.eval_seeds)]
        row["top1_seeds"] = [row["top1"]] + [round(v, 2) for v in extra]
        row["top1_mean"] = round(sum(row["top1_seeds"]) / len(row["top1_seeds"]), 2)
    print(json.dumps({"slim": slim_row, "search": search_row}))
    report = {"machine": m, "budget_ms": args.budget, "target": args.target, "train": cfg.describe(),
              "supernet_steps": args.supernet_steps, "slim": slim_row, "search": search_row,
              "slim_trace": res.trace()}
    return finish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
