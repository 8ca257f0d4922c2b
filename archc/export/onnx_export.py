"""ONNX export of the deploy graph, verified through ONNX Runtime."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn

from ..errors import ExportError

OPSET = 17  # scaled_dot_product_attention needs >= 14; 17 is supported by every current runtime


def export_onnx(model: nn.Module, example: torch.Tensor, path: Union[str, Path], *, dynamic_batch: bool = True) -> Path:
    """Write ``model`` (eval mode) as ONNX with input ``image`` and output ``logits``.

    The TorchScript-based exporter is used where torch still has it: it is ~10x faster than the
    torch.export-based one for these graphs and gives the same numbers; otherwise the new exporter.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    kwargs = dict(input_names=["image"], output_names=["logits"], opset_version=OPSET, dynamic_axes=axes)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, **kwargs)
            except TypeError:  # a torch without the legacy exporter's switch
                torch.onnx.export(model.eval(), (example,), str(path), **kwargs)
    except Exception as exc:  # torch raises many types here; the user needs one message
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    return path


def run_onnx(path: Union[str, Path], x: torch.Tensor) -> torch.Tensor:
    """Run an ONNX file on ONNX Runtime's CPU execution provider."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError("verifying ONNX needs onnxruntime (pip install 'archc[export]')") from exc
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.detach().cpu().numpy()})[0]
    return torch.from_numpy(out)
