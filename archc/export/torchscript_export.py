"""TorchScript export (trace) of the deploy graph, verified by reloading the file."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn

from ..errors import ExportError


def trace(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace ``model`` (eval mode). The deploy graph has no data-dependent control flow, so a trace is
    exact for every input of the example's shape (and batch size, thanks to shape-generic reshapes)."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch 2.13 marks jit.trace deprecated; it is what Core ML takes
            return torch.jit.trace(model.eval(), example, check_trace=False)
    except Exception as exc:
        raise ExportError(f"TorchScript trace failed: {type(exc).__name__}: {exc}") from exc


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Union[str, Path]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(trace(model, example), str(path))
    return path


def run_torchscript(path: Union[str, Path], x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return m(x)
