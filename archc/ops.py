"""One classification of torch.fx nodes into op kinds, shared by the rewrite rules (``archc.passes.rules``),
the kernel lowerings (``archc.passes.kernels``) and the analyses (``archc.analysis.profile``).

Why one table: a rule that folds "a linear layer", a lowering that rewrites "a depthwise conv" and a profile
row that counts "a layout op" must agree on what those words mean, or a new op (a torch function, a module
type) is folded by one and mis-counted by another. Modules are classified by type, functions and methods by
target; anything not listed keeps its own name (a new op shows up in a histogram rather than vanishing).
"""
from __future__ import annotations

import operator
from typing import Mapping, Optional, Tuple, Union

import torch
import torch.fx as fx
import torch.nn as nn

#: op kinds that only reinterpret or index a tensor: no arithmetic, no memory traffic counted
LAYOUT_KINDS = {"layout"}

MODULE_KINDS: Tuple[Tuple[type, str], ...] = (
    (nn.Conv2d, "conv"), (nn.Linear, "linear"), (nn.BatchNorm2d, "batchnorm"), (nn.GroupNorm, "groupnorm"),
    (nn.LayerNorm, "layernorm"), (nn.AvgPool2d, "pool"), (nn.MaxPool2d, "pool"), (nn.AdaptiveAvgPool2d, "pool"),
    (nn.GELU, "activation"), (nn.ReLU, "activation"), (nn.SiLU, "activation"), (nn.Hardswish, "activation"),
    (nn.Sigmoid, "activation"), (nn.Dropout, "dropout"), (nn.Identity, "layout"),
)
FUNCTION_KINDS = {
    operator.add: "add", operator.iadd: "add", torch.add: "add", operator.sub: "sub", torch.sub: "sub",
    operator.mul: "mul", torch.mul: "mul", operator.truediv: "div", torch.div: "div", operator.getitem: "layout",
    torch.flatten: "layout", torch.transpose: "layout", torch.reshape: "layout", torch.permute: "layout",
    torch.nn.functional.scaled_dot_product_attention: "attention", torch.matmul: "matmul",
    operator.matmul: "matmul", torch.nn.functional.gelu: "activation", torch.sigmoid: "activation",
    torch.softmax: "softmax", torch.nn.functional.conv2d: "conv", torch.nn.functional.linear: "linear",
    torch.cat: "concat", getattr: "layout",
}
METHOD_KINDS = {
    "flatten": "layout", "transpose": "layout", "reshape": "layout", "permute": "layout", "view": "layout",
    "unflatten": "layout", "contiguous": "layout", "size": "layout", "mean": "reduce", "add": "add",
    "sub": "sub", "mul": "mul", "div": "div", "softmax": "softmax", "sigmoid": "activation", "unbind": "layout",
    "split": "layout", "unsqueeze": "layout",
}

#: layout ops whose effect on a tensor axis ``archc.passes.graph.track_axis`` can follow
AXIS_METHODS = ("transpose", "permute", "flatten", "reshape", "view", "unflatten", "contiguous")
AXIS_FUNCTIONS = (torch.flatten, torch.transpose, torch.reshape, torch.permute)

Modules = Union[Mapping[str, nn.Module], fx.GraphModule]


def _module(node: fx.Node, modules: Modules) -> Optional[nn.Module]:
    if isinstance(modules, fx.GraphModule):
        return modules.get_submodule(str(node.target))
    return modules[str(node.target)]


def node_kind(node: fx.Node, modules: Modules) -> str:
    """The op kind of ``node``: ``conv``/``dwconv``, ``linear``, ``batchnorm``, ``layernorm``, ``add``, ``mul``,
    ``div``, ``matmul``, ``layout``, ... (``modules``: a GraphModule or its ``named_modules()`` dict)."""
    if node.op == "call_module":
        mod = _module(node, modules)
        for cls, kind in MODULE_KINDS:
            if isinstance(mod, cls):
                if kind == "conv" and mod.groups > 1 and mod.groups == mod.in_channels:
                    return "dwconv"
                return kind
        return type(mod).__name__.lower()
    if node.op == "call_function":
        return FUNCTION_KINDS.get(node.target, getattr(node.target, "__name__", str(node.target)))
    if node.op == "call_method":
        return METHOD_KINDS.get(str(node.target), str(node.target))
    return node.op


def moves_axes(node: fx.Node) -> bool:
    """A layout op that keeps every element but may move axes (what channel tracking can follow)."""
    if node.op == "call_method":
        return node.target in AXIS_METHODS
    return node.op == "call_function" and node.target in AXIS_FUNCTIONS


__all__ = ["AXIS_FUNCTIONS", "AXIS_METHODS", "FUNCTION_KINDS", "LAYOUT_KINDS", "METHOD_KINDS", "MODULE_KINDS",
           "moves_axes", "node_kind"]
