"""torch.fx helpers the rewrite rules share: reading a node as a conv, tracking a channel axis through
layout ops, creating folded modules with stable names, and replacing nodes."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.fx as fx
import torch.nn as nn

from ..ops import moves_axes
from .algebra import ConvW, affine_as_conv, bn_affine

REPARAM = "reparam_conv"


# ------------------------------------------------------------------------------------ node queries
def module(gm: fx.GraphModule, node: fx.Node) -> Optional[nn.Module]:
    if node.op != "call_module":
        return None
    return gm.get_submodule(str(node.target))


def is_module(gm: fx.GraphModule, node, cls) -> bool:
    return isinstance(node, fx.Node) and isinstance(module(gm, node), cls)


def is_shape_use(node: fx.Node) -> bool:
    """A user that reads only metadata (``x.shape``, ``x.size()``, ``x.dim()``), never values."""
    if node.op == "call_function" and node.target is getattr and len(node.args) > 1:
        return node.args[1] in ("shape", "dtype", "device", "ndim")
    return node.op == "call_method" and node.target in ("size", "dim")


def value_users(node: fx.Node) -> List[fx.Node]:
    return [u for u in node.users if not is_shape_use(u)]


def sole_user(node: fx.Node) -> Optional[fx.Node]:
    users = value_users(node)
    return users[0] if len(users) == 1 else None


def module_calls(gm: fx.GraphModule, target: str) -> int:
    return sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target == target)


def shape(node: fx.Node) -> Optional[Tuple[int, ...]]:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def constant(gm: fx.GraphModule, node) -> Optional[torch.Tensor]:
    """The tensor behind a ``get_attr`` node (a parameter or buffer), or behind a ``view`` of one with
    constant sizes (``gamma.view(1, -1, 1, 1)``, EfficientFormer's 2-D layer scale), else None.

    ``reshape`` would be as exact (it would also fold timm-named PoolFormer's ``layer_scale2``), but it
    changes PoolFormer deploy graphs that the shipped iphone12pro profile was fitted on; enabling it
    needs that profile refitted, so it is left off here."""
    if (isinstance(node, fx.Node) and node.op == "call_method" and node.target == "view"
            and node.args and not any(isinstance(a, fx.Node) for a in node.args[1:]) and not node.kwargs):
        base = constant(gm, node.args[0])
        return getattr(base, str(node.target))(*node.args[1:]) if base is not None else None
    if isinstance(node, fx.Node) and node.op == "get_attr":
        obj = gm
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        return obj if isinstance(obj, torch.Tensor) else None
    return None


def conv_of(gm: fx.GraphModule, node) -> Optional[Tuple[fx.Node, ConvW, str]]:
    """Read ``node`` as a conv branch ``(input, ConvW, source name)``: a Conv2d, or a BatchNorm2d on its own
    (a per-channel affine map, i.e. a 1x1 depthwise conv). Only convs reparameterization can combine."""
    mod = module(gm, node)
    if isinstance(mod, nn.Conv2d):
        k, s, p, d = mod.kernel_size, mod.stride, mod.padding, mod.dilation
        if (isinstance(p, str) or k[0] != k[1] or s[0] != s[1] or p[0] != p[1] or d != (1, 1)
                or mod.padding_mode != "zeros" or len(node.args) != 1 or node.kwargs):
            return None
        bias = mod.bias if mod.bias is not None else torch.zeros(mod.out_channels)
        return node.args[0], ConvW(mod.weight.detach().double(), bias.detach().double(), s[0], p[0], mod.groups), str(node.target)
    if isinstance(mod, nn.BatchNorm2d) and not mod.training and mod.track_running_stats and len(node.args) == 1:
        scale, shift = bn_affine(mod.running_mean, mod.running_var, mod.weight, mod.bias, mod.eps)
        return node.args[0], affine_as_conv(scale, shift, 1, mod.num_features), str(node.target)
    return None


def bn_scale_shift(mod: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    return bn_affine(mod.running_mean, mod.running_var, mod.weight, mod.bias, mod.eps)


# ------------------------------------------------------------------------------- channel tracking
def _norm_dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def track_axis(chain: Sequence[fx.Node], axis: int) -> Optional[int]:
    """Follow tensor axis ``axis`` through layout ops (transpose, permute, flatten, reshape, view);
    return where it ends up, or None if an op mixes it with other axes. Uses propagated shapes."""
    for node in chain:
        src = node.args[0] if node.args else None
        in_shape, out_shape = shape(src) if isinstance(src, fx.Node) else None, shape(node)
        if in_shape is None or out_shape is None:
            return None
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if name == "transpose":
            d0, d1 = (_norm_dim(int(a), len(in_shape)) for a in node.args[1:3])
            axis = d1 if axis == d0 else d0 if axis == d1 else axis
        elif name == "permute":
            dims = node.args[1:] if not isinstance(node.args[1], (list, tuple)) else node.args[1]
            dims = [_norm_dim(int(d), len(in_shape)) for d in dims]
            axis = dims.index(axis)
        elif name == "mean":
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
            if dims is None:
                return None
            dims = [_norm_dim(int(d), len(in_shape)) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
            if axis in dims:
                return None
            axis = axis if keep else axis - sum(1 for d in dims if d < axis)
        elif name in ("flatten", "reshape", "view", "unflatten", "contiguous"):
            before = math.prod(in_shape[:axis])
            found = [a for a in range(len(out_shape))
                     if math.prod(out_shape[:a]) == before and out_shape[a] == in_shape[axis]]
            if len(found) != 1:
                return None
            axis = found[0]
        else:
            return None
    return axis


def is_layout(node: fx.Node) -> bool:
    """A layout op whose axis moves ``track_axis`` follows (the shared table's ``archc.ops.moves_axes``)."""
    return moves_axes(node)


def commutes_with_channel_affine(node: fx.Node) -> bool:
    """Layout ops, and means over other axes (weights summing to one), pass a per-channel affine map through
    unchanged; ``track_axis`` then checks the channel axis really survives."""
    return is_layout(node) or (node.op == "call_method" and node.target == "mean")


def per_channel(const: torch.Tensor, operand_ndim: int, axis: int) -> Optional[torch.Tensor]:
    """If ``const`` broadcast against an ``operand_ndim``-D tensor varies only along ``axis``, return it as
    a vector (length 1 means a scalar)."""
    offset = operand_ndim - const.dim()
    if offset < 0:
        return None
    for d in range(const.dim()):
        if offset + d != axis and const.shape[d] != 1:
            return None
    return const.reshape(-1)


# ------------------------------------------------------------------------------------ rewriting
def common_name(sources: Sequence[str]) -> str:
    """Name for a module folded from ``sources``: their common module path (a single source: its parent)
    plus ``.reparam_conv``, the name timm and Apple give a block's folded conv."""
    parts = [s.split(".") for s in sources if s]
    if not parts:
        return REPARAM
    if len(parts) == 1:
        prefix = parts[0][:-1]
    else:
        prefix = []
        for items in zip(*parts):
            if len(set(items)) != 1:
                break
            prefix.append(items[0])
    return ".".join(prefix + [REPARAM])


def conv_module(c: ConvW, dtype: torch.dtype) -> nn.Conv2d:
    out_c, in_per, k, _ = c.weight.shape
    # made in ``dtype`` from the start: copying float64 folds into a float32 conv would round them
    conv = nn.Conv2d(in_per * c.groups, out_c, k, c.stride, c.padding, groups=c.groups, bias=True, dtype=dtype)
    with torch.no_grad():
        conv.weight.copy_(c.weight.to(dtype))
        conv.bias.copy_(c.bias.to(dtype))
    return conv.eval()


def set_module(gm: fx.GraphModule, name: str, mod: nn.Module, free: Sequence[fx.Node] = ()) -> str:
    """Register ``mod`` at ``name`` unless a live node other than ``free`` still calls that name."""
    base, i = name, 0
    while True:
        users = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == name and n not in free]
        if not users:
            break
        i += 1
        name = f"{base}_{i}"
    gm.add_submodule(name, mod)
    return name


def insert_call(gm: fx.GraphModule, before: fx.Node, name: str, arg: fx.Node, like: fx.Node) -> fx.Node:
    with gm.graph.inserting_before(before):
        new = gm.graph.call_module(name, (arg,))
    new.meta = {k: v for k, v in like.meta.items() if k in ("tensor_meta", "nn_module_stack")}
    return new


def replace_node(gm: fx.GraphModule, old: fx.Node, new: fx.Node) -> None:
    """Point ``old``'s users at ``new`` and erase whatever became dead (only around ``old``: a full
    dead-code sweep per rewrite would make the pass quadratic)."""
    old.replace_all_uses_with(new)
    work = [old]
    while work:
        node = work.pop()
        if node.users or node.op in ("placeholder", "output") or node.graph is not gm.graph:
            continue
        inputs = list(node.all_input_nodes)
        gm.graph.erase_node(node)
        work.extend(inputs)


def dtype_of(gm: fx.GraphModule) -> torch.dtype:
    for p in gm.parameters():
        return p.dtype
    return torch.float32
