"""Where the time goes: torch.profiler per-op totals of archc's deploy graph vs timm's
``reparameterize_model`` output (same weights, CPU, batch 1). Runs in the anchor venv::

    PYTHONPATH=. /tmp/archc-anchor-venv/bin/python benchmarks/profile_ops.py --variant sa12 --threads 1

Prints, per aten op, calls and self CPU time per forward for both graphs, and the op counts of each
graph; ``--memory-format channels_last`` profiles both in NHWC.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import describe_machine, machine, md_table, randomized  # noqa: E402


def op_times(models, x, iters: int, rounds: int):
    """Per model: {aten op: [calls, self ms]} per forward. The models are profiled in alternating rounds
    so that a change in machine load hits them alike."""
    outs = [defaultdict(lambda: [0.0, 0.0]) for _ in models]
    with torch.inference_mode():
        for m in models:
            for _ in range(5):
                m(x)
        for _ in range(rounds):
            for m, out in zip(models, outs):
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(iters):
                        m(x)
                for e in prof.key_averages():
                    out[e.key][0] += e.count / iters / rounds
                    out[e.key][1] += e.self_cpu_time_total / iters / rounds / 1e3  # ms per forward
    return [(out, sum(v[1] for v in out.values())) for out in outs]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", default="sa12")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--iters", type=int, default=5, help="forwards per profiled round")
    p.add_argument("--rounds", type=int, default=6, help="alternating rounds (archc, timm, archc, ...)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--memory-format", default="contiguous", choices=["contiguous", "channels_last"])
    p.add_argument("--top", type=int, default=18)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    import timm
    from timm.utils.model import reparameterize_model

    _, train, a_dep = randomized(args.variant, {"input_size": args.resolution})
    tm = timm.create_model(f"fastvit_{args.variant}", pretrained=False).eval()
    tm.load_state_dict(train.state_dict(), strict=True)
    t_dep = reparameterize_model(tm).eval()
    x = torch.randn(1, 3, args.resolution, args.resolution)
    if args.memory_format == "channels_last":
        t_dep = t_dep.to(memory_format=torch.channels_last)
        a_dep = a_dep.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    (ta, tt), (tb, tb_total) = op_times([a_dep, t_dep], x, args.iters, args.rounds)
    keys = sorted(set(ta) | set(tb), key=lambda k: -max(ta.get(k, [0, 0])[1], tb.get(k, [0, 0])[1]))
    rows = []
    for k in keys[:args.top]:
        a = ta.get(k, [0, 0.0])
        b = tb.get(k, [0, 0.0])
        rows.append((k, f"{a[0]:.0f}", f"{a[1]:.2f}", f"{b[0]:.0f}", f"{b[1]:.2f}", f"{a[1] - b[1]:+.2f}"))
    rows.append(("**total (self CPU)**", "", f"{tt:.2f}", "", f"{tb_total:.2f}", f"{tt - tb_total:+.2f}"))
    print(describe_machine(machine()))
    print(f"\n{args.variant} @ {args.resolution}, {args.memory_format}, per forward, {args.rounds} x {args.iters} forwards each, alternating")
    print(md_table(["aten op", "archc calls", "archc ms", "timm calls", "timm ms", "archc - timm ms"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
