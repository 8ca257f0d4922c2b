"""Deploy below fp32, with the cost measured: int8 through ONNX Runtime's static quantization (QDQ), fp16
simulated in torch, and the fidelity of each against the fp32 deploy graph on held-out real images.

Reparameterized networks are known to quantize badly (folded branches and BatchNorms widen weight and
activation ranges; QARepVGG, Hailo's FastViT-SA12 int8 figures), so every quantized export states its
top-1, its top-1 agreement with fp32 and its output SQNR (``fidelity``), and says which calibration it used.
"""
from .fidelity import Fidelity, fidelity, sqnr_db
from .onnx_int8 import CALIBRATION_METHODS, Int8Export, count_qdq, quantize_onnx_int8

__all__ = ["CALIBRATION_METHODS", "Fidelity", "Int8Export", "count_qdq", "fidelity", "quantize_onnx_int8", "sqnr_db"]
