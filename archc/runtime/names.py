"""The runtime options by name, without torch, so that `archc bench --help` lists them fast."""
from typing import Dict

#: runtime options for the deploy graph; ``best`` is resolved per device by ``resolve_runtime``
RUNTIMES: Dict[str, str] = {
    "eager": "torch eager, NCHW (contiguous)",
    "channels_last": "torch eager, model and input in channels_last (NHWC) memory format",
    "explicit_attention": "torch eager with attention as matmul-softmax-matmul instead of "
                          "F.scaled_dot_product_attention",
    "compile": "torch.compile (inductor), NCHW",
    "compile_channels_last": "torch.compile (inductor), channels_last",
    "onnxruntime": "ONNX Runtime (CPU or CUDA execution provider) on the exported deploy graph",
    "tensorrt": "TensorRT through torch_tensorrt (CUDA only, when torch_tensorrt is installed)",
    "best": "the fastest option measured on this kind of device (see docs/BENCHMARKS.md)",
}

#: what ``best`` means, decided by benchmarks/runtime_options.py (figures in docs/BENCHMARKS.md). CUDA has
#: no entry: nothing was measured on a GPU yet, so ``best`` there is plain eager until someone measures
BEST_RUNTIME = {"cpu": "onnxruntime"}
