"""One latency figure and how it was obtained; the names of the measured targets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

MEASURED_TARGETS = ("cpu", "cuda", "onnxruntime", "coreml", "iphone")


@dataclass
class LatencyResult:
    """One latency figure and how it was obtained."""

    target: str
    ms: float                       # median of the runs (measured) or the prediction
    kind: str                       # "measured" or "predicted"
    batch: int
    resolution: Tuple[int, int]
    iqr_ms: Optional[float] = None  # measured: interquartile range of the runs
    cv: Optional[float] = None      # measured: coefficient of variation (std / mean)
    runs: Optional[int] = None
    expected_error_pct: Optional[float] = None  # predicted: the profile's held-out MAPE (widened outside its data)
    error_bound_pct: Optional[float] = None     # predicted: the worst held-out miss that applies (the error band)
    caveats: List[str] = field(default_factory=list)  # predicted: why the error was widened (unseen ops, ranges)
    detail: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        return d

    def describe(self) -> str:
        if self.kind == "predicted":
            err = " (prediction"
            if self.expected_error_pct:
                err += f", expected error ±{self.expected_error_pct:.1f}%"
            if self.error_bound_pct:
                err += f", worst held-out ±{self.error_bound_pct:.1f}%"
            if self.caveats:
                err += "; " + "; ".join(self.caveats)
            return f"{self.ms:.3f} ms on {self.target}{err})"
        extra = f", IQR {self.iqr_ms:.3f} ms, CV {100 * self.cv:.1f}%" if self.cv is not None else ""
        return f"{self.ms:.3f} ms median on {self.target} (batch {self.batch}, {self.runs} runs{extra})"
