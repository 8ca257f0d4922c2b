"""``archc bench SPEC... --target T``: measured (or, for a device profile, predicted) latency.

Reports the median of N runs after warm-up with IQR and CV, optionally the train-time graph beside the
deploy graph, and for ``--resolutions`` a sweep with a PNG plot (latency against resolution, one line per
spec: the paper's Fig. 3). ``--runs auto`` (the default) sizes N to each point: a 3-run probe, then as many
runs as fit ``--time-budget`` seconds, at least 10 and at most 100, so a 1024 px point takes seconds, not
minutes. Ctrl-C keeps what finished: its table and plot are written before exiting (130).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import DeviceError, SpecError
from . import COMMANDS
from .common import add_spec_args, console, load_from_args, print_json, table, weights_for


#: --runs auto: probe runs, then between these many runs, as many as fit the time budget
PROBE_RUNS, AUTO_MIN_RUNS, AUTO_MAX_RUNS = 3, 10, 100


def _runs(text: str):
    """``--runs``: a whole number, or ``auto``."""
    import argparse
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None


def auto_runs(probe_ms: float, budget_s: float) -> int:
    """How many runs of ``probe_ms`` each fit ``budget_s`` seconds, within [AUTO_MIN_RUNS, AUTO_MAX_RUNS]."""
    fit = int(budget_s * 1e3 / max(probe_ms, 1e-6))
    return max(AUTO_MIN_RUNS, min(AUTO_MAX_RUNS, fit))


def register(sub) -> None:
    from ..latency import MEASURED_TARGETS
    from ..runtime import RUNTIMES
    p = sub.add_parser("bench", help=COMMANDS["bench"])
    add_spec_args(p, many=True)
    p.add_argument("--target", default="cpu",
                   help=f"{'|'.join(MEASURED_TARGETS)} (measured) or a device profile such as iphone12pro "
                        "(predicted; see `archc devices`). Default cpu")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 8 on cuda, 1 elsewhere)")
    p.add_argument("--resolution", "--input-size", dest="resolution", type=int, default=None, metavar="N",
                   help="input N x N (default: each spec's input_size)")
    p.add_argument("--resolutions", default=None, metavar="LIST",
                   help="sweep, e.g. 224,384,512,1024 (writes a plot with --plot)")
    p.add_argument("--runs", type=_runs, default="auto", metavar="N|auto",
                   help=f"timed runs per point; auto (default): a {PROBE_RUNS}-run probe, then as many as fit "
                        f"--time-budget, from {AUTO_MIN_RUNS} to {AUTO_MAX_RUNS} (the median of >= {AUTO_MIN_RUNS} "
                        "runs with its IQR)")
    p.add_argument("--time-budget", type=float, default=10.0, metavar="S",
                   help="with --runs auto: seconds of timed runs per point (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up runs (default 10)")
    p.add_argument("--runtime", default="eager", choices=list(RUNTIMES),
                   help="how the deploy graph runs: " + "; ".join(f"{k}: {v}" for k, v in RUNTIMES.items()))
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch / ONNX Runtime (default 1: batch-1 timings with more threads "
                        "swing on shared machines; give the core count to measure multi-threaded latency)")
    p.add_argument("--weights", metavar="FILE", default=None, help="checkpoint to load (latency does not depend on it)")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="int8: time the deploy graph quantized as `archc export --precision int8` writes it (ONNX "
                        "Runtime QDQ, archc's recipe; --target onnxruntime)")
    p.add_argument("--calibrate-data", metavar="D", default=None,
                   help="int8: real images to calibrate on (fashion-mnist, an IDX folder or an image folder); "
                        "default: seeded random images, which time the same graph")
    p.add_argument("--train", action="store_true", help="also measure the train-time graph (eval mode) beside the deploy graph")
    p.add_argument("--compute-units", default="ALL", help="coreml/iphone: ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE")
    p.add_argument("--plot", metavar="FILE", default=None, help="PNG plot of latency against resolution")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def _resolutions(args) -> List[Optional[int]]:
    if not args.resolutions:
        return [args.resolution]
    try:
        res = [int(t) for t in args.resolutions.split(",") if t.strip()]
    except ValueError:
        raise DeviceError(f"--resolutions '{args.resolutions}': expected comma-separated integers, e.g. 224,384,512") from None
    if not res:
        raise DeviceError(f"--resolutions '{args.resolutions}': expected comma-separated integers, e.g. 224,384,512")
    return res


def _sized(spec, res: Optional[int], batch: int, flag: str):
    """The spec at resolution ``res``, checked like ``input_size`` (bounds, every stage has tokens) and
    against the memory guard at ``batch``, before anything is built."""
    from ..guards import check_memory
    from ..spec import load_spec
    if res is not None:
        try:
            spec = load_spec(spec, {"input_size": res})
        except SpecError as exc:
            raise SpecError(f"{flag} {res}: {exc.message}", file=exc.file, path=exc.path) from None
    check_memory(spec, batch, key="--batch" if batch > 1 else flag if res is not None else "input_size")
    return spec


def _check_threads(threads: Optional[int]) -> None:
    import os
    cores = os.cpu_count() or 1
    if threads is not None and not 1 <= threads <= cores:
        raise DeviceError(f"--threads {threads}: must be 1 to {cores} (this machine's logical cores)")


def run(args) -> int:
    from ..latency import MEASURED_TARGETS, latency

    auto = args.runs == "auto"
    if (not auto and args.runs < 1) or args.warmup < 0:
        raise DeviceError(f"--runs must be >= 1 and --warmup >= 0 (got {args.runs}, {args.warmup})")
    if not 0.1 <= args.time_budget <= 3600:
        raise DeviceError(f"--time-budget {args.time_budget:g}: must be 0.1 to 3600 seconds per point")
    if args.batch is not None and args.batch < 1:
        raise DeviceError(f"--batch must be >= 1, got {args.batch}")
    _check_threads(args.threads)
    plot = None
    if args.plot:
        from ..outputs import writable_file
        plot = Path(args.plot)
        if plot.is_dir() or args.plot.endswith(("/", "\\")):
            plot = plot / f"bench-{args.target}.png"  # a folder: the plot goes inside it, under this name
        writable_file(plot, "--plot")
    resolutions = _resolutions(args)
    specs = [(path, load_from_args(path, args)) for path in args.specs]
    batch = args.batch or (8 if args.target == "cuda" else 1)
    flag = "--resolutions" if args.resolutions else "--resolution"
    for path, spec in specs:
        for res in resolutions:
            _sized(spec, res, batch, flag)
    measured = args.target in MEASURED_TARGETS
    if args.precision != "fp32":
        if args.target != "onnxruntime" and not (args.target == "cpu" and args.runtime == "onnxruntime"):
            raise DeviceError(f"--precision {args.precision} is measured in ONNX Runtime: add --target onnxruntime")
        if args.train:
            raise DeviceError(f"--precision {args.precision} quantizes the deploy graph; drop --train")
    elif args.calibrate_data:
        raise DeviceError("--calibrate-data goes with --precision int8")
    graphs = ["deploy", "train"] if (args.train and measured) else ["deploy"]
    jobs = [(path, spec, res, g) for path, spec in specs for res in resolutions for g in graphs]
    kwargs: Dict[str, Any] = {}
    if measured:
        kwargs = dict(runs=None if auto else args.runs, warmup=args.warmup, batch=args.batch, runtime=args.runtime,
                      weights=args.weights, threads=args.threads, compute_units=args.compute_units,
                      precision=args.precision)
    results: List[Dict[str, Any]] = []
    con = console()

    models: Dict[Any, Any] = {}

    def model_for(path, spec, graph, res):
        """Each spec's graph is built (and lowered, verified) once, then timed at every resolution; a graph
        sized to its input (``sized_to_input``) is built once per resolution."""
        from ..runtime import inference_model
        from ..spec import sized_to_input
        per_size = res is not None and sized_to_input(spec)
        key = (path, graph, res if per_size else None)
        if key not in models:
            built = _sized(spec, res, batch, flag) if per_size else spec
            models[key] = inference_model(built, weights_for(path, args), deploy=graph == "deploy")
        return models[key]

    calibration: Dict[Any, Any] = {}

    def calibration_for(spec, res):
        """int8 with --calibrate-data: real calibration images at the point's size (once per size and channels)."""
        key = (res or spec.input_size[0], spec.in_chans)
        if key not in calibration:
            from ..train.calibration import quant_images
            calibration[key] = quant_images(args.calibrate_data, key[0], spec.in_chans, eval_images=1).calibration
        return calibration[key]

    def one(path, spec, res, graph, status=lambda text: None) -> None:
        kw = dict(kwargs, resolution=res)
        if args.precision == "int8" and args.calibrate_data:
            kw["calibration"] = calibration_for(spec, res)
        if measured:
            from ..latency.measure import check_target
            check_target(args.target)  # say what is missing before building anything
            kw.update(deploy=graph == "deploy", model=model_for(path, spec, graph, res), weights=None)
            if auto:  # a short probe (after the warm-up) sizes the run count; it warms the timed runs too
                status(f"probing ({PROBE_RUNS} runs)")
                probe = latency(spec, args.target, **dict(kw, runs=PROBE_RUNS))
                kw.update(runs=auto_runs(probe.ms, args.time_budget), warmup=0)
                status(f"timing {kw['runs']} runs of ~{probe.ms:.3g} ms (~{kw['runs'] * probe.ms / 1e3:.0f} s)")
        r = latency(spec, args.target, **kw)
        results.append({"spec": path, "name": spec.name, "graph": graph if measured else "deploy",
                        **r.to_dict()})

    interrupted = False
    try:
        if len(jobs) > 1:
            from .progress import Progress
            with Progress("bench", total=len(jobs), weights=_expected_costs(jobs, None if auto else args.runs)) as prog:
                for path, spec, res, graph in jobs:
                    label = f"{spec.name} {graph} @ {res or spec.input_size[0]}"
                    prog.update(status=label)
                    one(path, spec, res, graph, lambda text, label=label: prog.update(status=f"{label}: {text}"))
                    r = results[-1]
                    prog.advance(f"{label}: {r['ms']:.3f} ms")
        else:
            for job in jobs:
                one(*job)
    except KeyboardInterrupt:  # keep what finished: its table, JSON and plot, then exit 130
        if not results:
            raise
        interrupted = True
        print(f"archc: interrupted: {len(results)} of {len(jobs)} points finished; writing them", file=sys.stderr)

    plot_path = None
    if plot is not None:
        plot_path = write_plot(results, plot, args.target)
    if args.json:
        print_json({"target": args.target, "results": results, "plot": str(plot_path) if plot_path else None,
                    "complete": not interrupted})
        return 130 if interrupted else 0
    print_results(results, args.target)
    if plot_path:
        con.print(f"plot written to {plot_path}")
    return 130 if interrupted else 0


def _expected_costs(jobs, runs: Optional[int]) -> Optional[List[float]]:
    """Each point's expected cost for the ETA: runs x MACs at its resolution. With ``--runs auto`` the time budget
    evens the points out (the run count shrinks as the point grows), so they weigh the same (None)."""
    if runs is None:
        return None
    from ..guards import expected_macs
    return [runs * expected_macs(spec, (res, res) if res else None) for _, spec, res, _ in jobs]


def print_results(results: List[Dict[str, Any]], target: str) -> None:
    con = console()
    if results and all(r["kind"] == "predicted" for r in results):
        print_predictions(results, target)
        return
    deploy_ms = {(r["spec"], tuple(r["resolution"])): r["ms"] for r in results if r["graph"] == "deploy"}
    rows = []
    for r in results:
        res = "x".join(str(v) for v in r["resolution"])
        speed = ""
        if r["graph"] == "train":
            d = deploy_ms.get((r["spec"], tuple(r["resolution"])))
            speed = f"{r['ms'] / d:.2f}x" if d else ""
        rows.append((r["name"], r["graph"], res, r["batch"], f"{r['ms']:.3f}", f"{r['iqr_ms']:.3f}",
                     f"{100 * r['cv']:.1f}%", r["runs"], speed))
    first = results[0] if results else {}
    det = first.get("detail", {})
    title = f"latency on {target}"
    if det.get("device"):
        title += f" ({det['device']}, runtime {det.get('runtime')}, threads {det.get('threads', '-')})"
    if det.get("precision", "fp32") != "fp32":
        title += f", {det['precision']} (archc's recipe, as `archc export --precision {det['precision']}` writes it)"
    columns = ["spec", "graph", "input", "batch", "median ms", "IQR ms", "CV", "runs", "train/deploy"]
    if not any(r["graph"] == "train" for r in results):  # no train graph timed: no ratio to show
        columns, rows = columns[:-1], [row[:-1] for row in rows]
    con.print(table(title, columns, rows, right=("batch", "median ms", "IQR ms", "CV", "runs", "train/deploy")))
    noisy = [r for r in results if r.get("cv") is not None and r["cv"] > 0.05]
    if noisy:
        con.print(f"note: {len(noisy)} figure(s) have CV > 5%: the machine was busy or the run count is low")


def print_predictions(results: List[Dict[str, Any]], target: str) -> None:
    """Predicted latencies with their stated error and, where the error was widened, why."""
    con = console()
    rows, notes = [], {}
    for r in results:
        res = "x".join(str(v) for v in r["resolution"])
        caveat = ""
        if r.get("caveats"):
            text = "; ".join(r["caveats"])
            caveat = notes.setdefault(text, f"[{len(notes) + 1}]")
        exp, bound = r.get("expected_error_pct"), r.get("error_bound_pct")
        rows.append((r["name"], res, r["batch"], f"{r['ms']:.3f}", f"±{exp:.1f}%" if exp else "",
                     f"±{bound:.1f}%" if bound else "", "outside" if r.get("caveats") else "inside", caveat))
    det = results[0].get("detail", {})
    con.print(table(f"latency on {target} ({det.get('device', 'device profile')}): predicted, not measured",
                    ["spec", "input", "batch", "predicted ms", "expected error", "worst held-out", "calibration data",
                     "caveat"], rows, right=("batch", "predicted ms", "expected error", "worst held-out")))
    con.print("expected error: the profile's held-out MAPE (k-fold over architectures inside its data, "
              "leave-one-family-out outside it); worst held-out: the largest such miss (the plot's band)")
    for text, mark in notes.items():
        con.print(f"{mark} outside the calibration data: {text}", highlight=False)


def _ratio_panel(ax, pair: List[List[Dict[str, Any]]], color) -> None:
    """The second spec's latency over the first's at each size, with its band: for predictions, both at their
    expected error (dark) and at their worst held-out miss (light), in opposite directions; for measurements,
    from the runs' interquartile ranges."""
    a, b = pair
    xs = [r["resolution"][0] for r in a]
    ratio = [rb["ms"] / ra["ms"] for ra, rb in zip(a, b)]

    def band(key_a, key_b, pct: bool):
        lo, hi = [], []
        for ra, rb in zip(a, b):
            if pct:
                ea, eb = (ra.get(key_a) or 0) / 100, (rb.get(key_b) or 0) / 100
                lo.append(rb["ms"] * (1 - eb) / (ra["ms"] * (1 + ea)))
                hi.append(rb["ms"] * (1 + eb) / (ra["ms"] * max(1 - ea, 1e-9)))
            else:
                ha, hb = (ra.get("iqr_ms") or 0) / 2, (rb.get("iqr_ms") or 0) / 2
                lo.append((rb["ms"] - hb) / (ra["ms"] + ha))
                hi.append((rb["ms"] + hb) / max(ra["ms"] - ha, 1e-9))
        return lo, hi

    if a[0]["kind"] == "predicted":
        lo, hi = band("error_bound_pct", "error_bound_pct", True)
        ax.fill_between(xs, lo, hi, color=color, alpha=0.12, linewidth=0, label="worst held-out misses")
        lo, hi = band("expected_error_pct", "expected_error_pct", True)
        ax.fill_between(xs, lo, hi, color=color, alpha=0.3, linewidth=0, label="expected errors")
        # scaled to the expected band: the worst-case band may run off it (then it allows any ratio shown)
        ax.set_ylim(min(lo + [1.0]) * 0.9, max(hi + [1.0]) * 1.1)
    else:
        lo, hi = band(None, None, False)
        ax.fill_between(xs, lo, hi, color=color, alpha=0.25, linewidth=0, label="from the runs' IQRs")
    ax.plot(xs, ratio, "o-", color=color, label=f"{b[0]['name']} / {a[0]['name']}")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("latency ratio")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def write_plot(results: List[Dict[str, Any]], path: Path, target: str) -> Path:
    """Latency (median, IQR as error bars) against input resolution, one line per spec and graph."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import ScalarFormatter

    series: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in results:
        series.setdefault((r["name"], r["graph"]), []).append(r)
    names = list(dict.fromkeys(r["name"] for r in results))
    colors = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    pair = len(names) == 2 and all(g == "deploy" for _, g in series) and \
        len({tuple(sorted(r["resolution"][0] for r in rs)) for rs in series.values()}) == 1
    if pair:  # two specs over the same sizes: the question is their ratio, drawn with its own band below
        fig, (ax, axr) = plt.subplots(2, 1, figsize=(7, 6.5), dpi=120, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    else:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for (name, graph), rs in series.items():
        rs = sorted(rs, key=lambda r: r["resolution"][0])
        xs = [r["resolution"][0] for r in rs]
        ys = [r["ms"] for r in rs]
        if rs[0]["kind"] == "predicted":  # the worst held-out miss that applies, as a band
            lo = [r["ms"] * (1 - (r.get("error_bound_pct") or 0) / 100) for r in rs]
            hi = [r["ms"] * (1 + (r.get("error_bound_pct") or 0) / 100) for r in rs]
            ax.fill_between(xs, lo, hi, color=colors[name], alpha=0.15, linewidth=0)
            ax.plot(xs, ys, "-", color=colors[name], label=f"{name} (predicted)")
            out = [r for r in rs if r.get("caveats")]
            ax.plot(xs, ys, "o", color=colors[name], markerfacecolor=colors[name])
            if out:  # hollow markers: outside the calibration data (op kinds or feature ranges it never had)
                ax.plot([r["resolution"][0] for r in out], [r["ms"] for r in out], "o", color=colors[name],
                        markerfacecolor="white")
            continue
        errs = [(r.get("iqr_ms") or 0.0) / 2 for r in rs]
        label = name if graph == "deploy" else f"{name} (train-time graph)"
        ax.errorbar(xs, ys, yerr=errs, fmt=("--" if graph == "train" else "-") + "o", capsize=3, label=label,
                    color=colors[name], markerfacecolor="white" if graph == "train" else colors[name])
    ticks = sorted({r["resolution"][0] for r in results})
    ax.set_xticks(ticks)
    if pair:
        _ratio_panel(axr, [sorted(series[(n, "deploy")], key=lambda r: r["resolution"][0]) for n in names],
                     colors[names[1]])
        axr.set_xticks(ticks)
        axr.set_xlabel("input resolution (pixels, square)")
    else:
        ax.set_xlabel("input resolution (pixels, square)")
    first = results[0] if results else {}
    kind = "predicted" if first.get("kind") == "predicted" else "measured"
    ax.set_ylabel("latency, predicted (ms)" if kind == "predicted" else "latency, median (ms)")
    title = f"{kind} latency on {target}, batch {first.get('batch', '?')}"
    footnote = ""
    if kind == "measured":  # how it was timed, and what the bars are
        det = first.get("detail") or {}
        runs = sorted({r["runs"] for r in results if r.get("runs")})
        span = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
        title += (f"\n{det.get('device', 'this machine')}; runtime {det.get('runtime', '?')}, "
                  f"{det.get('threads', '?')} thread(s), {span} runs per point\n"
                  "bars: median \u00b1 half the interquartile range of the runs")
    if kind == "predicted":
        title += "\nband: worst held-out miss; hollow: outside the calibration data"
        kinds = sorted({k for r in results for k in (r.get("detail") or {}).get("unseen_op_kinds", [])})
        ext = sorted({k for r in results for k in (r.get("detail") or {}).get("extrapolation", {})})
        why = ([f"op kinds never calibrated: {', '.join(kinds)}"] if kinds else []) + \
            ([f"extrapolates {', '.join(ext)}"] if ext else [])
        if why:
            import textwrap
            footnote = textwrap.fill("outside the calibration data: " + "; ".join(why), 110)
    ax.set_title(title, fontsize=9)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if footnote:
        fig.text(0.01, 0.01, footnote, fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.05 if footnote else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
