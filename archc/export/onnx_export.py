"""ONNX export of the deploy graph, verified through ONNX Runtime."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import torch
import torch.nn as nn

from ..errors import ExportError

#: opset 20 has a Gelu op (one node instead of Erf/Div/Add/Mul/Mul); ONNX Runtime >= 1.16 runs it, at the
#: same speed as its own fusion of the opset-17 pattern within noise (docs/BENCHMARKS.md). Runtimes that
#: stop at 17 get ``opset=17`` (``archc export --onnx-opset 17``).
OPSET = 20


def export_onnx(model: nn.Module, example: torch.Tensor, path: Union[str, Path], *, dynamic_batch: bool = True,
                opset: int = OPSET, metadata: Optional[Dict[str, str]] = None) -> Path:
    """Write ``model`` (eval mode) as ONNX with input ``image`` and output ``logits``; ``metadata`` goes into
    the model's ``metadata_props`` (archc writes the input's preprocessing there).

    The TorchScript-based exporter is used where torch still has it: it is ~10x faster than the
    torch.export-based one for these graphs and gives the same numbers; otherwise the new exporter.
    """
    try:
        import onnx  # noqa: F401  (torch's exporter needs it; say which extra brings it)
    except ImportError as exc:
        raise ExportError("ONNX export needs the onnx package (pip install 'archc[export]')") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    kwargs = dict(input_names=["image"], output_names=["logits"], opset_version=opset, dynamic_axes=axes)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, **kwargs)
            except TypeError:  # a torch without the legacy exporter's switch
                torch.onnx.export(model.eval(), (example,), str(path), **kwargs)
    except Exception as exc:  # torch raises many types here; the user needs one message
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    drop_identities(path)
    if metadata:
        add_metadata(path, metadata)
    return path


def drop_identities(path: Union[str, Path]) -> int:
    """Remove ``Identity`` nodes (torch's exporter writes one per parameter equal to another, e.g. two zero
    biases): each consumer reads the Identity's input instead. Graph outputs keep theirs. Returns how many went;
    the file is then verified against torch like every export."""
    import onnx
    m = onnx.load(str(path))
    outputs = {o.name for o in m.graph.output}
    alias = {n.output[0]: n.input[0] for n in m.graph.node if n.op_type == "Identity" and n.output[0] not in outputs}
    if not alias:
        return 0

    def source(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name
    keep = [n for n in m.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in keep:
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = source(name)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, str(path))
    return len(alias)


def add_metadata(path: Union[str, Path], metadata: Dict[str, str]) -> None:
    """Set ``metadata_props`` entries (what ONNX Runtime's ``get_modelmeta().custom_metadata_map`` shows)."""
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("writing ONNX metadata needs onnx (pip install 'archc[export]')") from exc
    m = onnx.load(str(path))
    have = {p.key: p for p in m.metadata_props}
    for k, v in metadata.items():
        if k in have:
            have[k].value = str(v)
        else:
            m.metadata_props.add(key=k, value=str(v))
    onnx.save(m, str(path))


def run_onnx(path: Union[str, Path], x: torch.Tensor) -> torch.Tensor:
    """Run an ONNX file on ONNX Runtime's CPU execution provider."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError("verifying ONNX needs onnxruntime (pip install 'archc[export]')") from exc
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.detach().cpu().numpy()})[0]
    return torch.from_numpy(out)
