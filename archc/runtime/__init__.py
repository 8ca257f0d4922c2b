"""The model that ships, and the ways to run it.

``inference_model`` is the single place that turns a spec (+ weights) into the graph that export and
latency use, so every figure and every exported file comes from the same graph. ``make_runner`` wraps
that graph in one of the runtime options (eager, channels_last, torch.compile, ONNX Runtime, ...);
``benchmarks/runtime_options.py`` measures them and ``docs/BENCHMARKS.md`` says which one wins and why.

The names import on first use (``archc.lazy``): ``runners`` holds the code, ``names`` the options (no torch).
"""
from ..lazy import lazy_attributes
from .names import BEST_RUNTIME, RUNTIMES

__getattr__, __dir__ = lazy_attributes(__name__, {}, globals(), default="runners")
