"""The per-stage cost table that ``archc build`` prints: resolution, tokens, width, depth, mixer, params, MACs."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import torch.nn as nn

from ..spec import Spec, stage_resolutions
from ..spec.rules import stem_out
from .profile import GraphProfile, example_input, profile_graph


@dataclass
class StageRow:
    part: str
    resolution: str
    tokens: Optional[int]
    width: Optional[int]
    depth: Optional[int]
    mixer: str
    params: int
    macs: int
    bytes_moved: int


@dataclass
class CostReport:
    """Per-part rows plus totals for one model at one input size."""

    name: str
    input_size: tuple
    rows: List[StageRow]
    params: int
    macs: int
    bytes_moved: int
    residual_adds: int
    ops: Dict[str, int]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


def part_of(scope: str) -> str:
    """Which table row a module path belongs to: ``stem``, ``stage N`` or ``head``."""
    if scope.startswith("stem"):
        return "stem"
    if scope.startswith("stages."):
        return f"stage {scope.split('.')[1]}"
    return "head"


def cost_report(model: nn.Module, spec: Spec, input_size=None, profile: Optional[GraphProfile] = None) -> CostReport:
    """Cost table for a built (train or deploy) model of ``spec``; MACs from torch's flop counter."""
    size = tuple(input_size or spec.input_size)
    if profile is None:
        profile = profile_graph(model, example_input(size, spec.in_chans))
    sums = profile.by_scope(part_of)
    rows: List[StageRow] = []
    stem = sums.get("stem", {"macs": 0, "params": 0, "bytes": 0})
    sized = dataclasses.replace(spec, input_size=size)
    resolutions = stage_resolutions(sized)
    h0 = tuple(stem_out(sized, n) for n in size)
    rows.append(StageRow("stem", f"{size[0]}x{size[1]} -> {h0[0]}x{h0[1]}", None, spec.stem_width, None,
                         spec.stem.type, stem["params"], stem["macs"], stem["bytes"]))
    for i, (stage, (h, w)) in enumerate(zip(spec.stages, resolutions)):
        s = sums.get(f"stage {i}", {"macs": 0, "params": 0, "bytes": 0})
        rows.append(StageRow(f"stage {i}", f"{h}x{w}", h * w, stage.width, stage.depth, stage.mixer.type,
                             s["params"], s["macs"], s["bytes"]))
    head = sums.get("head", {"macs": 0, "params": 0, "bytes": 0})
    rows.append(StageRow("head", "1x1", None, spec.num_classes, None, spec.head.type, head["params"],
                         head["macs"], head["bytes"]))
    return CostReport(name=spec.name, input_size=size, rows=rows, params=profile.total_params, macs=profile.macs,
                      bytes_moved=profile.bytes_moved, residual_adds=profile.residual_adds(),
                      ops=profile.op_histogram())
