"""archc's deploy graph against timm 1.0.31's ``reparameterize_model`` output: same weights, CPU,
batch 1, interleaved in one process (issue 3's speed targets).

Run in the anchor venv (timm is never an archc dependency)::

    PYTHONPATH=. /tmp/archc-anchor-venv/bin/python benchmarks/bench_vs_timm.py --threads 1

Contenders, all on one random input with archc's randomised BN statistics and layer scales loaded into
both models (archc uses timm's parameter names): timm eager deploy, archc's deploy graph as the pass
returns it (eager, no kernel lowering), and archc under each runtime option (``archc.runtime.make_runner``:
the deploy graph plus the kernel lowerings that runtime uses, archc.runtime.CPU_LOWERINGS). Every
contender is checked against timm's output before it is timed.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import finish, md_table, randomized, ratio_ci, start, stats  # noqa: E402


def contenders(variant: str, resolution: int, runtimes, with_train: bool, timm_onnx: bool):
    import timm
    from timm.utils.model import reparameterize_model

    from archc.runtime import make_runner

    spec, train, archc_deploy = randomized(variant, {"input_size": resolution})
    tm = timm.create_model(f"fastvit_{variant}", pretrained=False).eval()
    tm.load_state_dict(train.state_dict(), strict=True)  # the very same weights
    timm_deploy = reparameterize_model(tm).eval()
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = timm_deploy(x)

    def eager(m) -> Callable[[], object]:
        def f():
            with torch.inference_mode():
                return m(x)
        return f

    steps: Dict[str, Callable[[], object]] = {"timm deploy (eager)": eager(timm_deploy),
                                              "archc deploy, no kernel lowering (eager)": eager(archc_deploy)}
    outputs = {"timm deploy (eager)": ref, "archc deploy, no kernel lowering (eager)": archc_deploy(x).detach()}
    if with_train:
        steps["timm train-time (eager)"] = eager(tm)
        steps["archc train-time (eager)"] = eager(train)
    runners = []
    for rt in runtimes:
        r = make_runner(archc_deploy, x, rt)
        runners.append(r)
        xin = r.prepare(x)
        steps[f"archc deploy ({rt})"] = (lambda r=r, xin=xin: r(xin))
        outputs[f"archc deploy ({rt})"] = r.output(x)
    if timm_onnx:
        r = make_runner(timm_deploy, x, "onnxruntime")
        runners.append(r)
        xin = r.prepare(x)
        steps["timm deploy (onnxruntime)"] = (lambda r=r, xin=xin: r(xin))
        outputs["timm deploy (onnxruntime)"] = r.output(x)
    scale = max(1.0, ref.abs().max().item())
    errors = {k: float((v.float() - ref).abs().max()) / scale for k, v in outputs.items()}
    bad = {k: e for k, e in errors.items() if e > 1e-4}
    if bad:
        raise SystemExit(f"{variant}: contenders disagree with timm: {bad}")
    return steps, errors


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="t8,sa12")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--block", type=int, default=5, help="consecutive runs per contender before switching")
    p.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime intra-op threads")
    p.add_argument("--runtimes", default="eager,channels_last,onnxruntime",
                   help="archc runtime options to time besides eager (e.g. compile)")
    p.add_argument("--with-train", action="store_true", help="also time both train-time graphs")
    p.add_argument("--timm-onnx", action="store_true", help="also time timm's deploy graph in ONNX Runtime")
    p.add_argument("--json", default=None, help="write all samples and statistics here")
    args = p.parse_args()
    m = start(args.threads)
    from archc.latency.measure import time_interleaved

    report = {"machine": m, "variants": {}}
    runtimes = [r for r in args.runtimes.split(",") if r]
    for variant in args.variants.split(","):
        steps, errors = contenders(variant, args.resolution, runtimes, args.with_train, args.timm_onnx)
        samples = time_interleaved(steps, args.runs, args.warmup, block=args.block)
        base = samples["timm deploy (eager)"]
        rows, out = [], {}
        for name, s in samples.items():
            st = stats(s)
            st["vs_timm_deploy"] = st["median_ms"] / stats(base)["median_ms"]
            st["vs_timm_ci95"] = ratio_ci(s, base)
            st["max_rel_error_vs_timm"] = errors.get(name)
            out[name] = {**st, "samples": s}
            err = f"{errors[name]:.1e}" if name in errors else "-"
            rows.append((name, f"{st['median_ms']:.2f}", f"{st['iqr_ms']:.2f}", f"{100 * st['cv']:.1f}%",
                         f"{st['vs_timm_deploy']:.3f} [{st['vs_timm_ci95'][0]:.3f}, {st['vs_timm_ci95'][1]:.3f}]", err))
        report["variants"][variant] = out
        print(f"\n{variant} @ {args.resolution}x{args.resolution}, batch 1, {args.runs} runs each, interleaved "
              f"in blocks of {args.block}")
        print(md_table(["contender", "median ms", "IQR ms", "CV", "x timm deploy [95% CI]", "max rel. err vs timm"], rows))
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
