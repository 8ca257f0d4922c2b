"""Training speed: images/s of archc's train step against timm 1.0.31's FastViT-T8, side by side in one process.

Run in the anchor venv (timm is never an archc dependency)::

    PYTHONPATH=. /tmp/archc-anchor-venv/bin/python benchmarks/train_speed_vs_timm.py --threads 1

One step = forward, label-smoothed cross-entropy, backward, AdamW step (archc's ``param_groups``), on the same
random batch; both models start from the very same weights (archc uses timm's parameter names) and their
first-step losses are checked equal before anything is timed. Steps are interleaved in shuffled blocks
(``archc.latency.measure.time_interleaved``), so a change in the machine's load falls on both alike.
"""
from __future__ import annotations

import argparse
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import finish, md_table, ratio_ci, start, stats  # noqa: E402


def step_fn(model, x, y):
    from archc.train.loop import param_groups
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()

    def step():
        loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=15, help="timed steps per contender and setting")
    ap.add_argument("--settings", default="32x64,64x32", help="RESOLUTIONxBATCH,... (default: %(default)s)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    m = start(args.threads)
    import timm

    import archc
    from archc.latency.measure import time_interleaved
    rows, report = [], {"machine": m, "runs": args.runs, "results": []}
    for setting in args.settings.split(","):
        res, batch = (int(v) for v in setting.split("x"))
        spec = archc.load_spec("specs/t8.yaml", {"input_size": res, "num_classes": 10})
        torch.manual_seed(0)
        ours = archc.build(spec)
        theirs = timm.create_model("fastvit_t8", pretrained=False, num_classes=10)
        theirs.load_state_dict(ours.state_dict(), strict=True)
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(batch, 3, res, res, generator=g), torch.randint(0, 10, (batch,), generator=g)
        with torch.random.fork_rng():
            a = float(step_fn(ours, x, y)())
        with torch.random.fork_rng():
            b = float(step_fn(theirs, x, y)())
        if abs(a - b) > 1e-4 * max(1.0, abs(b)):
            raise SystemExit(f"first-step losses differ: archc {a} vs timm {b}; not the same computation")
        samples = time_interleaved({"archc": step_fn(ours, x, y), "timm": step_fn(theirs, x, y)},
                                   runs=args.runs, warmup=2, block=3)
        sa, st = stats(samples["archc"]), stats(samples["timm"])
        ips_a, ips_t = batch / (sa["median_ms"] / 1e3), batch / (st["median_ms"] / 1e3)
        lo, hi = ratio_ci(samples["timm"], samples["archc"])  # archc speed / timm speed = timm time / archc time
        rows.append((f"{res} px, batch {batch}", f"{ips_a:.1f}", f"{ips_t:.1f}",
                     f"{ips_a / ips_t:.2f}x [{lo:.2f}, {hi:.2f}]", f"{a:.5f} / {b:.5f}"))
        report["results"].append({"resolution": res, "batch": batch, "archc_img_s": ips_a, "timm_img_s": ips_t,
                                  "ratio": ips_a / ips_t, "ratio_ci": [lo, hi], "first_loss": [a, b],
                                  "archc_ms": sa, "timm_ms": st})
        print(f"{setting}: archc {ips_a:.1f} img/s, timm {ips_t:.1f} img/s", flush=True)
    print()
    print(md_table(["input", "archc img/s", "timm img/s", "archc / timm [95%]", "first-step loss archc / timm"], rows))
    return finish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
