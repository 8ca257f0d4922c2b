"""Resource guards: refuse a model too big to hold or to run *before* anything large is allocated.

Both figures come from the builder itself, on the meta device (shapes, no storage), so they can never
drift from what is built and need no per-block formula:

- parameters: ``ArchNet(spec)`` built under ``torch.device("meta")``, counted exactly;
- memory: weights plus the peak of live activations of one inference forward at the requested batch
  and input size, tracked op by op on meta tensors. An attention op counts its N x N score matrix
  (B x heads x N x N), which math and export back ends materialise even where a fused CPU kernel would not.

The limits themselves (options, environment, defaults) live in ``archc.limits``.
"""
from __future__ import annotations

import functools
import weakref
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .errors import SpecError
from .limits import GB, Limits, limits, reset_limits, set_limits  # noqa: F401  (public here too)
from .network import ArchNet
from .spec import load_spec, sized_to_input

# ------------------------------------------------------------------------------------------ counting
def _part_key(name: str) -> str:
    """A top-level module name -> the spec key it comes from (``stages.2`` -> ``stages[2]``)."""
    parts = name.split(".")
    if parts[0] == "stages" and len(parts) > 1:
        return f"stages[{parts[1]}]"
    return {"final_conv": "head", "head": "head", "stem": "stem"}.get(parts[0], parts[0])


@functools.lru_cache(maxsize=8)
def _meta_model(spec) -> nn.Module:
    with torch.device("meta"):
        return ArchNet(spec)


@functools.lru_cache(maxsize=64)
def param_counts(spec) -> Dict[str, int]:
    """Exact parameter count per spec part (``stem``, ``stages[i]``, ``head``), from a meta-device build."""
    counts: Dict[str, int] = {}
    for name, p in _meta_model(spec).named_parameters():
        key = _part_key(name)
        counts[key] = counts.get(key, 0) + p.numel()
    return counts


@functools.lru_cache(maxsize=256)
def expected_macs(spec, size: Optional[Tuple[int, int]] = None) -> int:
    """Multiply-accumulates of one image through the train graph at ``size`` (default: the spec's), counted on the
    meta device by torch's FlopCounterMode (no memory, no arithmetic: ~0.2 s for SA12 at 1024 px). Progress bars
    weight their ETAs by it; the deploy graph has fewer (the folded branches), close enough to rank costs."""
    from torch.utils.flop_counter import FlopCounterMode
    size = tuple(size or spec.input_size)
    if size != tuple(spec.input_size) and sized_to_input(spec):
        spec = load_spec(spec, {"input_size": list(size)})
    model = _meta_model(spec).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(1, spec.in_chans, *size, device="meta"))
    return int(counter.get_total_flops() // 2)


class _PeakMemory(TorchDispatchMode):
    """Live bytes of tensors created during a forward (freed when the last reference goes), and the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.peak_part = ""
        self.part = ""

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        transient = 0
        if "scaled_dot_product" in func.__name__ and len(args) >= 2:
            q, k = args[0], args[1]  # the (B, heads, N, N) score matrix, transient within the op
            transient = q.numel() // max(q.shape[-1], 1) * k.shape[-2] * q.element_size()
        inputs = {id(a) for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t) not in inputs and not t._is_view():
                n = t.numel() * t.element_size()
                self.live += n
                weakref.finalize(t, self._free, n)
        if self.live + transient > self.peak:
            self.peak, self.peak_part = self.live + transient, self.part
        return out


@functools.lru_cache(maxsize=64)
def _activation_peak(spec, size: Tuple[int, int]) -> Tuple[int, str]:
    """Peak live activation bytes of a batch-1 eval forward at ``size``, and the spec part where it occurs."""
    model = _meta_model(spec).eval()
    mode = _PeakMemory()
    hooks = []
    for name, child in list(model.named_children()) + [(f"stages.{i}", s) for i, s in enumerate(model.stages)]:
        if name != "stages":
            hooks.append(child.register_forward_pre_hook(lambda _m, _a, key=_part_key(name): setattr(mode, "part", key)))
    try:
        with torch.no_grad(), mode:
            x = torch.empty(1, spec.in_chans, *size, device="meta")
            mode.live = x.numel() * x.element_size()
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return mode.peak, mode.peak_part


def memory_bytes(spec, batch: int = 1, size: Optional[Tuple[int, int]] = None) -> Dict[str, float]:
    """Weights (float32) and peak inference activations at ``batch`` x ``size`` (default: the spec's)."""
    size = tuple(size or spec.input_size)
    if size != tuple(spec.input_size):
        if sized_to_input(spec):  # its attention biases are sized to input_size: measure the graph built there
            spec = load_spec(spec, {"input_size": list(size)})
    peak, part = _activation_peak(spec, size)
    weights = 4 * sum(param_counts(spec).values())
    return {"weights": weights, "activations": peak * batch, "total": weights + peak * batch, "part": part}


def _fmt(n: float) -> str:
    return f"{n / GB:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def check_params(spec, lim: Optional[Limits] = None) -> int:
    """Raise SpecError naming the largest part if the exact parameter count exceeds the limit."""
    lim = lim or limits()
    counts = param_counts(spec)
    total = sum(counts.values())
    if total > lim.max_params:
        key = max(counts, key=counts.get)
        raise SpecError(f"{total:,} parameters ({counts[key]:,} in {key}) exceed the limit of {lim.max_params:,} "
                        "(--max-params / ARCHC_MAX_PARAMS); reduce widths, depths or expansions",
                        file=spec.source, path=key)
    return total


def check_memory(spec, batch: int = 1, size: Optional[Tuple[int, int]] = None, lim: Optional[Limits] = None,
                 key: str = "input_size") -> Dict[str, float]:
    """Raise SpecError if weights + peak activations at ``batch`` x ``size`` exceed the memory limit.

    ``key`` names the setting that set the size (``input_size``, ``--batch``, ``--resolutions``)."""
    lim = lim or limits()
    check_params(spec, lim)  # a model beyond the parameter limit is refused before its forward is traced
    size = tuple(size or spec.input_size)
    mem = memory_bytes(spec, batch, size)
    if mem["total"] > lim.max_memory:
        raise SpecError(f"needs about {_fmt(mem['total'])} at batch {batch}, {size[0]}x{size[1]} "
                        f"(weights {_fmt(mem['weights'])}, peak activations {_fmt(mem['activations'])}, largest in "
                        f"{mem['part'] or 'the input'}), over the limit of {_fmt(lim.max_memory)} "
                        "(--max-memory GB / ARCHC_MAX_MEMORY_GB); reduce the size, the batch or the widths",
                        file=spec.source, path=key)
    return mem
