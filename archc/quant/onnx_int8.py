"""int8 ONNX through ONNX Runtime's static post-training quantization (``onnxruntime.quantization``): QDQ format,
signed 8-bit weights and activations (S8S8), weights per output channel by default, activation ranges calibrated
on real images with MinMax, entropy (KL) or percentile.

archc writes the fp32 deploy graph as ONNX first (``archc.export``), runs ONNX Runtime's pre-processing (shape
inference and graph optimisation, which fuses what the quantizer should see as one op), then quantizes. The
produced file is read back and its QuantizeLinear / DequantizeLinear nodes counted, so an export that silently
stayed in float is caught.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Union

import numpy as np

from ..errors import ExportError

#: --calibration choices -> onnxruntime.quantization.CalibrationMethod member names
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


@dataclass
class Int8Export:
    path: Path
    calibration: str
    per_channel: bool
    calibration_images: int
    quantize_nodes: int
    dequantize_nodes: int
    excluded: Sequence[str] = ()
    detail: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"path": str(self.path), "calibration": self.calibration, "per_channel": self.per_channel,
                "calibration_images": self.calibration_images, "quantize_nodes": self.quantize_nodes,
                "dequantize_nodes": self.dequantize_nodes, "excluded": list(self.excluded), **self.detail}


def _ort_quantization():
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise ExportError("int8 export needs onnxruntime and onnx (pip install 'archc[export]')") from exc
    return quantization


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a float32 array of preprocessed images."""

    def __init__(self, images: np.ndarray, input_name: str, batch: int):
        self.images, self.input_name, self.batch = images, input_name, batch
        self._it: Optional[Iterator[Dict[str, np.ndarray]]] = None
        self.rewind()

    def rewind(self) -> None:
        # equal batches only: ONNX Runtime's histogram calibrators (entropy, percentile) stack per-batch outputs
        # and fail on a shorter last batch, so the remainder (< batch images) is left out
        batch = min(self.batch, len(self.images))
        stop = len(self.images) - len(self.images) % batch
        self._it = ({self.input_name: self.images[i:i + batch]} for i in range(0, stop, batch))

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self._it, None)


def count_qdq(path: Union[str, Path]) -> Dict[str, int]:
    """Op-type histogram of an ONNX file (read back, not taken on trust)."""
    import onnx
    hist: Dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        hist[node.op_type] = hist.get(node.op_type, 0) + 1
    return hist


@contextlib.contextmanager
def _calibration_errors(calibration: str):
    """ONNX Runtime's histogram calibrators (percentile, entropy) fail with numpy's ValueError on an activation
    whose range is (almost) zero, e.g. in an untrained model: one line saying so and what works instead."""
    try:
        yield
    except ValueError as exc:
        if "bins" not in str(exc):
            raise
        raise ExportError(f"{calibration} calibration failed: an activation has (almost) no range over the "
                          f"calibration images ({exc}); an untrained model or too few images? use --calibration "
                          "minmax, or more --calibration-images") from None


def quantize_onnx_int8(fp32_onnx: Union[str, Path], out: Union[str, Path], calibration_images: np.ndarray, *,
                       calibration: str = "percentile", per_channel: bool = True, percentile: float = 99.999,
                       exclude: Sequence[str] = (), batch: int = 32, activations: str = "s8") -> Int8Export:
    """Quantize the fp32 ONNX file ``fp32_onnx`` to ``out`` (QDQ, int8 weights), calibrating activations on
    ``calibration_images`` (N x C x H x W float32, preprocessed as the model expects). ``exclude``: node names
    to keep in float (the most sensitive layers). ``activations``: ``s8`` (S8S8, symmetric-friendly, the default)
    or ``u8`` (U8S8: what ONNX Runtime's x86 kernels take natively; faster there, and on CPUs without VNNI its
    16-bit intermediate sums can saturate: benchmarks/int8_speed.py)."""
    q = _ort_quantization()
    if calibration not in CALIBRATION_METHODS:
        raise ExportError(f"calibration '{calibration}' is not one of: {', '.join(CALIBRATION_METHODS)}")
    if activations not in ("s8", "u8"):
        raise ExportError(f"activations '{activations}' is not one of: s8, u8")
    images = np.ascontiguousarray(calibration_images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ExportError(f"calibration images must be a non-empty N x C x H x W array, got shape {images.shape}")
    if not np.isfinite(images).all():
        raise ExportError("calibration images hold NaN or infinite values")
    import onnx
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="archc-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        q.quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        input_name = onnx.load(str(pre)).graph.input[0].name
        extra = {"CalibPercentile": percentile} if calibration == "percentile" else {}
        with contextlib.redirect_stdout(io.StringIO()), _calibration_errors(calibration):  # --json owns stdout
            q.quantize_static(str(pre), str(out), _Reader(images, input_name, batch),
                              quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                              activation_type=q.QuantType.QInt8 if activations == "s8" else q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8,
                              calibrate_method=getattr(q.CalibrationMethod, CALIBRATION_METHODS[calibration]),
                              nodes_to_exclude=list(exclude), extra_options=extra)
    hist = count_qdq(out)
    quant, dequant = hist.get("QuantizeLinear", 0), hist.get("DequantizeLinear", 0)
    if not quant or not dequant:
        raise ExportError(f"{out}: the quantized model holds no QuantizeLinear/DequantizeLinear ops (op types: "
                          f"{', '.join(sorted(hist))}); it stayed in float")
    detail = {"activations": activations, **({"percentile": percentile} if calibration == "percentile" else {})}
    return Int8Export(out, calibration, per_channel, len(images), quant, dequant, tuple(exclude), detail)


def run_onnx(path: Union[str, Path], images: np.ndarray, batch: int = 256, threads: int = 1) -> np.ndarray:
    """Logits of an ONNX file on ``images`` through ONNX Runtime's CPU provider."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: np.ascontiguousarray(images[i:i + batch], dtype=np.float32)})[0]
            for i in range(0, len(images), batch)]
    return np.concatenate(outs)
