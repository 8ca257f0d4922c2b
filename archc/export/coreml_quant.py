"""Core ML int8 weights (W8A16): the package converted as ``convert_coreml`` writes it, then every conv/linear
weight quantized by ``coremltools.optimize.coreml.linear_quantize_weights`` (symmetric, int8, one scale per output
channel), read back and checked, and the same rule simulated in torch for a fidelity row.

Why weights only: Core ML's activation quantization (``linear_quantize_activations``, W8A8) calibrates by running
the model, and Core ML predicts only on macOS ("Model prediction is only supported on macOS", coremltools 9.0 on
Linux), so archc writes W8A16 everywhere and says so; activations stay in the package's compute precision.

Why every weight (``weight_threshold=0``, not coremltools' 2048): the 2048-element default is a storage heuristic
that, on the small models archc trains, would leave most depthwise kernels fp16 and make "int8" a mix; quantizing
every conv/linear weight makes the package and the simulation the same rule, and the count checkable: one
quantized-weight op per conv/linear weight of the deploy graph, no conv/linear weight left float.
"""
from __future__ import annotations

import contextlib
import copy
import io
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..errors import ExportError

#: ops whose const weight is quantized; constexpr ops that hold a quantized weight (iOS16 / iOS18 opsets)
WEIGHT_OPS = ("conv", "linear", "matmul", "conv_transpose")
QUANT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")
WEIGHT_THRESHOLD = 0
#: torch modules whose weight the rule covers (the deploy graph's convs and linears)
TORCH_WEIGHT_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
W8A8_UNAVAILABLE = ("activations stay in the package's compute precision: coremltools' activation quantization "
                    "(linear_quantize_activations, W8A8) calibrates by running the model, which Core ML does only "
                    "on macOS")


@dataclass
class CoreMLInt8:
    path: Path
    quantized_weights: int                 # constexpr ops holding an int8 weight, read back from the package
    consumers: Dict[str, int]              # the ops they feed (conv, linear, ...)
    float_weights: List[str]               # conv/linear ops whose weight is still a float const
    per_channel: bool                      # every scale has one value per output channel
    activations: str                       # "fp16" or "fp32": the compute precision the package was converted to
    weights: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)  # name: (int8, scale)
    detail: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"path": str(self.path), "weight_quantization": "int8, linear symmetric, per output channel",
                "quantized_weight_ops": self.quantized_weights, "quantized_weight_consumers": self.consumers,
                "float_weights_left": len(self.float_weights), "per_channel": self.per_channel,
                "activations": self.activations, "scheme": f"W8A{self.activations[2:]}",
                "why_not_w8a8": W8A8_UNAVAILABLE, **self.detail}


def _optimize():
    from .ct_import import import_coremltools
    import_coremltools(ExportError, "Core ML int8 weights")
    try:
        import coremltools.optimize.coreml as cto
    except ImportError as exc:
        raise ExportError("Core ML int8 weights need coremltools.optimize (coremltools >= 8.3)") from exc
    return cto


def quantize_coreml_weights(src: Union[str, Path], out: Union[str, Path], activations: str) -> CoreMLInt8:
    """Quantize the conv/linear weights of the package ``src`` to int8 (per output channel, symmetric) and save it
    to ``out``; then read ``out`` back (``read_int8_package``) and fail if any conv/linear weight stayed float."""
    import shutil
    cto = _optimize()
    import coremltools as ct
    cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                      weight_threshold=WEIGHT_THRESHOLD)
    config = cto.OptimizationConfig(op_type_configs={op: cfg for op in WEIGHT_OPS})
    out = Path(out)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):  # progress bars (tqdm)
            warnings.simplefilter("ignore")
            model = ct.models.MLModel(str(src), skip_model_load=True)
            quantized = cto.linear_quantize_weights(model, config)
            quantized.user_defined_metadata["archc.precision"] = (f"int8 weights (per output channel, symmetric), "
                                                                  f"{activations} activations")
            quantized.save(str(out))
    except Exception as exc:  # coremltools raises assorted types; the user needs one line
        raise ExportError(f"Core ML int8 weight quantization failed: {type(exc).__name__}: {exc}") from exc
    report = read_int8_package(out, activations)
    if not report.quantized_weights:
        raise ExportError(f"{out}: no quantized-weight op ({', '.join(QUANT_OPS)}) in the package: it stayed float")
    if report.float_weights:
        raise ExportError(f"{out}: {len(report.float_weights)} conv/linear weights stayed float: "
                          f"{', '.join(report.float_weights[:5])}")
    return report


def _program(path: Path):
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil
    import coremltools as ct
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
        spec = mlmodel.get_spec()
        return load_mil(spec, spec.specificationVersion, mlmodel.weights_dir)


def _int8_of(op) -> Tuple[np.ndarray, np.ndarray]:
    """(int8 data, per-channel scale) of a quantized-weight constexpr op, either opset's."""
    if op.op_type == "constexpr_affine_dequantize":
        return np.asarray(op.quantized_data.val), np.asarray(op.scale.val)
    return np.asarray(op.data.val), np.asarray(op.scale.val)


def read_int8_package(path: Union[str, Path], activations: str = "fp16") -> CoreMLInt8:
    """Read a package's MIL program back (works on Linux) and count its quantized-weight ops, the ops they feed,
    and the conv/linear ops whose weight is still a float const; ``weights`` maps each quantized constant's name
    to its (int8 data, scale), to compare with the simulation."""
    _optimize()
    path = Path(path)
    try:
        prog = _program(path)
    except Exception as exc:
        raise ExportError(f"{path}: Core ML package does not load: {type(exc).__name__}: {exc}") from exc
    quantized, consumers, float_left = 0, Counter(), []
    per_channel, weights = True, {}
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type in QUANT_OPS:
                quantized += 1
                data, scale = _int8_of(op)
                weights[op.name] = (data, scale)
                per_channel = per_channel and bool(data.dtype == np.int8 and data.ndim > 1
                                                   and scale.size == data.shape[0])
                for child in op.outputs[0].child_ops:
                    consumers[child.op_type] += 1
            elif op.op_type in WEIGHT_OPS:
                w = op.inputs.get("weight", op.inputs.get("y"))
                if w is not None and w.op is not None and w.op.op_type == "const" and w.rank > 1:
                    float_left.append(w.op.name)
    return CoreMLInt8(path, quantized, dict(consumers), float_left, per_channel and quantized > 0, activations,
                      weights)


# ---------------------------------------------------------------------------------------- the simulation
def int8_weight(w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """coremltools' linear_symmetric int8 rule for one weight, per output channel (axis 0), in the dtype Core ML
    holds the weight in (fp16 in an fp16 package): scale = 2 max|w| / 254, q = clip(round(w / scale), -127, 127).
    Returns (int8 data, scale); an all-zero channel gets scale 0 and zeros."""
    axes = tuple(range(1, w.ndim))
    lo, hi = np.amin(w, axis=axes, keepdims=True), np.amax(w, axis=axes, keepdims=True)
    max_abs = np.maximum(np.abs(lo), np.abs(hi))
    scale = (max_abs - (-max_abs)) / (127 - (-127))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale > 0, np.round(w / np.where(scale > 0, scale, 1)), 0)
    return np.clip(q, -127, 127).astype(np.int8), scale.astype(w.dtype).reshape(-1)


def fake_quantize_weights(model: nn.Module, dtype: torch.dtype = torch.float16) -> Tuple[nn.Module, Dict[str, Tuple]]:
    """A copy of ``model`` whose conv/linear weights are int8-then-dequantized by ``int8_weight`` (weights first
    rounded to ``dtype``, as the package stores them). Returns (model, {module name: (int8 data, scale)})."""
    np_dtype = np.float16 if dtype == torch.float16 else np.float32
    sim = copy.deepcopy(model).eval()
    rules: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    with torch.no_grad():
        for name, m in sim.named_modules():
            if isinstance(m, TORCH_WEIGHT_MODULES):
                w = m.weight.detach().cpu().numpy().astype(np_dtype)
                q, scale = int8_weight(w)
                deq = q.astype(np_dtype) * scale.reshape((-1,) + (1,) * (w.ndim - 1))
                m.weight.copy_(torch.from_numpy(deq.astype(np.float32)))
                rules[name] = (q, scale)
    return sim, rules


def match_package(rules: Dict[str, Tuple[np.ndarray, np.ndarray]],
                  package: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> Dict[str, Any]:
    """Compare the simulation's int8 weights with the package's, matched by name (coremltools names a weight
    ``<module path with _>_weight_to_fp16_quantized``, behind the wrapper's prefix): how many matched, the largest
    int8 step between the two (0: the simulation runs exactly the package's weights) and the largest scale
    difference. Channels whose scale is 0 (max |w| so small that max|w| / 127 underflows fp16) dequantize to 0 in
    both, whatever their codes (coremltools writes +-127 there, the simulation 0): counted, not compared."""
    by_module = {}
    for key in package:
        m = re.fullmatch(r"(?:model_0_|0_model_|model_|0_)?(.+)_weight(?:_to_fp16)?_quantized", key)
        if m:
            by_module[m.group(1)] = key
    matched, steps, scale_err, zero = 0, 0, 0.0, 0
    for name, (q, scale) in rules.items():
        key = by_module.get(name.replace(".", "_"))
        if key is None or package[key][0].shape != q.shape or package[key][1].size != scale.size:
            continue
        matched += 1
        pq, ps = package[key][0], package[key][1].astype(np.float64).reshape(-1)
        live = ps != 0
        zero += int((~live).sum())
        if live.any():
            steps = max(steps, int(np.abs(pq[live].astype(np.int16) - q[live].astype(np.int16)).max()))
            rel = np.abs(ps[live] - scale.astype(np.float64)[live]) / np.abs(ps[live])
            scale_err = max(scale_err, float(rel.max()))
        if (scale.astype(np.float64)[~live] != 0).any():
            scale_err = float("inf")  # the package zeroed a channel the simulation keeps
    return {"simulated_weights": len(rules), "matched_in_package": matched, "max_int8_step_difference": steps,
            "max_scale_relative_difference": scale_err, "zero_scale_channels": zero}
