"""A search's wall time, this checkout against another one, side by side (issue 19: one build per trial).

    python3 benchmarks/search_wall.py --before DIR [--repeats 2] [--trials 40] [-- extra search args]

Runs the README's search (``archc search --latency-ms 1.5 --trials 40 --seed 0``; default space and target) in a
fresh folder per run, alternating the two checkouts (``--before`` is e.g. a ``git worktree`` of an older commit), and
prints the median wall time of each with the load average. Both must find the same trials: the script compares
every trial's parameters, score and latency between the checkouts and fails if one differs (a faster search
that finds something else would be a different search, not a faster one).
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archc.machine import cpu_description  # noqa: E402


def run(checkout: Path, argv, out: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout), ARCHC_PROGRESS="off", OMP_NUM_THREADS="1")
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "archc", "search", *argv, "--out", str(out)], cwd=out.parent,
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"search in {checkout} failed (rc {done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def trials(out: Path):
    """Every finished trial's number, state, parameters, score and latency, as strings (order-independent)."""
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [k for k in rows[0] if k in ("number", "status", "score", "latency_ms", "params_m", "reason")
            or k.startswith("p:")]
    return sorted(tuple((k, r[k]) for k in keep) for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="another archc checkout (a git worktree)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--latency-ms", default="1.5")
    ap.add_argument("extra", nargs="*", help="more search arguments (after --)")
    args = ap.parse_args()
    argv = ["--latency-ms", args.latency_ms, "--trials", str(args.trials), "--seed", "0", *args.extra]
    checkouts = {"now": ROOT, "before": args.before.resolve()}
    times = {k: [] for k in checkouts}
    found = {}
    for _ in range(args.repeats):
        for label, path in checkouts.items():
            out = Path(tempfile.mkdtemp(prefix=f"archc-search-{label}-")) / "run"
            times[label].append(run(path, argv, out))
            found.setdefault(label, trials(out))
    same = found["now"] == found["before"]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu_description()}; load average "
          f"{os.getloadavg()[0]:.1f}; `archc search {' '.join(argv)}`, {args.repeats} runs each, alternating")
    print("| checkout | median s | runs s |\n|---|---:|---|")
    for label in checkouts:
        print(f"| {label} | {statistics.median(times[label]):.1f} | {', '.join(f'{t:.1f}' for t in times[label])} |")
    print(f"ratio before/now: {statistics.median(times['before']) / statistics.median(times['now']):.2f}x; "
          f"same trials (parameters, states, scores, latencies): {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
