"""Latency against input resolution (the paper's Fig. 3): deploy graphs of PoolFormer-S12, its RepMixer
twin and FastViT variants at 224..1024, CPU, batch 1; at each resolution all specs are interleaved.
Writes a PNG (one line per spec) with the same plotting code as ``archc bench --plot``.

    PYTHONPATH=. python benchmarks/resolution_sweep.py --threads 1 --plot docs/img/resolution_sweep_cpu.png
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import finish, md_table, randomized, start, stats  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", default="poolformer_s12,poolformer_s12_repmixer,t8,sa12")
    p.add_argument("--resolutions", default="224,384,512,768,1024")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runtime", default="eager")
    p.add_argument("--plot", default="docs/img/resolution_sweep_cpu.png")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    m = start(args.threads)
    from archc.cli.bench import write_plot
    from archc.latency.measure import time_interleaved
    from archc.runtime import make_runner

    names = args.specs.split(",")
    graphs = {}
    for n in names:
        spec, _, deploy = randomized(n)
        graphs[n] = (spec, deploy)
    results, rows = [], []
    for res in [int(r) for r in args.resolutions.split(",")]:
        x = torch.randn(1, 3, res, res, generator=torch.Generator().manual_seed(0))
        steps = {}
        for n, (spec, g) in graphs.items():
            r = make_runner(g, x, args.runtime)
            xin = r.prepare(x)
            steps[n] = (lambda r=r, xin=xin: r(xin))
        s = time_interleaved(steps, args.runs, args.warmup, block=2)
        row = [str(res)]
        for n in names:
            st = stats(s[n])
            results.append({"spec": n, "name": graphs[n][0].name, "graph": "deploy", "kind": "measured",
                            "resolution": [res, res], "batch": 1, "ms": st["median_ms"], "iqr_ms": st["iqr_ms"],
                            "cv": st["cv"], "runs": st["runs"], "samples": s[n]})
            row.append(f"{st['median_ms']:.1f} ({100 * st['cv']:.0f}%)")
        rows.append(row)
        print(" | ".join(row), flush=True)
    print()
    print(md_table(["resolution"] + [f"{n} ms (CV)" for n in names], rows))
    plot = write_plot(results, Path(args.plot), f"CPU, {torch.get_num_threads()} thread(s), runtime {args.runtime}")
    print(f"\nplot: {plot}")
    return finish({"machine": m, "results": results}, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
