"""How close a lower-precision graph's logits are to the fp32 deploy graph's: top-1 of both against the labels,
top-1 agreement between them, and the output SQNR in dB."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

import numpy as np


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``other`` against ``reference``: 10 log10(sum ref^2 / sum err^2)
    (inf where they are equal)."""
    ref = np.asarray(reference, dtype=np.float64)
    err = float(np.sum((ref - np.asarray(other, dtype=np.float64)) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(float(np.sum(ref ** 2)) / err))


@dataclass(frozen=True)
class Fidelity:
    images: int
    top1_fp32: float       # % of the held-out images the fp32 deploy graph classifies right
    top1: float            # % the lower-precision graph classifies right
    agreement: float       # % of images where both graphs pick the same class
    sqnr_db: float         # output logits, against fp32

    @property
    def drop(self) -> float:
        """top-1 points lost against fp32."""
        return self.top1_fp32 - self.top1

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "drop": self.drop}


def fidelity(reference_logits: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> Fidelity:
    """``Fidelity`` of ``logits`` (N x classes) against ``reference_logits`` (the fp32 deploy graph's) on ``labels``."""
    ref, out, y = np.asarray(reference_logits), np.asarray(logits), np.asarray(labels)
    if ref.shape != out.shape or ref.ndim != 2 or len(y) != len(ref):
        raise ValueError(f"fidelity needs two N x C logit arrays and N labels, got {ref.shape}, {out.shape}, {y.shape}")
    a, b = ref.argmax(1), out.argmax(1)
    n = len(y)
    return Fidelity(images=n, top1_fp32=100.0 * float((a == y).mean()), top1=100.0 * float((b == y).mean()),
                    agreement=100.0 * float((a == b).mean()), sqnr_db=sqnr_db(ref, out))
