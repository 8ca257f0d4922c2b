"""``archc slim SPACE --latency-ms B``: EfficientFormer's latency-driven slimming (supernet + greedy slimming).

Writes ``OUT/NAME.yaml`` (a spec ``archc build`` takes), ``OUT/trace.json`` (every slimming step: what went,
importance given up, latency before/after) and ``OUT/trace.png``. See docs/SLIMMING.md.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from . import COMMANDS
from .common import add_train_args, console, train_settings


def register(sub) -> None:
    p = sub.add_parser("slim", help=COMMANDS["slim"],
                       description="Train a supernet over SPACE's depth/width/Meta3D choices with Gumbel-softmax "
                                   "path weights, then greedily remove the least important choice per millisecond "
                                   "saved until the latency budget holds.")
    p.add_argument("space", metavar="SPACE", help="search space YAML (e.g. search/efficientformer.yaml)")
    p.add_argument("--latency-ms", type=float, required=True, metavar="MS", help="latency budget in milliseconds")
    p.add_argument("--target", default="iphone12pro",
                   help="latency target: a device profile (predicted) or a measured target (default: %(default)s)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/slim-SPACE-TARGET-MSms)")
    p.add_argument("--json", action="store_true", help="print the trace as JSON on stdout")
    add_train_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ArchcError
    from ..latency import latency
    from ..search.objective import check_target
    from ..search.slim import plot_trace, run_slim
    from ..space import load_space
    from ..spec import save_spec
    from ..train import TrainConfig

    if not (math.isfinite(args.latency_ms) and args.latency_ms > 0):
        raise ArchcError(f"--latency-ms must be a positive number of milliseconds, got {args.latency_ms}")
    check_target(args.target)
    space = load_space(args.space)
    cfg = TrainConfig.from_dict(train_settings(args, "train")).check()
    from ..search.slim import check_reachable, stage_choices
    check_reachable(space, stage_choices(space), args.latency_ms, lambda spec: latency(spec, args.target).ms)
    out = Path(args.out or f"runs/slim-{space.name}-{args.target}-{args.latency_ms:g}ms")
    out.mkdir(parents=True, exist_ok=True)
    con = console()
    plain = not con.is_terminal  # no live status line: progress as lines on stderr (a long run stays visible)
    with con.status("training the supernet") as status:
        def progress(step, steps, loss):
            status.update(f"training the supernet: step {step}/{steps}, loss {loss:.3f}")
            if plain and (step == steps or step % 10 == 0):
                print(f"supernet step {step}/{steps}, loss {loss:.3f}", file=sys.stderr, flush=True)

        def step_progress(s):
            status.update(f"slimming: step {s.step}, {s.action} (stage {s.stage}), {s.latency_after_ms:.3f} ms")
            if plain:
                print(f"slimming step {s.step}: {s.action} (stage {s.stage}), {s.latency_before_ms:.3f} -> "
                      f"{s.latency_after_ms:.3f} ms", file=sys.stderr, flush=True)
        result = run_slim(space, args.latency_ms, lambda spec: latency(spec, args.target).ms, cfg,
                          progress=progress, step_progress=step_progress)
    spec_path = out / f"{result.spec.name}.yaml"
    save_spec(result.spec, spec_path)
    trace = dict(result.trace(), space=str(space.file), target=args.target, spec=str(spec_path),
                 train_settings=cfg.describe())
    (out / "trace.json").write_text(json.dumps(trace, indent=2, default=str))
    plot_trace(result, out / "trace.png")
    if args.json:
        print(json.dumps(trace, indent=2, default=str))
        return 0
    con.print(f"supernet: {result.train_steps} steps in {result.train_seconds:.1f} s, loss {result.train_loss_first:.3f} "
              f"-> {result.train_loss_last:.3f} ({result.info['data']})")
    con.print(f"slimming: {result.start_latency_ms:.3f} ms -> {result.latency_ms:.3f} ms on {args.target} in "
              f"{len(result.steps)} steps (budget {args.latency_ms:g} ms)")
    for s in result.steps:
        where = f"stage {s.stage}" + (f" block {s.block}" if s.block is not None else "")
        con.print(f"  {s.step:3d}. {s.action:<18} {where:<18} importance {s.importance:+.4f}  "
                  f"{s.latency_before_ms:.3f} -> {s.latency_after_ms:.3f} ms")
    con.print(f"spec: {spec_path}  (depths {','.join(map(str, result.spec.depths))}, widths "
              f"{','.join(map(str, result.spec.widths))}, meta3d {result.spec.stages[-1].mixer.meta3d})")
    con.print(f"files: {out / 'trace.json'}, {out / 'trace.png'}")
    return 0
