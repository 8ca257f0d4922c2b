"""The fidelity table of one model at each precision, on held-out real images (``archc.train.calibration``
reads them: calibration images from the training side, the check on held-out ones)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .fidelity import Fidelity, fidelity

@torch.no_grad()
def torch_logits(model: nn.Module, images: np.ndarray, dtype: torch.dtype = torch.float32, batch: int = 256) -> np.ndarray:
    """Logits of ``model`` run in ``dtype`` (float16: an fp16 deploy simulated in torch on this CPU)."""
    m = copy.deepcopy(model).eval().to(dtype)
    x = torch.from_numpy(images)
    return torch.cat([m(x[i:i + batch].to(dtype)).float() for i in range(0, len(x), batch)]).numpy()


@dataclass
class PrecisionRow:
    precision: str
    how: str                     # runtime and method, "simulated" where it is
    fidelity: Fidelity
    detail: Dict[str, Any]

    def to_dict(self) -> Dict[str, Any]:
        return {"precision": self.precision, "how": self.how, **self.fidelity.to_dict(), **self.detail}


def precision_table(model: nn.Module, fp32_onnx: Optional[Path], images: Any,
                    int8: Optional[Tuple[str, Any]] = None, fp16: bool = False, fp16_onnx: Optional[Any] = None,
                    coreml_int8: Optional[Any] = None) -> List[PrecisionRow]:
    """Fidelity rows against the fp32 deploy graph (torch): fp32 ONNX, fp16 (torch, simulated), fp16 ONNX
    (``fp16_onnx``: an ``ExportResult`` of ``export_onnx_fp16``), int8 ONNX, and Core ML int8 weights
    (``coreml_int8``: an ``ExportResult`` of ``export_coreml_int8``; simulated in torch, ``coreml_int8_row``).
    ``images``: an ``archc.train.calibration.QuantImages`` (named here, not imported: train is a higher tier)."""
    from .onnx_int8 import run_onnx
    ref = torch_logits(model, images.images)
    rows = [PrecisionRow("fp32", "torch (reference)", fidelity(ref, ref, images.labels), {"format": "torch"})]
    if fp32_onnx is not None:
        rows.append(PrecisionRow("fp32", "ONNX Runtime", fidelity(ref, run_onnx(fp32_onnx, images.images),
                                                                   images.labels),
                                 {"format": "onnx", "path": str(fp32_onnx)}))
    if fp16:
        rows.append(PrecisionRow("fp16", "torch float16 on CPU (simulated: Core ML predicts only on macOS)",
                                 fidelity(ref, torch_logits(model, images.images, torch.float16), images.labels),
                                 {"format": "torch", "simulated": True}))
    if fp16_onnx is not None:
        from .fp16 import describe_placement
        placement = fp16_onnx.detail.get("ort_cpu_placement")
        rows.append(PrecisionRow("fp16", f"ONNX Runtime CPU, fp16 file ({describe_placement(placement)})",
                                 fidelity(ref, run_onnx(fp16_onnx.path, images.images), images.labels),
                                 {"format": "onnx", "path": str(fp16_onnx.path),
                                  "fp16_initializers": fp16_onnx.detail.get("fp16_initializers"),
                                  "ort_cpu_placement": placement}))
    if int8 is not None:
        path, export = int8
        how = (f"ONNX Runtime QDQ S8S8, {export.calibration} calibration, "
               f"{'per-channel' if export.per_channel else 'per-tensor'} weights")
        rows.append(PrecisionRow("int8", how, fidelity(ref, run_onnx(path, images.images), images.labels),
                                 {"format": "onnx", **export.to_dict()}))
    if coreml_int8 is not None:
        rows.append(coreml_int8_row(model, coreml_int8, ref, images))
    return rows


#: the label every simulated Core ML int8 row carries
COREML_SIMULATED = "simulated in torch (Core ML predicts only on macOS)"


def coreml_int8_row(model: nn.Module, package: Any, ref: np.ndarray, images: Any) -> PrecisionRow:
    """Core ML int8 weights, simulated: each conv/linear weight of the fp32 deploy graph int8-quantized by the
    package's own rule (``coreml_quant.fake_quantize_weights``, checked against the int8 values read back from the
    package) and run in torch in the package's compute precision (float16 on this CPU for an fp16 package)."""
    from ..export.coreml_quant import fake_quantize_weights, match_package, read_int8_package
    act = package.detail.get("activations", "fp16")
    dtype = torch.float16 if act == "fp16" else torch.float32
    sim, rules = fake_quantize_weights(model, dtype)
    check = match_package(rules, read_int8_package(package.path, act).weights)
    how = (f"Core ML int8 weights (per-channel symmetric) + {act} activations (W8A{act[2:]}), torch {act} on CPU: "
           f"{COREML_SIMULATED}")
    detail = {"format": "coreml", "path": str(package.path), "simulated": True, "simulated_in": f"torch {act}",
              "activations": act, "quantized_weight_ops": package.detail.get("quantized_weight_ops"),
              "why_not_w8a8": package.detail.get("why_not_w8a8"), "simulation_check": check}
    return PrecisionRow("int8", how, fidelity(ref, torch_logits(sim, images.images, dtype), images.labels), detail)
