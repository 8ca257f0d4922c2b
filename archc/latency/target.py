"""A latency target resolved once: a name becomes a ``LatencyTarget`` that says whether its figures are
predicted (a calibrated device profile) or measured (a device on this machine), and how.

Before this, search validation, the search objective and ``latency()`` each classified the name again;
now each resolves it once and passes the object on (a ``LatencyTarget`` is accepted wherever a name is).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from typing import TYPE_CHECKING

from ..errors import DeviceError, did_you_mean
from .result import MEASURED_TARGETS, LatencyResult

if TYPE_CHECKING:
    from .predict import ProfileInfo

# measurement (runtimes) and prediction (scipy, the cost model) load when a target is first used, so the
# command line's parsers, which import the search and this module, stay fast (`archc --help`)


@dataclass(frozen=True)
class LatencyTarget:
    """``name``; ``kind``: ``"predicted"`` or ``"measured"``; ``profile``: the device profile a prediction uses."""

    name: str
    kind: str
    profile: Optional["ProfileInfo"] = None

    @property
    def predicted(self) -> bool:
        return self.kind == "predicted"

    @property
    def measured(self) -> bool:
        return self.kind == "measured"

    def latency(self, spec, **kwargs) -> LatencyResult:
        """The latency of ``spec`` here: predicted (only ``resolution`` applies) or measured (every option)."""
        if self.predicted:
            from .predict import predict_latency
            return predict_latency(spec, self.name, **{k: v for k, v in kwargs.items() if k == "resolution"})
        from .measure import measure_latency
        return measure_latency(spec, self.name, **kwargs)


def resolve_target(target: Union[str, LatencyTarget]) -> LatencyTarget:
    """The ``LatencyTarget`` for a name (a profile name shadows nothing: measured names are reserved);
    DeviceError listing the valid names otherwise."""
    if isinstance(target, LatencyTarget):
        return target
    if target in MEASURED_TARGETS:
        return LatencyTarget(target, "measured")
    from .predict import available_profiles
    profiles = available_profiles()
    if target in profiles:
        return LatencyTarget(target, "predicted", profiles[target])
    valid = list(MEASURED_TARGETS) + sorted(profiles)
    raise DeviceError(f"unknown latency target '{target}'{did_you_mean(str(target), valid)}; "
                      f"valid: {', '.join(valid)}")


def latency(spec, target: Union[str, LatencyTarget] = "cpu", **kwargs) -> LatencyResult:
    """Latency of ``spec`` on ``target``: measured, or predicted where ``target`` names a device profile."""
    return resolve_target(target).latency(spec, **kwargs)
