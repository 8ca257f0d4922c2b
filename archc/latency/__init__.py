"""Latency, measured on a device (``measure``) or predicted from a calibrated device profile (``predict``).

A target name is resolved once (``resolve_target``) into a ``LatencyTarget`` that says whether it is
predicted (a profile: ``iphone12pro`` and user-calibrated ones) or measured (``cpu``, ``cuda``,
``onnxruntime``, ``coreml``, ``iphone``) and how; ``latency(spec, target)`` is the one entry point the CLI
and the search use. The names import on first use (``archc.lazy``).
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .result import MEASURED_TARGETS, LatencyResult

__all__ = ["MEASURED_TARGETS", "LatencyResult", "LatencyTarget", "latency", "resolve_target"]

__getattr__, __dir__ = lazy_attributes(__name__, {"LatencyTarget": "target", "latency": "target",
                                                  "resolve_target": "target"}, globals())

if TYPE_CHECKING:
    from .target import LatencyTarget, latency, resolve_target
