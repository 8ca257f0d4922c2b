"""Which runtime option runs archc's deploy graph fastest on this CPU: eager, channels_last, explicit
attention (matmul-softmax-matmul instead of SDPA), torch.compile (NCHW / channels_last), ONNX Runtime.
All options of one spec are interleaved in one process; each is checked against the eager output first.

    PYTHONPATH=. python benchmarks/runtime_options.py --specs t8,sa12 --threads 1

The winner per device becomes ``archc.runtime.BEST_RUNTIME`` (``--runtime best``); figures in
docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import finish, md_table, randomized, ratio_ci, start, stats  # noqa: E402

ALL = "eager,channels_last,explicit_attention,compile,compile_channels_last,onnxruntime"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", default="t8,sa12")
    p.add_argument("--runtimes", default=ALL)
    p.add_argument("--resolution", type=int, default=None, help="default: each spec's input_size")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    m = start(args.threads)
    from archc.latency.measure import time_interleaved
    from archc.runtime import input_shape, make_runner

    report = {"machine": m, "specs": {}}
    for name in args.specs.split(","):
        spec, _, deploy = randomized(name)
        x = torch.randn(input_shape(spec, 1, args.resolution), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = deploy(x)
        steps, setup_s, errors = {}, {}, {}
        for rt in args.runtimes.split(","):
            t0 = time.perf_counter()
            r = make_runner(deploy, x, rt)
            xin = r.prepare(x)
            out = r.output(x)  # first call: compiles where the runtime compiles
            setup_s[rt] = time.perf_counter() - t0
            errors[rt] = float((out - ref).abs().max()) / max(1.0, float(ref.abs().max()))
            if errors[rt] > 1e-4:
                raise SystemExit(f"{name}: runtime {rt} disagrees with eager: {errors[rt]:.2e}")
            steps[rt] = (lambda r=r, xin=xin: r(xin))
        samples = time_interleaved(steps, args.runs, args.warmup)
        base = samples["eager"] if "eager" in samples else next(iter(samples.values()))
        rows, out = [], {}
        for rt, s in samples.items():
            st = stats(s)
            st.update(vs_eager=st["median_ms"] / stats(base)["median_ms"], vs_eager_ci95=ratio_ci(s, base),
                      setup_s=setup_s[rt], max_rel_error=errors[rt])
            out[rt] = {**st, "samples": s}
            rows.append((rt, f"{st['median_ms']:.2f}", f"{st['iqr_ms']:.2f}", f"{100 * st['cv']:.1f}%",
                         f"{st['vs_eager']:.3f} [{st['vs_eager_ci95'][0]:.3f}, {st['vs_eager_ci95'][1]:.3f}]",
                         f"{setup_s[rt]:.1f}", f"{errors[rt]:.1e}"))
        report["specs"][name] = out
        res = "x".join(map(str, x.shape[2:]))
        print(f"\n{name} deploy graph @ {res}, batch 1, {args.runs} runs each, interleaved")
        print(md_table(["runtime", "median ms", "IQR ms", "CV", "x eager [95% CI]", "setup s", "max rel. err"], rows))
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
