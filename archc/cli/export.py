"""``archc export SPEC --format coreml,onnx,... --out DIR``: write the deploy graph, each file verified."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import ExportError
from .common import add_input_size_arg, add_spec_args, console, load_from_args, print_json, table


def register(sub) -> None:
    from ..export import FORMATS
    p = sub.add_parser("export", help="export the deploy graph to Core ML, ONNX, TorchScript or torch.export, verified")
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
    import torch

    from ..analysis.profile import profile_graph
    from ..export import IMAGENET_MEAN, IMAGENET_STD, ImageNormalization, export_model, parse_formats
    from ..runtime import inference_model, input_shape

    formats: List[str] = parse_formats(args.formats)
    if args.batch < 1:
        raise ExportError(f"--batch must be >= 1, got {args.batch}")
    from ..guards import check_memory
    from ..outputs import check_name, file_stem, writable_dir
    if args.name is not None:
        check_name(args.name)
    spec = load_from_args(args.spec, args)
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
    model = inference_model(spec, args.weights, deploy=not args.train)
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
    with Progress("export", total=len(formats)) as prog:
        prog.update(status=formats[0])

        def progress(r) -> None:
            err = f", max |error| {r.max_abs_error:.2e}" if r.max_abs_error is not None else ""
            prog.advance(f"wrote {r.path} ({r.verified}{err})")

        results = export_model(model, example, formats, Path(args.out), name=name,
                               fp32=args.fp32, normalization=norm, on_done=progress, metadata=meta,
                               onnx_opset=opset, class_labels=labels)
    if args.json:
        print_json({"spec": args.spec, "name": spec.name, "graph": graph, "input_shape": list(example.shape),
                    "residual_adds": residual, "batchnorm_layers": bns, "exports": [r.to_dict() for r in results]})
        return 0
    rows = []
    for r in results:
        err = f"{r.max_abs_error:.2e}" if r.max_abs_error is not None else "-"
        how = r.detail.get("runtime") or r.detail.get("prediction", "")
        rows.append((r.format, r.path, r.verified, err, how))
    con.print(table(f"{spec.name}: {graph} graph, input {tuple(example.shape)}",
                    ["format", "file", "verified", "max |error|", "how"], rows, right=("max |error|",)))
    for r in results:
        if r.format == "coreml":
            hist = "  ".join(f"{k} {v}" for k, v in r.detail["op_histogram"].items())
            con.print(f"Core ML ({r.detail['precision']}, ML program spec v{r.detail['spec_version']}) op histogram: {hist}")
            allowed = r.detail["allowed"]
            norms = (f" + {allowed['norm_layers']} GroupNorm/LayerNorm layers, whose affines Core ML may fuse "
                     f"into batch_norm and whose x - mean is a sub") if allowed["norm_layers"] else ""
            con.print(f"Core ML batch_norm ops {r.detail['op_histogram'].get('batch_norm', 0)}, residual adds "
                      f"{r.detail['residual_adds']} (allowed {allowed['batch_norm']} and {allowed['residual_adds']}: "
                      f"{graph} graph has {bns} BatchNorm layers and {residual} residual adds{norms})")
            con.print(f"image input 'image': {r.detail['normalization']}")
    return 0
