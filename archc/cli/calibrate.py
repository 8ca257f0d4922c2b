"""``archc calibrate``: fit a latency profile to your measurements, or measure ground truth here first.

    archc calibrate MEASUREMENTS.csv --device NAME
    archc calibrate --measure --target onnxruntime --space search/fastvit.yaml --space search/metaformer.yaml \
        --n 40 --resolutions 160,224,288 --device ort-1t --plot runs/calibrate/ort.png
"""
from __future__ import annotations

import dataclasses

import os
import re
from pathlib import Path

from ..errors import ArchcError
from . import COMMANDS
from .common import console, print_json, table

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: --measure defaults: 40 architectures x 3 resolutions, 10 timed runs after 3 warm-up (see docs/LATENCY_MODEL.md)
MEASURE_DEFAULTS = dict(n=40, resolutions="160,256,384", runs=10, warmup=3)


def register(sub) -> None:
    p = sub.add_parser("calibrate", help=COMMANDS["calibrate"],
                       description="Fit a latency profile (non-negative prices of compute, memory traffic and per-op "
                       "overhead; the model is chosen by held-out error) to a CSV with a header "
                       "'spec,latency_ms[,resolution][,label][,family][,uncertainty_ms]' ('#' comments allowed; relative "
                       "spec paths resolve against the CSV's folder, then the current directory), or with --measure to "
                       "architectures sampled from search spaces and measured here. Reports k-fold (over architectures) "
                       "and leave-one-family-out error and stores the profile in $ARCHC_PROFILES or "
                       "~/.config/archc/profiles.")
    p.add_argument("measurements", metavar="MEASUREMENTS.csv", nargs="?")
    p.add_argument("--device", required=True, metavar="NAME", help="profile name, used as --target NAME")
    p.add_argument("--shadow-builtin", action="store_true",
                   help="allow a user profile named like a built-in one (it then replaces it as --target NAME)")
    p.add_argument("--description", default="", help="free text stored in the profile (device, runtime, batch)")
    p.add_argument("--features", default=None, metavar="F1,F2,...",
                   help="fix the model's terms instead of choosing among the candidates (see `archc devices --features`)")
    p.add_argument("--combine", default="sum", choices=("sum", "max"),
                   help="with --features: add compute and traffic per op (sum) or take the larger (max, roofline)")
    p.add_argument("--channel-block", type=int, default=16, metavar="N",
                   help="vector block (channels) of the runtime's blocked kernels: ops whose channel count is not a "
                        "multiple count as misaligned (16: AVX-512 / ONNX Runtime NCHWc; 8 on AVX2)")
    p.add_argument("--cache-mb", type=float, default=2.0, metavar="MB",  # costmodel.DEFAULT_CACHE_MB
                   help="with --features ...,mbytes_spill: an op moving more MB than this streams from DRAM")
    p.add_argument("--folds", type=int, default=5, help="k of the k-fold check over architectures (0: one per architecture)")
    p.add_argument("--out", metavar="FILE", help="write the profile here instead of the user profile folder")
    p.add_argument("--plot", metavar="FILE", help="PNG: held-out predicted vs measured latency")
    p.add_argument("--json", action="store_true", help="print the fitted profile as JSON")
    m = p.add_argument_group("measure ground truth here (--measure)")
    m.add_argument("--measure", action="store_true", help="sample architectures from --space files and measure them")
    m.add_argument("--target", default="onnxruntime", choices=("onnxruntime", "cpu", "coreml", "iphone"),
                   help="measured target (coreml: this Mac; iphone: a connected iPhone, through coremltools; "
                        "both batch 1, as the iPhone figures are)")
    m.add_argument("--space", action="append", default=[], metavar="SPACE.yaml",
                   help="search space to sample (repeatable; each is a family). Default: search/fastvit.yaml and "
                        "search/metaformer.yaml")
    m.add_argument("--spec", action="append", default=[], metavar="SPEC.yaml",
                   help="also measure this spec file (repeatable; together one family, named by --spec-family)")
    m.add_argument("--spec-family", default="specs", metavar="NAME", help="family of the --spec files (default %(default)s)")
    m.add_argument("--n", type=int, default=MEASURE_DEFAULTS["n"], help="architectures in all (default %(default)s)")
    m.add_argument("--resolutions", default=MEASURE_DEFAULTS["resolutions"], help="default %(default)s")
    m.add_argument("--runs", type=int, default=MEASURE_DEFAULTS["runs"], help="timed runs per point (default %(default)s)")
    m.add_argument("--warmup", type=int, default=MEASURE_DEFAULTS["warmup"], help="default %(default)s")
    m.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    m.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    m.add_argument("--cache", metavar="FILE.jsonl", default=None,
                   help="measurement cache, resumable (default runs/calibrate/DEVICE.jsonl)")
    m.add_argument("--cached-only", action="store_true",
                   help="measure nothing: fit the points --cache already holds (e.g. measured on another machine "
                        "with benchmarks/calibrate_shards.py); points it lacks are left out")
    m.add_argument("--check-pair", action="append", default=[], metavar="A.yaml,B.yaml",
                   help="also measure (side by side) and predict B's reduction against A (not fitted), e.g. "
                        "specs/poolformer_s12.yaml,specs/poolformer_s12_repmixer.yaml")
    m.add_argument("--check-resolutions", default="224,384,512,1024", help="resolutions of --check-pair (default %(default)s)")
    m.add_argument("--check-runs", type=int, default=20,
                   help="timed runs of each model of a --check-pair, interleaved with the other's (default %(default)s)")
    p.set_defaults(func=run)


def _ints(text: str, flag: str):
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ArchcError(f"{flag} {text!r}: expected comma-separated integers, e.g. 160,224,288") from None
    if not vals or any(v < 32 or v > 4096 for v in vals):
        raise ArchcError(f"{flag} {text!r}: every resolution must be in 32..4096")
    return vals


def _model(args):
    from ..latency.costmodel import TERMS, CostModel
    from ..errors import did_you_mean
    if not args.features:
        return None
    terms = tuple(f.strip() for f in args.features.split(",") if f.strip())
    for f in terms:
        if f not in TERMS:
            raise ArchcError(f"--features: unknown feature '{f}'{did_you_mean(f, list(TERMS))}; valid: {', '.join(TERMS)}")
    if len(terms) > 20:
        raise ArchcError(f"--features: {len(terms)} features; use at most 20 (a profile has few points)")
    return CostModel(args.combine, terms, args.channel_block, args.cache_mb)


#: calibrate --measure --n: architectures to sample and time (a profile is fitted from tens to hundreds)
MAX_MEASURE_N = 10_000


def run(args) -> int:
    from ..latency.costmodel import CANDIDATES
    from ..latency.fit import make_profile, read_measurements, save_profile
    from ..latency.predict import BUILTIN_DIR, user_profile_dir
    if not NAME_RE.match(args.device):
        raise ArchcError(f"--device: {args.device!r} is not a valid profile name (letters, digits, '_', '-', '.')")
    from ..latency import MEASURED_TARGETS
    if args.device in MEASURED_TARGETS:  # --target NAME must mean one thing: the measured target keeps its name
        raise ArchcError(f"--device: {args.device!r} names a measured target ({', '.join(MEASURED_TARGETS)}); "
                         f"choose another profile name, such as {args.device}-mine")
    if args.folds < 0:
        raise ArchcError(f"--folds must be >= 0 (got {args.folds})")
    if args.channel_block < 1 or not args.cache_mb > 0:
        raise ArchcError(f"--channel-block must be >= 1 and --cache-mb > 0 (got {args.channel_block}, {args.cache_mb})")
    model = _model(args)
    from ..outputs import writable_file
    out = Path(args.out) if args.out else user_profile_dir() / f"{args.device}.yaml"
    # a user profile is found by its file name: one named like a built-in replaces it as --target NAME
    shadows = (out.suffix == ".yaml" and (BUILTIN_DIR / out.name).is_file()
               and os.path.realpath(out.parent) == os.path.realpath(user_profile_dir()))
    if shadows and not args.shadow_builtin:
        how = f"--out {str(out)!r}" if args.out else f"--device {args.device}"
        raise ArchcError(f"{how}: a built-in profile has that name ('{out.stem}'), and a user profile would replace "
                         f"it as --target {out.stem}; choose another name (e.g. {out.stem}-mine), or pass "
                         "--shadow-builtin to mean it")
    # checked now, not after the fit: a FIFO there would block the write at the end, a device would be replaced
    writable_file(out, "--out" if args.out else f"--device {args.device}: profile")
    if args.plot:
        writable_file(args.plot, "--plot")
    con = console()
    checks = []
    if args.measure:
        if args.measurements:
            raise ArchcError("give either MEASUREMENTS.csv or --measure, not both")
        from ..latency.calibrate import measure_all, points_of, sample_spaces
        if args.runs < 1 or args.check_runs < 1 or args.warmup < 0 or args.threads < 1:
            raise ArchcError("--runs, --check-runs and --threads must be >= 1 and --warmup >= 0 "
                             f"(got {args.runs}, {args.check_runs}, {args.threads}, {args.warmup})")
        cores = os.cpu_count() or 1
        for flag, value, top in (("--n", args.n, MAX_MEASURE_N), ("--threads", args.threads, cores),
                                 ("--runs", args.runs, 100_000), ("--check-runs", args.check_runs, 100_000),
                                 ("--warmup", args.warmup, 100_000)):
            if value > top:
                raise ArchcError(f"{flag} {value}: at most {top:,}" + (f" (this machine's {cores} cores)"
                                                                       if flag == "--threads" else ""))
        resolutions = _ints(args.resolutions, "--resolutions")
        if not args.cached_only:
            from ..latency.measure import check_target
            check_target(args.target)  # what this machine lacks for the target, before sampling anything
        spaces = args.space or ([] if args.spec else ["search/fastvit.yaml", "search/metaformer.yaml"])
        cache = Path(args.cache or f"runs/calibrate/{args.device}.jsonl")
        if cache.exists() and not cache.is_file():  # a FIFO or a device would block the first append
            raise ArchcError(f"--cache {str(cache)!r}: not a regular file")
        samples = sample_spaces(spaces, args.n, args.seed) if spaces else []
        if args.spec:
            from ..latency.calibrate import Sampled, arch_hash
            from ..spec import load_spec
            known = {s.arch for s in samples}
            for f in args.spec:
                spec = load_spec(f)
                if arch_hash(spec) not in known:
                    known.add(arch_hash(spec))
                    samples.append(Sampled(spec, args.spec_family, arch_hash(spec)))
        from .progress import Progress  # stderr: a bar with count and ETA on a terminal, a line per point piped
        with Progress("calibrate --measure", total=len(samples) * len(resolutions)) as prog:
            def progress(what, i, total):  # called before point i (1-based; cached points are skipped)
                prog.update(i - 1, f"measuring {what}")
            records = measure_all(samples, resolutions, target=args.target, cache=cache, runs=args.runs,
                                  warmup=args.warmup, threads=args.threads, progress=progress,
                                  cached_only=args.cached_only)
        if args.cached_only and not records:
            raise ArchcError(f"--cached-only: {cache} holds none of the sampled points (same --space, --n, --seed, "
                             "--resolutions, --target and --threads as the measuring run?)")
            prog.update(len(samples) * len(resolutions), "done")
        points = points_of(records)
        source = f"{cache} ({args.target}, {args.threads} thread(s), median of {args.runs} runs after {args.warmup} warm-up)"
        gen = (f"archc calibrate --measure --target {args.target} " + " ".join(f"--space {s}" for s in spaces)
               + "".join(f" --spec {f}" for f in args.spec) + (f" --spec-family {args.spec_family}" if args.spec else "")
               + f" --n {args.n} --resolutions {args.resolutions} --runs {args.runs} --warmup {args.warmup}"
               + f" --threads {args.threads} --seed {args.seed} --device {args.device}")
        device = args.description or f"{records[0].get('device') if records else ''}: {args.target}, {args.threads} thread(s)"
    else:
        if not args.measurements:
            raise ArchcError("give MEASUREMENTS.csv, or --measure to measure ground truth on this machine")
        points = read_measurements(args.measurements)
        source, gen = str(Path(args.measurements).resolve()), f"archc calibrate {args.measurements} --device {args.device}"
        device = args.description or args.device
    kw = {"model": model} if model else {
        "candidates": [dataclasses.replace(c, channel_block=args.channel_block) for c in CANDIDATES]}
    from .progress import Progress  # each point's graph is built and traced: minutes for hundreds of rows
    with Progress("calibrate: features and fit", total=len(points) + 1) as prog:
        profile = make_profile(points, name=args.device, device=device, folds=args.folds, generated_by=gen,
                               data_source=source, progress=lambda done, what: prog.update(done, what), **kw)
        prog.update(len(points) + 1, "done")
    save_profile(profile, out, header=f"Generated by `{gen}`.")
    if args.measure and args.check_pair:
        from ..latency.calibrate import ratio_check
        pairs = []
        for text in args.check_pair:
            parts = [t.strip() for t in text.split(",")]
            if len(parts) != 2 or not all(parts):
                raise ArchcError(f"--check-pair {text!r}: expected A.yaml,B.yaml")
            pairs.append((parts[0], parts[1]))
        checks = ratio_check(str(out), pairs, _ints(args.check_resolutions, "--check-resolutions"), target=args.target,
                             cache=cache, runs=args.check_runs, warmup=args.warmup, threads=args.threads,
                             cached_only=args.cached_only)
        profile["ratio_check"] = checks
        save_profile(profile, out, header=f"Generated by `{gen}`.")
    plot = None
    if args.plot:
        from ..latency.calibrate import plot_heldout
        plot = plot_heldout(profile, Path(args.plot))
    if args.json:
        print_json({"profile": str(out), "plot": str(plot) if plot else None, **profile})
        return 0
    print_report(profile, con)
    if shadows:
        con.print(f"note: this user profile shadows the built-in profile '{out.stem}'")
    if plot:
        con.print(f"plot written to {plot}")
    con.print(f"wrote {out}; use it with --target {args.device}" if not args.out else f"wrote {out}")
    return 0


def print_report(profile, con) -> None:
    has_lofo = any("lofo_ms" in p for p in profile["points"])
    rows = [(p["label"], p["family"], p["resolution"] or "spec", f"{p['latency_ms']:.3f}", f"{p['fitted_ms']:.3f}",
             f"{p['heldout_ms']:.3f}", f"{p['heldout_error_pct']:+.1f}%")
            + ((f"{p['lofo_ms']:.3f}", f"{p['lofo_error_pct']:+.1f}%") if has_lofo else ()) for p in profile["points"]]
    cols = ["point", "family", "resolution", "measured ms", "fitted ms", "held-out ms", "error"]
    cols += ["family-out ms", "error "] if has_lofo else []
    con.print(table(f"calibration of '{profile['name']}' ({profile['graph']} graph)", cols, rows,
                    right=tuple(cols[3:])))
    h = profile["heldout"]
    k = h["kfold"]
    con.print(f"model ({profile['combine']}): " + ", ".join(f"{n} {v:.4g}" for n, v in profile["coefficients"].items()))
    con.print(f"k-fold over architectures ({k['folds']} folds): MAPE {k['mape_pct']:.2f}% (max {k['max_ape_pct']:.1f}%), "
              f"Kendall tau {k['kendall_tau']:.3f}, {k['inversions']} inversions; in-sample MAPE {h['fit_mape_pct']:.2f}%")
    if "lofo" in h:
        l = h["lofo"]
        con.print(f"leave-one-family-out: MAPE {l['mape_pct']:.2f}% (max {l['max_ape_pct']:.1f}%); "
                  + ", ".join(f"{f} {v['mape_pct']:.1f}%" for f, v in l["families"].items()))
    con.print("candidates: " + "; ".join(f"{'*' if c['chosen'] else ''}{c['model']} k-fold {c['kfold_mape_pct']:.1f}%"
                                         + (f", family-out {c['lofo_mape_pct']:.1f}%" if "lofo_mape_pct" in c else "")
                                         for c in profile["candidates"]))
    for c in profile.get("ratio_check", []):
        lo, hi = c["measured_reduction_ci95_pct"]
        con.print(f"check {c['b']} vs {c['a']} @ {c['resolution']}: measured reduction {c['measured_reduction_pct']:.1f}% "
                  f"(95% CI {lo:.1f}..{hi:.1f}, side by side), predicted {c['predicted_reduction_pct']:.1f}% "
                  f"({c['points_off']:+.1f} points)")
    for note in profile["duplicates"]:
        con.print(f"note: {note}")
