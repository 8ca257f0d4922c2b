"""``archc export SPEC --format coreml,onnx,... --out DIR``: write the deploy graph, each file verified."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import ExportError
from . import COMMANDS
from .common import add_input_size_arg, add_spec_args, console, load_from_args, print_json, table, weights_for


def register(sub) -> None:
    from ..export import FORMATS
    p = sub.add_parser("export", help=COMMANDS["export"])
    add_spec_args(p)
    add_input_size_arg(p)
    p.add_argument("--weights", metavar="FILE", help="timm, Apple ml-fastvit or archc checkpoint (strict)")
    p.add_argument("--format", dest="formats", default="coreml,onnx", metavar="LIST",
                   help=f"comma-separated formats: {', '.join(FORMATS)} (default: coreml,onnx)")
    p.add_argument("--out", default="export", metavar="DIR", help="output folder (default: ./export)")
    p.add_argument("--name", default=None, help="file name stem (default: the spec's name)")
    p.add_argument("--batch", type=int, default=1, help="batch size baked into the files (default 1)")
    p.add_argument("--fp32", action="store_true", help="Core ML in FP32 (default FP16)")
    p.add_argument("--mean", default=None, metavar="R,G,B",
                   help="Core ML image input: per-channel mean of pixel/255 (default ImageNet 0.485,0.456,0.406)")
    p.add_argument("--std", default=None, metavar="R,G,B",
                   help="Core ML image input: per-channel std of pixel/255 (default ImageNet 0.229,0.224,0.225)")
    p.add_argument("--no-normalize", action="store_true",
                   help="Core ML image input: feed pixel/255 to the network, no mean/std")
    p.add_argument("--train", action="store_true",
                   help="export the train-time graph (eval mode, branches unfolded) instead of the deploy graph")
    p.add_argument("--cpu-kernels", action="store_true",
                   help="apply the CPU kernel lowerings ONNX Runtime's runner uses (channel-multiplier convs as "
                        "repeat + depthwise; docs/REPARAM.md) before exporting: faster in ONNX Runtime and "
                        "torch on CPU, one more copy op elsewhere")
    p.add_argument("--class-labels", metavar="FILE", default=None,
                   help="Core ML: a classifier (outputs classLabel and probabilities) with these labels, one per "
                        "line, as many as the model's classes")
    p.add_argument("--author", default=None, help="author stored in the Core ML and ONNX metadata")
    p.add_argument("--model-version", default=None, metavar="TEXT", help="version stored in the metadata")
    p.add_argument("--license", default=None, metavar="TEXT", help="license stored in the metadata")
    p.add_argument("--onnx-opset", type=int, default=None, metavar="N",
                   help="ONNX opset (default 20: a single Gelu op; 17 for runtimes without opset 20)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                   help="int8: also write NAME.int8.onnx (ONNX Runtime static quantization, QDQ S8S8, activations "
                        "calibrated on --calibrate-data) and/or NAME.int8.mlpackage (Core ML int8 weights per output "
                        "channel, fp16 activations: W8A16, W8A32 with --fp32); fp16: Core ML in fp16 (its default) "
                        "and NAME.fp16.onnx (ONNX Runtime's float16 converter, float32 input/output). With "
                        "--calibrate-data, each precision's fidelity against the fp32 deploy graph is measured on "
                        "held-out images")
    p.add_argument("--calibrate-data", metavar="DATA", default=None,
                   help="real images for calibration and the fidelity check: fashion-mnist, an IDX folder or an "
                        "image folder (needed for int8)")
    p.add_argument("--calibration", choices=("minmax", "entropy", "percentile"), default="percentile",
                   help="int8 activation ranges (default: percentile 99.999, measured best here; docs/QUANTIZATION.md)")
    p.add_argument("--per-channel", dest="per_channel", action="store_true", default=True,
                   help="int8 weights per output channel (the default: with --keep-float 1, the smallest drop on both "
                        "trained models measured, docs/QUANTIZATION.md)")
    p.add_argument("--per-tensor", dest="per_channel", action="store_false",
                   help="int8 weights per tensor instead")
    p.add_argument("--keep-float", type=int, default=None, metavar="K",
                   help="int8: keep the K layers most sensitive to int8 in float (measured one layer at a time on "
                        "the calibration images, archc.quant.sensitivity; default 1 with --precision int8)")
    p.add_argument("--activations", choices=("s8", "u8"), default="s8",
                   help="int8 activation type: s8 (S8S8, default) or u8 (U8S8, ONNX Runtime's native x86 layout; "
                        "faster on some graphs, benchmarks/int8_speed.py)")
    p.add_argument("--calibration-images", type=int, default=256, metavar="N",
                   help="images to calibrate on (default 256, class-balanced)")
    p.add_argument("--eval-images", type=int, default=2000, metavar="N",
                   help="held-out images the fidelity is measured on (default 2000)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def _floats(text: Optional[str], default: Tuple[float, ...], what: str, chans: int) -> Tuple[float, ...]:
    if text is None:
        return default
    try:
        vals = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise ExportError(f"--{what} '{text}': expected {chans} comma-separated numbers") from None
    if len(vals) != chans:
        raise ExportError(f"--{what} '{text}': expected {chans} values (one per input channel), got {len(vals)}")
    if what == "std" and any(v <= 0 for v in vals):
        raise ExportError(f"--std '{text}': standard deviations must be positive")
    return vals


def _class_labels(path: str, num_classes: int) -> List[str]:
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"--class-labels {path}: file not found")
    labels = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(labels) != num_classes:
        raise ExportError(f"--class-labels {path}: {len(labels)} labels, but the model has {num_classes} classes "
                          f"(one non-empty line per class)")
    return labels


def run(args) -> int:
    from ..export.formats import parse_formats
    from ..outputs import check_name, file_stem, writable_dir

    formats: List[str] = parse_formats(args.formats)
    if args.batch < 1:
        raise ExportError(f"--batch must be >= 1, got {args.batch}")
    if args.name is not None:
        check_name(args.name)
    spec = load_from_args(args.spec, args)  # before torch loads: a spec's mistakes are reported in a moment
    import torch

    from ..analysis.profile import profile_graph
    from ..export import IMAGENET_MEAN, IMAGENET_STD, ImageNormalization, export_model
    from ..guards import check_memory
    from ..runtime import inference_model, input_shape
    name = args.name if args.name is not None else file_stem(spec.name)  # a spec's name is never a path
    check_memory(spec, args.batch, key="--batch" if args.batch > 1 else "input_size")
    writable_dir(args.out, "--out")
    norm: Optional[ImageNormalization] = None
    if not args.no_normalize:
        norm = ImageNormalization(mean=_floats(args.mean, IMAGENET_MEAN, "mean", spec.in_chans),
                                  std=_floats(args.std, IMAGENET_STD, "std", spec.in_chans))
    if args.cpu_kernels and args.train:
        raise ExportError("--cpu-kernels lowers the deploy graph; it cannot be combined with --train")
    if args.cpu_kernels and "coreml" in formats:
        raise ExportError("--cpu-kernels is for CPU runtimes (ONNX Runtime, torch); Core ML gets the deploy graph "
                          "as it is: export coreml without --cpu-kernels")
    if args.precision == "int8":
        if "onnx" not in formats and "coreml" not in formats:
            raise ExportError(f"--precision int8 writes ONNX (ONNX Runtime QDQ) or Core ML (int8 weights), not "
                              f"{', '.join(formats)}: add onnx to --format (or coreml)")
        if not args.calibrate_data:
            raise ExportError("--precision int8 needs --calibrate-data (real images to calibrate activations on), "
                              "e.g. --calibrate-data fashion-mnist")
        if args.train or args.cpu_kernels:
            raise ExportError("--precision int8 quantizes the deploy graph; drop --train / --cpu-kernels")
    if args.keep_float is not None and (args.keep_float < 0 or args.precision != "int8"):
        raise ExportError(f"--keep-float {args.keep_float}: a number of layers >= 0, with --precision int8")
    if args.keep_float is None:
        args.keep_float = 1 if args.precision == "int8" else 0
    if args.precision == "fp16" and args.fp32:
        raise ExportError("--precision fp16 and --fp32 contradict each other")
    model = inference_model(spec, weights_for(args.spec, args), deploy=not args.train)
    images = None
    if args.calibrate_data:
        from ..train.calibration import quant_images
        images = quant_images(args.calibrate_data, spec.input_size[0], spec.in_chans, args.calibration_images,
                              args.eval_images)
    example = torch.randn(input_shape(spec, args.batch))
    if args.cpu_kernels:
        from ..passes.kernels import lower_for_kernels
        from ..runtime import CPU_LOWERINGS
        model = lower_for_kernels(model, CPU_LOWERINGS["onnxruntime"], example=example)
    prof = profile_graph(model, example)
    residual = prof.residual_adds()
    bns = sum(1 for n in prof.nodes if n.kind == "batchnorm")
    con = console()
    graph = "train-time" if args.train else "deploy"

    from .. import __version__
    from ..export.onnx_export import OPSET
    opset = args.onnx_opset or OPSET
    if not 17 <= opset <= 23:
        raise ExportError(f"--onnx-opset {opset}: archc exports opsets 17 to 23 (attention needs >= 14, Gelu 20)")
    labels = _class_labels(args.class_labels, spec.num_classes) if args.class_labels else None
    meta = {"archc.model": spec.name, "archc.version": __version__, "archc.graph": "train" if args.train else "deploy"}
    meta.update({k: v for k, v in (("author", args.author), ("version", args.model_version),
                                   ("license", args.license)) if v})
    from .progress import Progress
    variants = _variants(args, formats)
    with Progress("export", total=len(formats) + len(variants)) as prog:
        prog.update(status=formats[0])

        def progress(r) -> None:
            err = f", max |error| {r.max_abs_error:.2e}" if r.max_abs_error is not None else ""
            prog.advance(f"wrote {r.path} ({r.verified}{err})")

        results = export_model(model, example, formats, Path(args.out), name=name,
                               fp32=args.fp32, normalization=norm, on_done=progress, metadata=meta,
                               onnx_opset=opset, class_labels=labels)
        extra = _write_variants(variants, model, example, results, Path(args.out), name, args.fp32, prog, progress)
    precision_rows = _precision_rows(args, model, results, images, name, extra) if images is not None else []
    results = results + list(extra.values())
    if args.json:
        print_json({"spec": args.spec, "name": spec.name, "graph": graph, "input_shape": list(example.shape),
                    "residual_adds": residual, "batchnorm_layers": bns, "exports": [r.to_dict() for r in results],
                    **({"fidelity": {"data": images.description, "rows": [r.to_dict() for r in precision_rows]}}
                       if images is not None else {})})
        return 0
    rows = []
    for r in results:
        err = f"{r.max_abs_error:.2e}" if r.max_abs_error is not None else "-"
        how = r.detail.get("runtime") or r.detail.get("prediction", "")
        variant = next((k.split()[0] for k, v in extra.items() if v is r), None)
        rows.append((f"{r.format} {variant}" if variant else r.format, r.path, r.verified, err, how))
    con.print(table(f"{spec.name}: {graph} graph, input {tuple(example.shape)}",
                    ["format", "file", "verified", "max |error|", "how"], rows, right=("max |error|",)))
    for r in results:
        if r is extra.get("int8 coreml"):
            d = r.detail
            cons = ", ".join(f"{k} {v}" for k, v in d["quantized_weight_consumers"].items())
            con.print(f"Core ML int8 ({d['scheme']}): {d['quantized_weight_ops']} int8 weights read back "
                      f"(feeding {cons}; the {graph} graph has {d['graph_conv_linear_weights']} conv/linear weights), "
                      f"{'per output channel' if d['per_channel'] else 'NOT per channel'}, "
                      f"{d['float_weights_left']} left float; {d['why_not_w8a8']}")
        elif r.format == "coreml":
            hist = "  ".join(f"{k} {v}" for k, v in r.detail["op_histogram"].items())
            con.print(f"Core ML ({r.detail['precision']}, ML program spec v{r.detail['spec_version']}) op histogram: {hist}")
            allowed = r.detail["allowed"]
            norms = (f" + {allowed['norm_layers']} GroupNorm/LayerNorm layers, whose affines Core ML may fuse "
                     f"into batch_norm and whose x - mean is a sub") if allowed["norm_layers"] else ""
            con.print(f"Core ML batch_norm ops {r.detail['op_histogram'].get('batch_norm', 0)}, residual adds "
                      f"{r.detail['residual_adds']} (allowed {allowed['batch_norm']} and {allowed['residual_adds']}: "
                      f"{graph} graph has {bns} BatchNorm layers and {residual} residual adds{norms})")
            con.print(f"image input 'image': {r.detail['normalization']}")
    if precision_rows:
        con.print(table(f"fidelity against the fp32 deploy graph: {images.description}",
                        ["precision", "how", "top-1 fp32", "top-1", "drop", "agreement", "SQNR dB"],
                        [(r.precision, r.how, f"{r.fidelity.top1_fp32:.2f}%", f"{r.fidelity.top1:.2f}%",
                          f"{r.fidelity.drop:+.2f}", f"{r.fidelity.agreement:.2f}%", f"{r.fidelity.sqnr_db:.1f}")
                         for r in precision_rows],
                        right=("top-1 fp32", "top-1", "drop", "agreement", "SQNR dB")))
        for r in precision_rows:
            check = r.detail.get("simulation_check")
            if check:
                con.print(f"simulation check: {check['matched_in_package']} of {check['simulated_weights']} simulated "
                          f"int8 weights found in {r.detail['path']}, largest int8 difference "
                          f"{check['max_int8_step_difference']} steps"
                          + (f"; {check['zero_scale_channels']} channels with scale 0 (weights below fp16's range: "
                             f"0 in both)" if check["zero_scale_channels"] else ""))
            if r.precision == "int8" and r.detail.get("format") == "onnx":
                con.print(f"wrote {r.detail['path']} ({r.detail['quantize_nodes']} QuantizeLinear, "
                          f"{r.detail['dequantize_nodes']} DequantizeLinear ops, read back)")
                if r.detail.get("kept_in_float"):
                    con.print("kept in float: " + "; ".join(r.detail["kept_in_float"]))
    return 0


def _variants(args, formats) -> List[str]:
    """The lower-precision files written beside the requested formats: "fp16 onnx", "int8 coreml" (int8 ONNX is
    written with its fidelity, ``_precision_rows``)."""
    out = []
    if args.precision == "fp16" and "onnx" in formats:
        out.append("fp16 onnx")
    if args.precision == "int8" and "coreml" in formats:
        out.append("int8 coreml")
    return out


def _write_variants(variants, model, example, results, out_dir: Path, name: str, fp32: bool, prog, progress):
    """Write each variant from the file of its format just written (ONNX fp32 -> fp16; Core ML -> int8 weights)."""
    from ..export import export_coreml_int8, export_onnx_fp16
    done = {}
    for v in variants:
        prog.update(status=v)
        if v == "fp16 onnx":
            src = next(r.path for r in results if r.format == "onnx")
            r = export_onnx_fp16(model, example, src, out_dir / f"{name}.fp16.onnx")
        else:
            src = next(r.path for r in results if r.format == "coreml")
            r = export_coreml_int8(model, example, src, out_dir / f"{name}.int8.mlpackage", fp32=fp32)
        done[v] = r
        progress(r)
    return done


def _precision_rows(args, model, results, images, name, extra):
    """Quantize (int8 ONNX) and measure every precision's fidelity on the held-out images."""
    from ..quant.evaluate import precision_table
    onnx_path = next((Path(r.path) for r in results if r.format == "onnx"), None)
    int8 = None
    if args.precision == "int8" and onnx_path is not None:
        from ..quant.recipe import Int8Recipe, quantize_deploy_graph
        out = Path(args.out) / f"{name}.int8.onnx"
        recipe = Int8Recipe(args.calibration, args.per_channel, args.keep_float, args.activations)
        int8 = (out, quantize_deploy_graph(model, onnx_path, out, images.calibration, recipe))
    fp16 = args.precision == "fp16" or ("coreml" in [r.format for r in results] and not args.fp32)
    return precision_table(model, onnx_path, images, int8=int8, fp16=fp16, fp16_onnx=extra.get("fp16 onnx"),
                           coreml_int8=extra.get("int8 coreml"))
