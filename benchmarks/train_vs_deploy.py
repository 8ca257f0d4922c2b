"""Train-time graph (eval mode, all branches, BN and skips) vs deploy graph, for every shipped spec:
CPU, batch 1, each spec's own input size, the two graphs (and the deploy graph under ``--runtime``)
interleaved in one process.

    PYTHONPATH=. python benchmarks/train_vs_deploy.py --threads 1 --runs 60
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import finish, md_table, randomized, ratio_ci, start, stats  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", default=None, help="comma-separated names (default: every specs/*.yaml)")
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runtime", default="onnxruntime", help="a runtime option also timed on the deploy graph ('' for none)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    m = start(args.threads)
    from archc.analysis.profile import profile_graph
    from archc.latency.measure import time_interleaved
    from archc.runtime import input_shape, make_runner

    names = args.specs.split(",") if args.specs else [os.path.basename(p)[:-5] for p in sorted(glob.glob("specs/*.yaml"))]
    rows, report = [], {"machine": m, "specs": {}}
    for name in names:
        spec, train, deploy = randomized(name)
        x = torch.randn(input_shape(spec), generator=torch.Generator().manual_seed(0))
        pt, pd = profile_graph(train, x), profile_graph(deploy, x)

        def eager(mod):
            def f():
                with torch.inference_mode():
                    return mod(x)
            return f

        steps = {"train": eager(train), "deploy": eager(deploy)}
        if args.runtime:
            r = make_runner(deploy, x, args.runtime)
            xin = r.prepare(x)
            steps[args.runtime] = (lambda r=r, xin=xin: r(xin))
        s = time_interleaved(steps, args.runs, args.warmup)
        st = {k: stats(v) for k, v in s.items()}
        speed = st["train"]["median_ms"] / st["deploy"]["median_ms"]
        ci = ratio_ci(s["train"], s["deploy"])
        report["specs"][name] = {"stats": st, "train_over_deploy": speed, "ci95": ci, "samples": s,
                                 "residual_adds": [pt.residual_adds(), pd.residual_adds()],
                                 "bytes_moved": [pt.bytes_moved, pd.bytes_moved], "macs": [pt.macs, pd.macs]}
        res = "x".join(map(str, spec.input_size))
        row = [name, res, f"{st['train']['median_ms']:.2f} ({100 * st['train']['cv']:.0f}%)",
               f"{st['deploy']['median_ms']:.2f} ({100 * st['deploy']['cv']:.0f}%)", f"{speed:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"]
        if args.runtime:
            row.append(f"{st[args.runtime]['median_ms']:.2f} ({100 * st[args.runtime]['cv']:.0f}%)")
        row += [f"{pt.residual_adds()} -> {pd.residual_adds()}", f"{pt.bytes_moved / 2**20:.0f} -> {pd.bytes_moved / 2**20:.0f}"]
        rows.append(row)
        print(" | ".join(row), flush=True)
    header = ["spec", "input", "train ms (CV)", "deploy ms (CV)", "train / deploy [95% CI]"]
    if args.runtime:
        header.append(f"deploy, {args.runtime} ms (CV)")
    header += ["residual adds", "MiB moved (est.)"]
    print()
    print(md_table(header, rows))
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
