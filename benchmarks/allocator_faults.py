"""Why CPU timings keep freed memory: one model's latency under glibc's default allocator depends on
what the process ran before it; with ``archc.latency.allocator.keep_freed_memory`` it does not.

    taskset -c 1 python benchmarks/allocator_faults.py SPEC.yaml [--resolutions 160,256,384,256] [--runs 12]

Runs the spec's deploy graph (eager, one thread) at each resolution in turn, in two fresh processes: glibc's
defaults, then freed memory kept; prints per resolution the median of the runs after 4 warm-up runs and the
minor page faults per forward (``getrusage``). Repeating a resolution after a larger one shows the history.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.path.dirname(__file__))
from _common import describe_machine, machine, md_table  # noqa: E402


def child(spec_path: str, resolutions, runs: int, keep: bool) -> None:
    import resource
    import warnings
    import torch
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if keep:
        from archc.latency.allocator import keep_freed_memory
        keep_freed_memory()
    import archc
    from archc.runtime import inference_model
    spec = archc.load_spec(spec_path)
    model = inference_model(spec, None, deploy=True)
    out = []
    for res in resolutions:
        x = torch.randn(1, 3, res, res)
        times = []
        with torch.inference_mode():
            for i in range(4 + runs):
                if i == 4:
                    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                model(x)
                if i >= 4:
                    times.append((time.perf_counter() - t0) * 1e3)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / runs
        out.append({"resolution": res, "ms": statistics.median(times), "faults": faults})
    print(json.dumps(out))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("spec")
    p.add_argument("--resolutions", default="160,256,384,256")
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--child", choices=["default", "keep"], help=argparse.SUPPRESS)
    a = p.parse_args()
    resolutions = [int(r) for r in a.resolutions.split(",")]
    if a.child:
        child(a.spec, resolutions, a.runs, a.child == "keep")
        return 0
    print(describe_machine(machine()))
    results = {}
    for mode in ("default", "keep"):
        cmd = [sys.executable, __file__, a.spec, "--resolutions", a.resolutions, "--runs", str(a.runs), "--child", mode]
        results[mode] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout)
    rows = [(d["resolution"], f"{d['ms']:.1f}", f"{d['faults']:.0f}", f"{k['ms']:.1f}", f"{k['faults']:.0f}")
            for d, k in zip(results["default"], results["keep"])]
    print(md_table(["resolution (in run order)", "glibc default ms", "faults / forward", "freed memory kept ms",
                    "faults / forward"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
