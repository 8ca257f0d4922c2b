"""``export_model``: write the requested formats and verify each against the torch model (see the package
docstring)."""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from ..errors import ExportError
from .coreml_export import (IMAGENET_MEAN, IMAGENET_STD, CoreMLExpectation, CoreMLReport, ImageNormalization,
                            check_coreml,
                            convert_coreml, inspect_coreml, predict_coreml, torch_reference_from_image)
from .formats import FORMATS, SUFFIX, parse_formats
from .onnx_export import OPSET, export_onnx, run_onnx
from .program_export import export_program, run_program
from .torchscript_export import export_torchscript, run_torchscript

#: max |torch - file| allowed, relative to max(1, max |torch output|); Core ML only on macOS
ATOL = 1e-4
COREML_TOL = {"fp32": 1e-3, "fp16": 5e-2}
#: the fp16 ONNX file against the fp32 torch graph: Core ML's fp16 bound (the export's sanity check; the fidelity
#: row on real images is the measurement)
FP16_ONNX_TOL = COREML_TOL["fp16"]

__all__ = ["FORMATS", "ExportResult", "ImageNormalization", "IMAGENET_MEAN", "IMAGENET_STD", "CoreMLReport",
           "CoreMLExpectation",
           "export_model", "export_onnx_fp16", "export_coreml_int8", "parse_formats", "inspect_coreml", "check_coreml"]


@dataclass
class ExportResult:
    """One written file and how it was verified."""

    format: str
    path: Path
    verified: str                          # "compared" (numerically), "validated" (structure only)
    max_abs_error: Optional[float] = None
    max_abs_output: Optional[float] = None
    detail: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "verified": self.verified,
                "max_abs_error": self.max_abs_error, "max_abs_output": self.max_abs_output, **self.detail}


def _compare(fmt: str, ref: torch.Tensor, got: torch.Tensor, atol: float) -> Dict[str, float]:
    if tuple(got.shape) != tuple(ref.shape):
        raise ExportError(f"{fmt}: output shape {tuple(got.shape)} differs from torch's {tuple(ref.shape)}")
    err = float((got.float() - ref.float()).abs().max())
    scale = float(ref.abs().max())
    if not np.isfinite(err) or err > atol * max(1.0, scale):
        raise ExportError(f"{fmt}: output differs from torch by {err:.3g} (max |output| {scale:.3g}; "
                          f"allowed {atol:g} x max(1, max |output|))")
    return {"max_abs_error": err, "max_abs_output": scale}


def export_model(model: nn.Module, example: torch.Tensor, formats: Sequence[str], out_dir: Union[str, Path], *,
                 name: str = "model", fp32: bool = False,
                 normalization: Optional[ImageNormalization] = ImageNormalization(),
                 coreml_expect: Optional[CoreMLExpectation] = None, atol: float = ATOL,
                 on_done: Optional[Callable[[ExportResult], None]] = None, metadata: Optional[Dict[str, str]] = None,
                 onnx_opset: int = OPSET, class_labels: Optional[Sequence[str]] = None) -> List[ExportResult]:
    """Write ``model`` in each of ``formats`` to ``out_dir/name.<suffix>`` and verify each file.

    ``example`` fixes the input shape (batch, channels, H, W); the check input is a different random
    tensor of that shape. ``coreml_expect`` bounds the Core ML package's batch_norm ops and residual adds
    (default: derived from ``model`` itself, so a deploy graph's package must have none of either that
    the deploy graph lacks). ``metadata`` (e.g. author, version, model name) goes into the ONNX and Core ML
    files beside the input's preprocessing, which the ONNX file states in ``archc.preprocessing``;
    ``class_labels`` makes the Core ML package a classifier.
    """
    formats = parse_formats(formats)
    from ..outputs import check_name
    check_name(name, "export name")  # never a path: files stay inside out_dir
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    check_x = _check_input(example)
    with torch.no_grad():
        ref = model(check_x)
    results: List[ExportResult] = []
    for fmt in formats:
        path = out / f"{name}{SUFFIX[fmt]}"
        if fmt == "onnx":
            export_onnx(model, example, path, opset=onnx_opset, metadata=onnx_metadata(normalization, metadata))
            r = ExportResult(fmt, path, "compared", **_compare(fmt, ref, run_onnx(path, check_x), atol),
                             detail={"runtime": "onnxruntime CPUExecutionProvider", "opset": onnx_opset})
        elif fmt == "torchscript":
            export_torchscript(model, example, path)
            r = ExportResult(fmt, path, "compared", **_compare(fmt, ref, run_torchscript(path, check_x), atol),
                             detail={"runtime": "torch.jit.load"})
        elif fmt == "exported-program":
            export_program(model, example, path)
            r = ExportResult(fmt, path, "compared", **_compare(fmt, ref, run_program(path, check_x), atol),
                             detail={"runtime": "torch.export.load"})
        else:
            r = _export_coreml(model, example, path, fp32, normalization, coreml_expect, metadata, class_labels)
        results.append(r)
        if on_done is not None:
            on_done(r)
    return results


def _check_input(example: torch.Tensor) -> torch.Tensor:
    """The input every file is compared on: random, seeded, of the example's shape (not the example itself)."""
    return torch.randn(example.shape, generator=torch.Generator().manual_seed(1234))


def export_onnx_fp16(model: nn.Module, example: torch.Tensor, fp32_onnx: Union[str, Path],
                     path: Union[str, Path]) -> ExportResult:
    """``path``: the fp32 ONNX file ``fp32_onnx`` converted to fp16 by ONNX Runtime's converter (float32 input
    and output; ``archc.quant.fp16``), read back, and run in ONNX Runtime on CPU against ``model`` in fp32."""
    from ..quant.fp16 import convert_onnx_fp16, describe_placement
    conv = convert_onnx_fp16(fp32_onnx, path)
    x = _check_input(example)
    with torch.no_grad():
        ref = model.eval()(x)
    try:
        got = run_onnx(conv.path, x)
    except Exception as exc:  # noqa: BLE001  (ONNX Runtime may lack a kernel: say which file and why)
        raise ExportError(f"{conv.path}: ONNX Runtime (CPU) cannot run the fp16 file: {type(exc).__name__}: "
                          f"{exc}") from exc
    cmp = _compare("onnx (fp16)", ref, got, FP16_ONNX_TOL)
    detail = {"precision": "fp16", "runtime": f"onnxruntime CPUExecutionProvider: {describe_placement(conv.placement)}",
              **{k: v for k, v in conv.to_dict().items() if k != "path"}}
    return ExportResult("onnx", conv.path, "compared", **cmp, detail=detail)


def export_coreml_int8(model: nn.Module, example: torch.Tensor, package: Union[str, Path], path: Union[str, Path],
                       fp32: bool = False, expect: Optional[CoreMLExpectation] = None) -> ExportResult:
    """``path``: the Core ML package ``package`` (as ``convert_coreml`` wrote it from ``model``) with int8
    conv/linear weights (``archc.export.coreml_quant``), validated like any package (spec, program, no batch_norm,
    residual adds) and its quantized-weight ops counted against the deploy graph's conv/linear weights."""
    from .coreml_quant import TORCH_WEIGHT_MODULES, quantize_coreml_weights
    q = quantize_coreml_weights(package, path, "fp32" if fp32 else "fp16")
    expect = expect or CoreMLExpectation.from_graph(model, example)
    report = inspect_coreml(q.path)
    check_coreml(report, expect)
    graph_weights = sum(1 for m in model.modules() if isinstance(m, TORCH_WEIGHT_MODULES))
    detail: Dict[str, Any] = {"precision": f"int8 weights, {q.activations} activations ({q.to_dict()['scheme']})",
                              "spec_version": report.spec_version, "op_histogram": report.op_histogram,
                              "residual_adds": report.residual_adds,
                              "allowed": {"batch_norm": expect.batch_norms, "residual_adds": expect.residual_adds,
                                          "norm_layers": expect.norms},
                              "graph_conv_linear_weights": graph_weights,
                              **{k: v for k, v in q.to_dict().items() if k != "path"},
                              "prediction": ("not run: Core ML predicts only on macOS" if platform.system() != "Darwin"
                                             else "not run: the int8 package is checked structurally; its fidelity "
                                                  "row is simulated in torch")}
    return ExportResult("coreml", q.path, "validated", detail=detail)


def onnx_metadata(normalization: Optional[ImageNormalization], metadata: Optional[Dict[str, str]]) -> Dict[str, str]:
    """The ONNX file takes the normalised tensor (no image type as in Core ML): say how to make it."""
    pre = ("input 'image': float32 NCHW RGB, " + normalization.describe() if normalization else
           "input 'image': float32 NCHW, pixel/255, no mean/std")
    meta = {"archc.preprocessing": pre, "archc.output": "logits: class logits (no softmax)"}
    if normalization:
        meta.update({"archc.mean": ",".join(f"{v:g}" for v in normalization.mean),
                     "archc.std": ",".join(f"{v:g}" for v in normalization.std)})
    meta.update(metadata or {})
    return meta


def _export_coreml(model: nn.Module, example: torch.Tensor, path: Path, fp32: bool,
                   normalization: Optional[ImageNormalization],
                   expect: Optional[CoreMLExpectation], metadata: Optional[Dict[str, str]] = None,
                   class_labels: Optional[Sequence[str]] = None) -> ExportResult:
    import shutil
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    convert_coreml(model, example, path, fp32=fp32, normalization=normalization, metadata=metadata,
                   class_labels=class_labels)
    expect = expect or CoreMLExpectation.from_graph(model, example)
    report = inspect_coreml(path)
    check_coreml(report, expect)
    detail: Dict[str, Any] = {"classifier": class_labels is not None, "precision": report.precision, "spec_version": report.spec_version,
                              "op_histogram": report.op_histogram, "residual_adds": report.residual_adds,
                              "allowed": {"batch_norm": expect.batch_norms, "residual_adds": expect.residual_adds,
                                          "norm_layers": expect.norms},
                              "normalization": (normalization.describe() if normalization else "pixel/255")}
    if platform.system() != "Darwin" or example.shape[0] != 1:
        detail["prediction"] = ("not run: Core ML predicts only on macOS" if platform.system() != "Darwin"
                                else "not run: image prediction check uses batch 1")
        return ExportResult("coreml", path, "validated", detail=detail)
    gen = np.random.default_rng(0)
    image = gen.integers(0, 256, size=(example.shape[2], example.shape[3], 3), dtype=np.uint8)
    ref = torch_reference_from_image(model, image, normalization)
    got = torch.from_numpy(predict_coreml(path, image)).reshape(ref.shape)
    prec = "fp32" if fp32 else "fp16"
    cmp = _compare(f"coreml ({prec})", ref, got, COREML_TOL[prec])
    detail["prediction"] = "compared on this Mac (CPU_ONLY)"
    return ExportResult("coreml", path, "compared", **cmp, detail=detail)
