"""Which layers cost accuracy under int8: quantize one layer at a time and measure the output SQNR against fp32.

Each Conv / Gemm / MatMul node of the fp32 deploy graph is quantized alone (all others excluded), with the
same calibration as the full export, and the logits' SQNR on held-out images is recorded: the lower, the more
that layer alone costs. Each node's weight keeps its parameter name in archc's ONNX export
(``stages.2.blocks.0.mlp.fc1.weight``), so each row names the deploy module and the spec's stage and block. The most sensitive layers are the ones to keep in float
(``quantize_onnx_int8(exclude=...)``).
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from .fidelity import sqnr_db
from .onnx_int8 import quantize_onnx_int8, run_onnx

QUANTIZABLE = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class LayerSensitivity:
    node: str
    op: str
    module: str      # the deploy graph's module path, from the node's weight (stages.2.blocks.0.mlp.fc1)
    where: str       # the spec part it belongs to (stem, stages[i].blocks[j], head)
    sqnr_db: float   # logits' SQNR with only this layer in int8


def spec_part(module: str) -> str:
    """``stages.2.blocks.1.mlp.fc1`` -> ``stages[2].blocks[1]``; ``stem.0.reparam_conv`` -> ``stem``."""
    stage = re.match(r"stages\.(\d+)(?:\.blocks\.(\d+))?", module)
    if stage:
        return f"stages[{stage.group(1)}]" + (f".blocks[{stage.group(2)}]" if stage.group(2) else "")
    return module.split(".")[0]


def layer_sensitivity(fp32_onnx: Union[str, Path], calibration_images: np.ndarray, images: np.ndarray,
                      reference_logits: np.ndarray, *, calibration: str = "percentile", per_channel: bool = False,
                      limit: Optional[int] = None) -> List[LayerSensitivity]:
    """One row per quantizable node, most sensitive (lowest SQNR) first."""
    import onnx
    graph = onnx.load(str(fp32_onnx)).graph
    weights = {i.name for i in graph.initializer}
    # the exporter names a node by its op, but keeps each weight's parameter name (the module path); a node
    # without a named weight (attention's matmuls) is placed by the next node that has one, and says so
    named = [(n, next((w.rsplit(".", 1)[0] for w in n.input if w in weights and "::" not in w), None))
             for n in graph.node if n.op_type in QUANTIZABLE]
    nodes, following = [], None
    for n, module in reversed(named):
        following = module or following
        nodes.append((n.name, n.op_type, module or f"{n.name} (before {following})"))
    nodes.reverse()
    rows = []
    with tempfile.TemporaryDirectory(prefix="archc-sens-") as tmp:
        for name, op, module in nodes[:limit]:
            out = Path(tmp) / "one.onnx"
            everything_else = [n for n, _, _ in nodes if n != name]
            try:
                quantize_onnx_int8(fp32_onnx, out, calibration_images, calibration=calibration,
                                   per_channel=per_channel, exclude=everything_else)
            except Exception:  # noqa: BLE001  (a node ONNX Runtime cannot quantize alone: say so, go on)
                rows.append(LayerSensitivity(name, op, module, spec_part(module.split("(before ")[-1]), float("nan")))
                continue
            rows.append(LayerSensitivity(name, op, module, spec_part(module.split("(before ")[-1]),
                                         sqnr_db(reference_logits, run_onnx(out, images))))
    return sorted(rows, key=lambda r: (np.isnan(r.sqnr_db), r.sqnr_db))
