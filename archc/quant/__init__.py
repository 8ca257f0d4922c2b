"""Deploy below fp32, with the cost measured: int8 through ONNX Runtime's static quantization (QDQ), fp16
simulated in torch, and the fidelity of each against the fp32 deploy graph on held-out real images.

Reparameterized networks are known to quantize badly (folded branches and BatchNorms widen weight and
activation ranges; QARepVGG, Hailo's FastViT-SA12 int8 figures), so every quantized export states its
top-1, its top-1 agreement with fp32 and its output SQNR (``fidelity``), and says which calibration it used.

``equalize`` (cross-layer equalization) and ``correct_bias`` (empirical bias correction) rewrite the fp32 deploy
graph before export (``archc.quant.remedies``; they import torch on first use).
"""
from ..lazy import lazy_attributes
from .fidelity import Fidelity, fidelity, sqnr_db
from .onnx_int8 import CALIBRATION_METHODS, Int8Export, count_qdq, quantize_onnx_int8

__getattr__, __dir__ = lazy_attributes(__name__, {"equalize": "remedies", "correct_bias": "remedies",
                                                  "EqualizeReport": "remedies", "BiasCorrectionReport": "remedies"},
                                       globals())

__all__ = ["CALIBRATION_METHODS", "BiasCorrectionReport", "EqualizeReport", "Fidelity", "Int8Export", "correct_bias",
           "count_qdq", "equalize", "fidelity", "quantize_onnx_int8", "sqnr_db"]
