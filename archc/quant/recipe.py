"""archc's int8 recipe in one place, so that `archc export --precision int8`, `archc bench --precision int8` and
`archc search --precision int8` quantize alike: ONNX Runtime static quantization (QDQ, S8S8), percentile
calibration, weights per output channel, and the most sensitive layer kept in float (docs/QUANTIZATION.md: on the
trained models this had the smallest top-1 drop, 0.22 / 0.00 / -0.02 points where naive int8 lost up to 90)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from .onnx_int8 import Int8Export, quantize_onnx_int8


@dataclass(frozen=True)
class Int8Recipe:
    calibration: str = "percentile"
    per_channel: bool = True
    keep_float: int = 1          # the K layers most sensitive to int8 stay float (ranked on the calibration images)
    activations: str = "s8"


def quantize_deploy_graph(model, fp32_onnx: Union[str, Path], out: Union[str, Path], calibration_images: np.ndarray,
                          recipe: Int8Recipe = Int8Recipe()) -> Int8Export:
    """Quantize ``fp32_onnx`` (the ONNX export of the deploy graph ``model``) to ``out`` with ``recipe``; layers to
    keep in float are ranked by their int8 sensitivity on the calibration images against ``model``'s logits."""
    exclude, kept = [], []
    if recipe.keep_float > 0:
        from .evaluate import torch_logits
        from .sensitivity import layer_sensitivity
        ranked = layer_sensitivity(fp32_onnx, calibration_images, calibration_images,
                                   torch_logits(model, calibration_images), calibration=recipe.calibration,
                                   per_channel=recipe.per_channel)
        exclude = [r.node for r in ranked[:recipe.keep_float]]
        kept = [f"{r.module} ({r.sqnr_db:.1f} dB alone)" for r in ranked[:recipe.keep_float]]
    export = quantize_onnx_int8(fp32_onnx, out, calibration_images, calibration=recipe.calibration,
                                per_channel=recipe.per_channel, exclude=exclude, activations=recipe.activations)
    export.detail["kept_in_float"] = kept
    return export


def random_calibration(shape, n: int = 32, seed: int = 0) -> np.ndarray:
    """Seeded N(0, 1) images for a quantization whose speed alone matters (``archc bench --precision int8`` without
    data): the ops and their order do not depend on the calibrated ranges."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *tuple(shape)[1:]), dtype=np.float32)
