"""``archc proxies``: zero-cost proxy scores for specs, and ``--eval`` against the published top-1."""
from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

from ..errors import ArchcError
from . import COMMANDS
from .common import add_input_size_arg, console, json_safe, load_from_args, print_json, table


def register(sub) -> None:
    from ..proxies.names import DEFAULT, NAMES
    p = sub.add_parser("proxies", help=COMMANDS["proxies"],
                       description="Zero-cost proxies (synflow, naswot, zico, grad_norm, jacob_cov, params) computed "
                       "on the seeded, untrained train-time model. --eval ranks the published FastViT points "
                       "(published_fastvit.csv) by every proxy and reports Kendall tau-b and Spearman rho "
                       "against their published ImageNet top-1.")
    p.add_argument("specs", nargs="*", metavar="SPEC", help="spec YAML files to score")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key (repeatable)")
    add_input_size_arg(p)
    p.add_argument("--proxy", action="append", default=None, metavar="NAME",
                   help=f"proxy to compute (repeatable): {', '.join(NAMES)} (default: {DEFAULT}, the parameter "
                        "count in M, or all with --eval)")
    p.add_argument("--all", action="store_true", help="compute every proxy")
    p.add_argument("--eval", action="store_true", help="rank-correlate proxies with the published top-1")
    p.add_argument("--csv", metavar="FILE", help="published figures (default: the copy of published_fastvit.csv "
                   "shipped in archc/data/reference)")
    p.add_argument("--specs-dir", metavar="DIR", help="where the published points' specs are (default: the shipped "
                   "spec of each row's model name)")
    p.add_argument("--groundtruth", nargs="?", const="shipped", default=None, metavar="FILE",
                   help="with --eval: rank against a trained ground truth (JSONL; default: the shipped "
                        "Fashion-MNIST one), overall and per latency band, with bootstrap intervals and regret; "
                        "--proxy train adds the brief-training objective (100 steps on Fashion-MNIST)")
    p.add_argument("--truth", default="test", choices=("test", "val"),
                   help="with --groundtruth: rank against mean test (default) or validation top-1")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="batch size for every proxy (default: each proxy's own, see docs/PROXIES.md)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and inputs (default 0)")
    p.add_argument("--save", metavar="FILE.json", default=None,
                   help="with --eval: write the results so far to FILE.json after each proxy finishes (an "
                        "interrupted run keeps what it finished)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _one_by_one(names, evaluate_one, prog, save, meta: dict, to_json):
    """Evaluate proxies one at a time: each result is announced (stderr) and saved as it finishes, and Ctrl-C
    keeps the finished ones. Returns (results, interrupted)."""
    import json

    results = []
    try:
        for name in names:
            results.append(evaluate_one(name))
            r = results[-1]
            tau = getattr(r, "kendall_tau", float("nan"))
            prog.note(f"{name}: Kendall tau-b {tau:+.3f} ({r.seconds:.1f} s)")
            if save:
                doc = {**meta, "finished": [x.proxy if hasattr(x, "proxy") else x.signal for x in results],
                       "complete": len(results) == len(names), "results": [to_json(x) for x in results]}
                tmp = Path(save).with_name(f".{Path(save).name}.tmp")
                tmp.write_text(json.dumps(json_safe(doc), indent=1, allow_nan=False))
                tmp.replace(save)
    except KeyboardInterrupt:
        print(f"archc: interrupted: {len(results)} of {len(names)} proxies finished"
              + (f" (saved in {save})" if save and results else ""), file=sys.stderr)
        return results, True
    return results, False


def _names(args):
    from ..proxies.names import DEFAULT, NAMES, check_name
    if args.all:
        return list(NAMES)
    if args.proxy:
        if args.groundtruth and args.eval:
            return [n if n == "train" else check_name(n) for n in args.proxy]
        return [check_name(n) for n in args.proxy]
    return list(NAMES) if args.eval else [DEFAULT]


def run(args) -> int:
    names = _names(args)
    if args.batch is not None and args.batch < 1:
        raise ArchcError(f"--batch must be >= 1, got {args.batch}")
    if args.groundtruth and not args.eval:
        raise ArchcError("--groundtruth goes with --eval (archc proxies --eval --groundtruth [FILE])")
    if args.save:
        if not args.eval:
            raise ArchcError("--save goes with --eval (it keeps the evaluation's results as they finish)")
        from ..outputs import writable_file
        writable_file(args.save, "--save")
    if args.eval:
        if args.specs:
            raise ArchcError("--eval scores the published points; do not pass SPEC files with it")
        if args.groundtruth:
            return run_groundtruth_eval(args, names)
        return run_eval(args, names)
    if not args.specs:
        raise ArchcError("give SPEC files to score, or --eval")
    specs = [(path, load_from_args(path, args)) for path in args.specs]  # every spec error before any work
    from ..proxies import score
    from .progress import Progress
    rows, out = [], []
    if args.batch:
        from ..guards import check_memory
        for _, spec in specs:
            check_memory(spec, args.batch, key="--batch")
    with Progress("proxies", total=len(specs) * len(names), mode=None if len(specs) * len(names) > 1 else "off") as prog:
        for path, spec in specs:
            vals = {}
            for n in names:
                prog.update(status=f"{n}: {spec.name}")
                vals[n] = score(spec, n, seed=args.seed, batch=args.batch, resolution=args.input_size)
                prog.advance()
            out.append({"spec": path, "name": spec.name, "scores": vals})
            rows.append([path, spec.name] + [f"{vals[n]:.4f}" for n in names])
    if args.json:
        print_json({"seed": args.seed, "results": out})
    else:
        console().print(table(f"zero-cost proxies (seed {args.seed}; higher = predicted better)",
                              ["spec", "name"] + names, rows, right=names))
    return 0


def run_eval(args, names) -> int:
    import torch
    from ..machine import cpu_description
    from ..proxies import DEFAULT, PROXY_SETTINGS
    from ..proxies.evaluate import default_csv, evaluate, read_published
    csv_path = Path(args.csv) if args.csv else default_csv()
    points = read_published(csv_path, Path(args.specs_dir) if args.specs_dir else None)
    con = console()
    from .progress import Progress
    with Progress("proxies --eval", total=len(names) * len(points)) as prog:
        step = {"n": 0}

        def progress(proxy: str, name: str) -> None:  # called before each point: the previous one is done
            if step["n"]:
                prog.advance()
            step["n"] += 1
            prog.update(status=f"{proxy}: {name}")

        meta = {"csv": str(csv_path), "points": len(points), "seed": args.seed,
                "batch": args.batch or "per proxy", "resolution": args.input_size or "per proxy",
                "date": _dt.date.today().isoformat(), "machine": cpu_description(),
                "default": DEFAULT}

        def to_json(r):
            return {"proxy": r.proxy, "kendall_tau": r.kendall_tau, "spearman_rho": r.spearman_rho,
                    "seconds": round(r.seconds, 2), "scores": r.scores}

        def one(name):
            return evaluate(points, [name], seed=args.seed, batch=args.batch, resolution=args.input_size,
                            progress=progress)[0]
        results, interrupted = _one_by_one(names, one, prog, args.save, meta, to_json)
        if not interrupted:
            prog.advance()
    if args.json:
        print_json({**meta, "complete": not interrupted, "results": [to_json(r) for r in results]})
        return 130 if interrupted else 0
    rows = []
    for r in sorted(results, key=lambda r: -r.kendall_tau):
        s = PROXY_SETTINGS[r.proxy]
        no_input = r.proxy == "params"  # counts parameters: no forward pass, no input
        rows.append((r.proxy + (" (default)" if r.proxy == DEFAULT else ""), f"{r.kendall_tau:+.3f}",
                     f"{r.spearman_rho:+.3f}", "-" if no_input else f"{args.batch or s.batch}",
                     "-" if no_input else f"{args.input_size or s.resolution or 'spec'}", f"{r.seconds:.1f}"))
    con.print(table(f"proxies vs published top-1 ({len(points)} points from {csv_path.name}, seed {args.seed})",
                    ["proxy", "Kendall tau-b", "Spearman rho", "batch", "resolution", "seconds"], rows,
                    right=("Kendall tau-b", "Spearman rho", "batch", "seconds")))
    con.print(f"{meta['date']}, {meta['machine']}, torch {torch.__version__}; "
              f"tau-b and rho against the published top-1; default proxy: {DEFAULT}")
    return 130 if interrupted else 0


def run_groundtruth_eval(args, names) -> int:
    import torch
    from ..machine import cpu_description
    from ..proxies.groundtruth import default_file, evaluate_groundtruth, noise_ceiling, read_groundtruth
    from .progress import Progress
    path = default_file() if args.groundtruth == "shipped" else Path(args.groundtruth)
    archs = read_groundtruth(path, args.truth)
    train_score = None
    if "train" in names:
        from ..train import TrainConfig, TrainScore
        size = archs[0].spec.get("input_size", [32, 32])
        train_score = TrainScore(TrainConfig(data="fashion-mnist", resolution=int(size[0]), threads=1))
    with Progress("proxies --eval --groundtruth", total=len(names) * len(archs)) as prog:
        step = {"n": 0}

        def progress(signal: str, name: str) -> None:
            if step["n"]:
                prog.advance()
            step["n"] += 1
            prog.update(status=f"{signal}: {name}")

        ceiling = noise_ceiling(archs)
        meta = {"groundtruth": str(path), "architectures": len(archs),
                "truth": f"mean {args.truth}_top1 over seeds (%)", "seed": args.seed,
                "date": _dt.date.today().isoformat(),
                "machine": f"{cpu_description()}; torch {torch.__version__}",
                "noise_ceiling": ceiling}

        def one(name):
            return evaluate_groundtruth(archs, [name], seed=args.seed, batch=args.batch, train_score=train_score,
                                        progress=progress)[0]
        results, interrupted = _one_by_one(names, one, prog, args.save, meta, lambda r: r.to_json())
        if not interrupted:
            prog.advance()
    if args.json:
        print_json({**meta, "complete": not interrupted, "results": [r.to_json() for r in results]})
        return 130 if interrupted else 0
    con = console()
    bands = sorted({a.band for a in archs})

    def ci(pair) -> str:
        return "-" if pair is None else f"[{pair[0]:+.2f}, {pair[1]:+.2f}]"
    rows = []
    for r in sorted(results, key=lambda r: -(r.kendall_tau if r.kendall_tau == r.kendall_tau else -9)):
        per = {b["band"]: b for b in r.bands}
        rows.append([r.signal, f"{r.kendall_tau:+.3f} {ci(r.kendall_tau_ci)}", f"{r.spearman:+.3f} {ci(r.spearman_ci)}"]
                    + [f"{per[b]['kendall_tau']:+.2f} / {per[b]['regret']:.2f}" if b in per else "-" for b in bands]
                    + [f"{r.seconds:.1f}"])
    con.print(table(f"signals vs trained ground truth ({len(archs)} architectures, {path.name}; truth: "
                    f"mean {args.truth} top-1)", ["signal", "Kendall tau-b [95%]", "Spearman [95%]"]
                    + [f"{b}: tau / regret" for b in bands] + ["seconds"], rows))
    if ceiling.get("n", 0) >= 3:
        con.print(f"noise ceiling (seed 0 vs seed 1, {ceiling['n']} architectures): Kendall tau "
                  f"{ceiling['kendall_tau']:+.3f} {ci(ceiling['kendall_tau_ci'])}, mean |difference| "
                  f"{ceiling['mean_abs_diff']:.2f} points")
    con.print(f"{meta['date']}, {meta['machine']}; regret = band's best true top-1 minus the pick's (points)")
    return 130 if interrupted else 0
