"""``torch.export`` ExportedProgram (.pt2) of the deploy graph, verified by reloading the file."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn

from ..errors import ExportError


class _NamedInput(nn.Module):
    """``forward(image)``: torch.export names the program's input after the argument, so it matches the
    ONNX and Core ML files' ``image`` (a GraphModule's own argument is called ``x``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


def export_program(model: nn.Module, example: torch.Tensor, path: Union[str, Path]) -> Path:
    """Save ``torch.export.export(model, (example,))``: static shapes, eval mode, no autograd, input ``image``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            ep = torch.export.export(_NamedInput(model.eval()).eval(), (example,))
            torch.export.save(ep, str(path))
    except Exception as exc:
        raise ExportError(f"torch.export failed: {type(exc).__name__}: {exc}") from exc
    return path


def run_program(path: Union[str, Path], x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.load(str(path))
    with torch.no_grad():
        return ep.module()(x)
