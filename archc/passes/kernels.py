"""Kernel lowering: exact rewrites of a deploy graph that change *which kernels run*, not what is computed.

The reparameterization rules (``rules.py``) fold arithmetic away; they are backend-neutral and their
output is what export and analysis see. The rewrites here exist because of how CPU kernel libraries
(oneDNN in torch, MLAS in ONNX Runtime) treat particular shapes, so they are a separate, optional step
(``lower_for_kernels``) applied by the runtimes that measured a gain (``archc.runtime``), and every
one is checked numerically like the pass itself.

``expand_channel_multiplier``: a grouped conv with ``groups == in_channels`` and ``out = m * in``
(FastViT's stride-2 large-kernel downsampling convs and its final 3x3 conv, m = 2) is not a depthwise
conv to oneDNN or MLAS, which fall back to slow generic kernels (1.8 ms for 48 -> 96 channels at
64x64, 7x7, one thread). Repeating each input channel m times (``repeat_interleave``, a copy of the
input) turns it into a true depthwise conv with ``groups == out`` that computes every output channel
from the same input channel with the same weights (the same products; only the kernel's summation
order can differ, ~4e-7 relative on FastViT): 0.32 ms including the copy. Measured with
benchmarks/bench_vs_timm.py; figures in docs/BENCHMARKS.md.

``gelu_channels_last``: torch's GELU on a 4-D channels_last tensor takes a strided kernel about 1.5x
slower than on the same memory viewed as a contiguous NHWC tensor; the rewrite applies GELU to that
view (a free permute) when the input is channels_last, and is a no-op otherwise.
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..ops import node_kind
from .graph import module, module_calls


def repeat_channels(x: torch.Tensor, repeats: int) -> torch.Tensor:
    """Each channel of an NCHW tensor ``repeats`` times in a row (channel c -> c*r .. c*r+r-1), keeping
    the input's memory format (``repeat_interleave`` would return a contiguous tensor)."""
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1)  # a free view: one copy below, and the result stays channels_last
        return nhwc.unsqueeze(4).expand(n, h, w, c, repeats).reshape(n, h, w, c * repeats).permute(0, 3, 1, 2)
    return x.unsqueeze(2).expand(n, c, repeats, h, w).reshape(n, c * repeats, h, w)


torch.fx.wrap("repeat_channels")  # a leaf if a lowered graph's code is ever traced again


def gelu_nhwc(x: torch.Tensor) -> torch.Tensor:
    """GELU (exact erf form) that runs the contiguous kernel on channels_last input."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return F.gelu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return F.gelu(x)


torch.fx.wrap("gelu_nhwc")  # likewise


def expand_channel_multiplier(gm: fx.GraphModule) -> int:
    """Rewrite every conv with ``groups == in_channels > 1`` and ``out = m * in`` (m > 1) into
    ``repeat_channels(x, m)`` followed by a depthwise conv (``groups == out``) with the same weights."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node_kind(node, gm) not in ("conv", "dwconv"):
            continue
        conv = module(gm, node)
        if not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros":
            continue
        cin, cout, g = conv.in_channels, conv.out_channels, conv.groups
        if g != cin or cin <= 1 or cout == cin or cout % cin:
            continue
        if module_calls(gm, str(node.target)) != 1:  # a shared module: rewrite would change its other calls
            continue
        m = cout // cin
        dw = nn.Conv2d(cout, cout, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=cout,
                       bias=conv.bias is not None, dtype=conv.weight.dtype, device=conv.weight.device)
        with torch.no_grad():
            dw.weight.copy_(conv.weight)  # (cout, 1, kh, kw): output channel o still reads input o // m
            if conv.bias is not None:
                dw.bias.copy_(conv.bias)
        _replace_module(gm, str(node.target), dw)
        with gm.graph.inserting_before(node):
            rep = gm.graph.call_function(repeat_channels, (node.args[0], m))
        node.args = (rep,) + tuple(node.args[1:])
        count += 1
    return count


def gelu_channels_last(gm: fx.GraphModule) -> int:
    """Replace GELU modules (exact form) by ``gelu_nhwc``: same function, faster kernel on NHWC input."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node_kind(node, gm) != "activation":
            continue
        mod = module(gm, node)
        if isinstance(mod, nn.GELU) and mod.approximate == "none":
            with gm.graph.inserting_before(node):
                new = gm.graph.call_function(gelu_nhwc, tuple(node.args))
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            count += 1
    return count


#: name -> rewrite (returns how many places it rewrote); archc.runtime.CPU_LOWERINGS says who uses which
LOWERINGS: Dict[str, Callable[[fx.GraphModule], int]] = {
    "expand_channel_multiplier": expand_channel_multiplier,
    "gelu_channels_last": gelu_channels_last,
}


def lower_for_kernels(model: nn.Module, lowerings: Optional[Sequence[str]] = None, *,
                      verify: bool = True, example: Optional[torch.Tensor] = None,
                      tolerance: float = 1e-5) -> fx.GraphModule:
    """A copy of the deploy graph ``model`` with the kernel lowerings applied (all by default).

    With ``verify`` the result is compared with ``model`` on ``example`` (a random input of the spec's
    size by default) and ``LoweringError`` is raised beyond ``tolerance`` relative to max |output|.
    """
    from ..errors import LoweringError
    from .verify import check_equivalence

    names = list(LOWERINGS) if lowerings is None else list(lowerings)
    unknown = [n for n in names if n not in LOWERINGS]
    if unknown:
        raise LoweringError(f"unknown kernel lowering(s) {unknown}; valid: {', '.join(LOWERINGS)}")
    gm = copy.deepcopy(model) if isinstance(model, fx.GraphModule) else fx.symbolic_trace(copy.deepcopy(model))
    gm.eval()
    applied = {name: LOWERINGS[name](gm) for name in names}
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    for attr in ("spec", "reparam_level", "equivalence"):
        if hasattr(model, attr):
            setattr(gm, attr, getattr(model, attr))
    gm.kernel_lowerings = applied
    if verify:
        spec = getattr(model, "spec", None)
        if example is None:
            from ..analysis.profile import example_input
            size = tuple(spec.input_size) if spec is not None else (224, 224)
            example = example_input(size, spec.in_chans if spec is not None else 3)
        eq = check_equivalence(model, gm, example, tolerance=tolerance)
        if not eq.ok:
            raise LoweringError(f"kernel lowering changed the function: {eq.describe()}")
    return gm


def _replace_module(gm: fx.GraphModule, target: str, new: nn.Module) -> None:
    parent_name, _, leaf = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, leaf, new)


__all__ = ["LOWERINGS", "expand_channel_multiplier", "gelu_channels_last", "gelu_nhwc", "lower_for_kernels",
           "repeat_channels"]
