"""The search's acceptance check, by hand (not a unit test: it takes minutes).

Runs ``archc search --latency-ms BUDGET --trials N`` (defaults: the README's command, 1.5 ms and 40
trials) in a fresh directory, then checks what issue 5 asks and prints the figures as markdown for
docs/BENCHMARKS.md:

- wall time of the command on this machine (with the load average, since the machine is shared);
- every reported Pareto candidate's re-measured / re-predicted latency is within the budget;
- the best feasible candidate scores at least as high as the best paper variant within the budget.

    python benchmarks/search_check.py [--latency-ms 1.5] [--trials 40] [--workers 1] [-- extra search args]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=1.5)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--keep", metavar="DIR", help="run in DIR (kept) instead of a temporary directory")
    ap.add_argument("extra", nargs="*", help="further `archc search` arguments (after --)")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="archc-search-check-"))
    work.mkdir(parents=True, exist_ok=True)
    out = work / "out"
    cmd = [sys.executable, "-m", "archc", "search", "--latency-ms", str(args.latency_ms), "--trials", str(args.trials),
           "--workers", str(args.workers), "--space", str(ROOT / "search" / "fastvit.yaml"),
           "--storage", f"sqlite:///{work}/search.db", "--out", str(out), *args.extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    load_before = os.getloadavg()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    load_after = os.getloadavg()
    if proc.returncode:
        print(proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
        return proc.returncode
    summary = json.loads((out / "summary.json").read_text())
    budget = summary["latency_budget_ms"]
    cands = summary["candidates"]
    within = all(c["final_latency_ms"] <= budget for c in cands)
    best = max(cands, key=lambda c: c["score"]) if cands else None
    bv = summary["best_variant"]
    ok_best = best is not None and (bv is None or best["score"] >= bv["score"])
    t = summary["trials"]
    print(proc.stdout)
    print(f"### `archc search --latency-ms {args.latency_ms:g} --trials {args.trials}` "
          f"({datetime.now(timezone.utc):%Y-%m-%d})\n")
    print(f"- machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (shared machine)")
    print(f"- command: `{' '.join(cmd[1:])}`")
    print(f"- wall time: {wall:.0f} s for {t['finished']} trials ({wall / max(1, t['finished']):.1f} s per trial), "
          f"workers {args.workers}")
    print(f"- trials: {t['complete']} complete, {t['pruned']} pruned (infeasible), {t['failed']} failed; "
          f"{t['feasible']} feasible")
    print(f"- {distinct_points(work / 'search.db')}")
    print(f"- objective {summary['objective']}, target {summary['target']}, budget {budget:g} ms")
    how = "predicted" if cands and cands[0]["final_kind"] == "predicted" else "measured"
    lats = ", ".join(f"{c['final_latency_ms']:.3f}" for c in cands)
    print(f"- Pareto candidates: {len(cands)}, re-{how} latency {lats} ms: "
          f"{'all within budget' if within else 'NOT all within budget'}; dropped on re-measure: {len(summary['dropped'])}")
    if best:
        print(f"- best candidate: trial {best['trial']} ({best['variant'] or 'found by the search'}), score {best['score']:.6g}, "
              f"{best['final_latency_ms']:.3f} ms, depths {best['depths']}, widths {best['widths']}, mixers {best['mixers']}")
    if bv:
        print(f"- best paper variant within budget: {bv['variant']}, score {bv['score']:.6g}, {bv['latency_ms']:.3f} ms -> "
              f"best candidate {'>=' if ok_best else '<'} it")
    return 0 if within and ok_best else 1


def distinct_points(db: Path) -> str:
    """How many finished trials evaluated a point no other finished trial did (two workers, or two
    machines, drawing the same random points would show here; TPE may also re-propose a point late)."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{db}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
    done = [t for t in study.trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]
    points = {tuple(sorted(t.params.items())) for t in done}
    return f"distinct points: {len(points)} among {len(done)} complete or pruned trials"


if __name__ == "__main__":
    sys.exit(main())
