"""``torch.export`` ExportedProgram (.pt2) of the deploy graph, verified by reloading the file."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn

from ..errors import ExportError


def export_program(model: nn.Module, example: torch.Tensor, path: Union[str, Path]) -> Path:
    """Save ``torch.export.export(model, (example,))``: static shapes, eval mode, no autograd."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            ep = torch.export.export(model.eval(), (example,))
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
