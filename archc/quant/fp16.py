"""fp16 ONNX through ONNX Runtime's own converter (``onnxruntime.transformers.float16``), read back, and what ONNX
Runtime's CPU provider actually runs in fp16.

The converter is the one ONNX Runtime ships and tests against its kernels; ``keep_io_types=True`` leaves the
input and output float32 (a Cast at each end), so the file takes the same tensor as the fp32 one. The written
file is read back: its float initializers are counted by type and a Conv/Gemm/MatMul weight left in float32 is an
error, so an export that silently stayed fp32 is caught.

ONNX Runtime's CPU provider has fp16 kernels for few ops on x86: where one is missing it does not fail, it
inserts Casts and runs that op in fp32 (its ``InsertCastTransformer``). ``ort_fp16_placement`` reads the graph the
session really runs (saved with optimisations off) and counts the compute ops left in fp16 and those moved to
fp32, so the export says what an fp16 file is on this CPU (often: fp16 storage, fp32 arithmetic).
"""
from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..errors import ExportError

#: ops that move or index data (no arithmetic): left out of the fp16/fp32 placement counts
_DATA_OPS = {"Cast", "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Reshape",
             "Transpose", "Flatten", "Identity", "Split", "Expand"}
_WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class Fp16Onnx:
    path: Path
    initializers: Dict[str, int]            # element type -> count, read back from the file
    nodes: int
    placement: Optional[Dict[str, Any]] = None   # what ONNX Runtime's CPU provider runs in fp16 / fp32
    detail: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"path": str(self.path), "converter": "onnxruntime.transformers.float16 (keep_io_types=True)",
                "initializers": self.initializers, "fp16_initializers": self.initializers.get("FLOAT16", 0),
                "nodes": self.nodes, "ort_cpu_placement": self.placement, **self.detail}


def _ort_converter():
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise ExportError("fp16 ONNX needs onnxruntime and onnx (pip install 'archc[export]')") from exc
    return convert_float_to_float16


def convert_onnx_fp16(fp32_onnx: Union[str, Path], out: Union[str, Path], placement: bool = True) -> Fp16Onnx:
    """Write ``fp32_onnx`` as fp16 to ``out`` (float32 input and output), read it back and check its weights are
    float16. ``placement``: also record which ops ONNX Runtime's CPU provider runs in fp16 (``ort_fp16_placement``)."""
    import onnx
    from onnx import TensorProto
    convert = _ort_converter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        model = convert(onnx.load(str(fp32_onnx)), keep_io_types=True)
    except Exception as exc:  # the converter raises assorted types; the user needs one line
        raise ExportError(f"fp16 ONNX conversion failed: {type(exc).__name__}: {exc}") from exc
    have = {p.key: p for p in model.metadata_props}
    if "archc.precision" in have:
        have["archc.precision"].value = "fp16"
    else:
        model.metadata_props.add(key="archc.precision", value="fp16 (float32 input and output)")
    onnx.save(model, str(out))
    graph = onnx.load(str(out)).graph  # read back, not taken on trust
    types = Counter(TensorProto.DataType.Name(i.data_type) for i in graph.initializer)
    inits = {i.name: i.data_type for i in graph.initializer}
    float_weights = sorted({w for n in graph.node if n.op_type in _WEIGHT_OPS for w in n.input
                            if inits.get(w) == TensorProto.FLOAT})
    if not types.get("FLOAT16") or float_weights:
        left = f"; float32 weights: {', '.join(float_weights[:5])}" if float_weights else ""
        raise ExportError(f"{out}: the fp16 file stayed in float32 (initializer types: "
                          f"{dict(types) or 'none'}{left})")
    io = [v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output)]
    if any(t != TensorProto.FLOAT for t in io):
        raise ExportError(f"{out}: fp16 file's input/output are not float32 (keep_io_types failed)")
    where = ort_fp16_placement(out) if placement else None
    return Fp16Onnx(out, dict(sorted(types.items())), len(graph.node), where)


def _session_graph(path: Union[str, Path], level: str, tmp: str):
    """The graph an ONNX Runtime CPU session runs at optimisation ``level``, saved and loaded back."""
    import onnx
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3  # saving an ORT_ENABLE_ALL graph warns that it is hardware specific: we only read it
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.optimized_model_filepath = str(Path(tmp) / f"{level}.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return onnx.load(opts.optimized_model_filepath)


def ort_fp16_placement(path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """Compute ops (data movement left out) that ONNX Runtime's CPU provider runs in fp16 and in fp32 for this
    fp16 file, and the Casts it inserted for the latter: read from the graph the session runs with optimisations
    off (the provider's fp16 kernel coverage, before fusions), then how many Casts remain once its optimiser has
    run (``ORT_ENABLE_ALL``, the level ``run_onnx`` uses).
    A dict with ``error`` where the session graph cannot be read."""
    import onnx
    src = onnx.load(str(path))
    before = sum(1 for n in src.graph.node if n.op_type == "Cast")
    with tempfile.TemporaryDirectory(prefix="archc-fp16-") as tmp:
        try:
            ran = onnx.shape_inference.infer_shapes(_session_graph(path, "ORT_DISABLE_ALL", tmp))
            optimised = _session_graph(path, "ORT_ENABLE_ALL", tmp)
        except Exception as exc:  # noqa: BLE001  (the fidelity run reports whether the file itself runs)
            return {"error": f"{type(exc).__name__}: {exc}"}
    g = ran.graph
    elem = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    fp16, fp32 = Counter(), Counter()
    for n in g.node:
        if n.op_type in _DATA_OPS or not n.output:
            continue
        t = elem.get(n.output[0])
        if t == onnx.TensorProto.FLOAT16:
            fp16[n.op_type] += 1
        elif t == onnx.TensorProto.FLOAT:
            fp32[n.op_type] += 1
    return {"fp16_ops": dict(fp16.most_common()), "fp32_ops": dict(fp32.most_common()),
            "fp16_op_count": sum(fp16.values()), "fp32_op_count": sum(fp32.values()),
            "inserted_casts": sum(1 for n in g.node if n.op_type == "Cast") - before,
            "casts_after_optimisation": sum(1 for n in optimised.graph.node if n.op_type == "Cast")}


def describe_placement(placement: Optional[Dict[str, Any]]) -> str:
    """One phrase for the table: how much of the file ONNX Runtime's CPU provider runs in fp16."""
    if not placement:
        return "placement not read"
    if "error" in placement:
        return f"placement not read ({placement['error']})"
    n16, n32 = placement["fp16_op_count"], placement["fp32_op_count"]
    if not n32:
        return f"all {n16} compute ops run in fp16"
    if not n16:
        return f"all {n32} compute ops run in fp32: no fp16 CPU kernel"
    return f"{n32} of {n16 + n32} compute ops run in fp32: no fp16 CPU kernel"
