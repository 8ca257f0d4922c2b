"""Runners: the deploy graph of a spec, and each runtime option wrapped around it (see the package docstring)."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..builder import build
from ..errors import ArchcError, DeviceError, did_you_mean
from ..spec import Spec
from ..weights import load_weights
from .names import BEST_RUNTIME, RUNTIMES


def inference_model(spec: Spec, weights: Union[None, str, Path, Mapping[str, Any]] = None, *,
                    deploy: bool = True, verify: bool = True, model: Optional[nn.Module] = None) -> nn.Module:
    """The eval-mode graph to export or time: the reparameterized deploy graph (``archc.deploy_model``,
    which also takes reparameterized timm/Apple and archc deploy checkpoints), or with ``deploy=False`` the
    train-time graph (all branches, BN and skips) in eval mode, for train-vs-deploy comparisons.

    ``model`` (a train-time model built from ``spec``, e.g. with weights already loaded) may be given
    instead of ``weights``; it is not modified. A deploy graph passed as ``model`` is used as it is.
    """
    from ..deploy import deploy_model
    from ..passes import reparameterize

    if model is not None and weights is not None:
        raise ArchcError("pass either a model or weights, not both")
    if model is None:
        if deploy:
            return deploy_model(spec, weights, verify=verify).eval()
        model = build(spec)
        if weights is not None:
            load_weights(model, weights)
        return model.eval()
    if not deploy:
        return model.eval()
    if getattr(model, "reparam_level", None) == "full":
        return model.eval()
    return reparameterize(model.eval(), verify=verify).eval()


# --------------------------------------------------------------------------------------- runners
@dataclass
class Runner:
    """A callable that runs the model on one input batch; ``name`` is the runtime option it implements.

    ``prepare`` converts a torch input to what ``fn`` takes (e.g. channels_last, numpy); it runs outside
    the timed region, as an application would keep its input buffers in the runtime's layout.
    """

    name: str
    fn: Callable[[Any], Any]
    prepare: Callable[[torch.Tensor], Any]
    device: str = "cpu"
    cleanup: Optional[Callable[[], None]] = None

    def __call__(self, x: Any) -> Any:
        return self.fn(x)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """Run on a torch input and return a float32 CPU tensor (for equivalence checks)."""
        y = self.fn(self.prepare(x))
        if isinstance(y, (list, tuple)):
            y = y[0]
        if not isinstance(y, torch.Tensor):
            y = torch.from_numpy(y)
        return y.detach().float().cpu().contiguous()

    def close(self) -> None:
        if self.cleanup is not None:
            self.cleanup()
            self.cleanup = None


def resolve_runtime(runtime: str, device: str = "cpu") -> str:
    if runtime not in RUNTIMES:
        raise DeviceError(f"unknown runtime '{runtime}'{did_you_mean(runtime, RUNTIMES)}; valid: {', '.join(RUNTIMES)}")
    return BEST_RUNTIME.get(device, "eager") if runtime == "best" else runtime


#: kernel lowerings (archc.passes.kernels) each runtime applies on CPU, chosen by measurement
#: (benchmarks/bench_vs_timm.py, docs/BENCHMARKS.md); on CUDA none was measured, so none is applied
CPU_LOWERINGS: Dict[str, Tuple[str, ...]] = {
    "eager": ("expand_channel_multiplier",),
    "channels_last": ("expand_channel_multiplier", "gelu_channels_last"),
    "explicit_attention": ("expand_channel_multiplier",),
    "compile": ("expand_channel_multiplier",),
    "compile_channels_last": ("expand_channel_multiplier",),  # inductor writes its own GELU
    "onnxruntime": ("expand_channel_multiplier",),
}


def lowered(model: nn.Module, example: torch.Tensor, runtime: str, device: str = "cpu") -> nn.Module:
    """``model`` with the kernel lowerings ``runtime`` uses on ``device`` (checked numerically on
    ``example``); the model itself when there are none or it is not an fx deploy graph."""
    import torch.fx as fx

    from ..passes.kernels import lower_for_kernels
    names = CPU_LOWERINGS.get(runtime, ()) if device == "cpu" else ()
    if not names or not isinstance(model, fx.GraphModule):
        return model
    return lower_for_kernels(model, names, example=example.detach().cpu())


def make_runner(model: nn.Module, example: torch.Tensor, runtime: str = "eager", device: str = "cpu",
                precision: str = "fp32", calibration=None) -> Runner:
    """Wrap the eval-mode ``model`` in ``runtime`` on ``device`` ("cpu" or "cuda"). ``example`` fixes the
    input shape for runtimes that export (ONNX Runtime, TensorRT). The model itself is not modified; on
    CPU a deploy graph first gets the kernel lowerings the runtime measured faster with (``CPU_LOWERINGS``).
    ``precision="int8"`` (ONNX Runtime only) runs the graph quantized with archc's int8 recipe
    (``archc.quant.recipe``), activations calibrated on ``calibration`` (N x C x H x W images)."""
    runtime = resolve_runtime(runtime, device)
    if precision not in ("fp32", "int8"):
        raise DeviceError(f"precision '{precision}' cannot be measured; valid: fp32, int8")
    if precision == "int8" and runtime != "onnxruntime":
        raise DeviceError(f"int8 is measured in ONNX Runtime (its static quantization); runtime '{runtime}' runs "
                          "float: use --target onnxruntime (or --runtime onnxruntime)")
    dev = torch.device(device)
    given, model = model, lowered(model, example, runtime, device)
    if runtime == "onnxruntime":
        return _onnxruntime_runner(model, example, device, calibration if precision == "int8" else None, given)
    if runtime == "tensorrt":
        return _tensorrt_runner(model, example, device)
    import copy
    m = copy.deepcopy(model).eval().to(dev)
    channels_last = runtime in ("channels_last", "compile_channels_last")
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    if runtime == "explicit_attention":
        m = explicit_attention(m)
    compiled = runtime.startswith("compile")
    if compiled:
        _require_compiler(device)
        # freezing: weights become constants, so inductor prepacks them for oneDNN and fuses conv + GELU
        # (T8, one CPU thread: 0.64x of timm's eager deploy latency, 0.76x without; docs/BENCHMARKS.md)
        m = torch.compile(m)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.to(dev).contiguous(memory_format=fmt)

    def fn(x: torch.Tensor) -> torch.Tensor:
        # frozen compiled graphs are made for no_grad; inference_mode elsewhere (no version counters)
        with (torch.no_grad() if compiled else torch.inference_mode()):
            return m(x)

    if compiled:  # compile now, not inside the first timed run
        import torch._inductor.config as inductor_config
        # (torch.compile(options={"freezing": True}) measured 15% slower than this patch: 21.6 vs 18.6 ms)
        with inductor_config.patch(freezing=device == "cpu"):
            fn(prepare(example))
    return Runner(runtime, fn, prepare, device)


def _require_compiler(device: str) -> None:
    if device == "cpu" and not (shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
                                or shutil.which("clang++")):
        raise DeviceError("runtime 'compile' needs a C++ compiler for torch.compile's CPU backend "
                          "(inductor); none found on PATH (install g++ or clang++, or set CXX)")


def explicit_attention(model: nn.Module) -> nn.Module:
    """Replace ``F.scaled_dot_product_attention`` calls in an fx graph by matmul-softmax-matmul.

    Used to measure whether the fused kernel pays off at the token counts FastViT sees on CPU.
    Non-fx models are traced first (archc models trace to primitive ops).
    """
    import torch.fx as fx
    import torch.nn.functional as F

    gm = model if isinstance(model, fx.GraphModule) else fx.symbolic_trace(model)
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is F.scaled_dot_product_attention:
            if len(node.args) != 3 or node.kwargs:
                continue  # masks, dropout or scale given: leave the fused call alone
            node.target = _explicit_sdpa
    gm.graph.lint()
    gm.recompile()
    return gm


def _explicit_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    attn = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
    return attn.softmax(dim=-1) @ v



def onnx_session_options(threads: Optional[int] = None):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads if threads is not None else torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return opts


def _onnxruntime_runner(model: nn.Module, example: torch.Tensor, device: str, int8_calibration=None,
                        given: Optional[nn.Module] = None) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DeviceError("runtime 'onnxruntime' needs the onnxruntime package (pip install 'archc[export]')") from exc
    from ..export.onnx_export import export_onnx
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DeviceError("runtime 'onnxruntime' on cuda needs onnxruntime-gpu (CUDAExecutionProvider is not "
                              f"available; providers here: {', '.join(ort.get_available_providers())})")
        providers = ["CUDAExecutionProvider"]
    tmp = Path(tempfile.mkdtemp(prefix="archc-ort-"))
    try:
        # a fixed input shape (the runner serves one shape): ONNX Runtime then folds the attention's
        # shape arithmetic (Shape/Gather/Concat) into constants
        if int8_calibration is not None:
            graph = _int8_graph(model, example, int8_calibration, tmp, given if given is not None else model)
        else:
            graph = str(export_onnx(model, example.cpu(), tmp / "model.onnx", dynamic_batch=False))
        sess = ort.InferenceSession(graph, sess_options=onnx_session_options(), providers=providers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    in_name = sess.get_inputs()[0].name

    def prepare(x: torch.Tensor):
        return x.detach().cpu().contiguous().numpy()

    def fn(x):
        return sess.run(None, {in_name: x})[0]

    return Runner("onnxruntime", fn, prepare, device)


#: (id(model), input shape, calibration digest) -> (model, quantized ONNX bytes): a bench point's probe and its timed
#: runs, or a search's two measurements, quantize (and rank layer sensitivity) once; the model is held so its id
#: cannot be reused while the entry lives
_INT8_GRAPHS: "OrderedDict[tuple, tuple]" = OrderedDict()


def _int8_graph(model: nn.Module, example: torch.Tensor, calibration, tmp: Path, given: nn.Module) -> bytes:
    """The deploy graph ``model`` as `archc export --precision int8` writes it (dynamic batch, which calibration
    needs), quantized with archc's recipe on ``calibration``; cached by the caller's model ``given``."""
    import hashlib

    import numpy as np
    from ..export.onnx_export import export_onnx
    from ..quant.recipe import quantize_deploy_graph
    images = np.ascontiguousarray(calibration, dtype=np.float32)
    key = (id(given), tuple(example.shape), hashlib.sha1(images.tobytes()).hexdigest())
    if key not in _INT8_GRAPHS:
        path = export_onnx(model, example.cpu(), tmp / "model.onnx", dynamic_batch=True)
        out = quantize_deploy_graph(model, path, tmp / "model.int8.onnx", images).path
        _INT8_GRAPHS[key] = (given, Path(out).read_bytes())
        while len(_INT8_GRAPHS) > 4:
            _INT8_GRAPHS.popitem(last=False)
    _INT8_GRAPHS.move_to_end(key)
    return _INT8_GRAPHS[key][1]


def _tensorrt_runner(model: nn.Module, example: torch.Tensor, device: str) -> Runner:
    if device != "cuda":
        raise DeviceError("runtime 'tensorrt' runs on CUDA only (use --target cuda)")
    try:
        import torch_tensorrt  # noqa: F401
    except ImportError as exc:
        raise DeviceError("runtime 'tensorrt' needs torch_tensorrt (pip install torch-tensorrt matching your "
                          "torch and CUDA)") from exc
    import copy
    m = copy.deepcopy(model).eval().cuda()
    ex = example.cuda()
    trt = torch_tensorrt.compile(m, ir="dynamo", inputs=[ex], enabled_precisions={torch.float32})

    def fn(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return trt(x)

    return Runner("tensorrt", fn, lambda x: x.cuda().contiguous(), device)


def input_shape(spec: Spec, batch: int = 1, resolution: Union[None, int, Tuple[int, int]] = None) -> Tuple[int, ...]:
    """(batch, channels, H, W) for ``spec`` at ``resolution`` (default: the spec's input_size)."""
    if resolution is None:
        h, w = spec.input_size
    elif isinstance(resolution, int):
        h = w = resolution
    else:
        h, w = resolution
    return (batch, spec.in_chans, int(h), int(w))
