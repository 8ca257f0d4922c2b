"""Reparameterization rewrite rules: data (name, root op, rewrite function), applied to a fixpoint.

Each rewrite function looks at one root node, checks that folding is *exact* there, rewrites and
returns True, or leaves the graph untouched and returns False. The weight algebra is in
``algebra.py``; graph plumbing in ``graph.py``.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn as nn

from . import algebra as alg
from .graph import (bn_scale_shift, common_name, commutes_with_channel_affine, constant, conv_module, conv_of, dtype_of, insert_call,
                    is_layout, is_module, module, module_calls, per_channel, replace_node,
                    set_module, shape, sole_user, track_axis, value_users)


@dataclass(frozen=True)
class Rule:
    name: str
    root: str  # the op kind that anchors the pattern: batchnorm, add, mul, dropout, sub
    rewrite: Callable[["Context", fx.Node], bool]
    doc: str


@dataclass
class Context:
    gm: fx.GraphModule
    in_scope: Callable[[fx.Node], bool]  # which nodes this run may rewrite (all, or the reference blocks)

    @property
    def dtype(self) -> torch.dtype:
        return dtype_of(self.gm)


def root_kind(gm: fx.GraphModule, node: fx.Node) -> Optional[str]:
    if node.op == "call_module":
        mod = module(gm, node)
        if isinstance(mod, nn.BatchNorm2d):
            return "batchnorm"
        if isinstance(mod, (nn.Dropout, nn.Identity)):
            return "dropout"
        return None
    if node.op in ("call_function", "call_method"):
        t = node.target
        if t in (operator.add, torch.add, "add"):
            return "add"
        if t in (operator.sub, torch.sub, "sub"):
            return "sub"
        if t in (operator.mul, torch.mul, "mul"):
            return "mul"
    return None


# --------------------------------------------------------------------------------------- rules
def fold_bn_into_conv(ctx: Context, bn: fx.Node) -> bool:
    """conv -> BN (the conv used only by the BN) becomes one conv with bias: exact, BN is per-channel affine."""
    gm = ctx.gm
    src = bn.args[0] if bn.args else None
    if not (isinstance(src, fx.Node) and sole_user(src) is bn and len(src.users) == 1):
        return False
    view = conv_of(gm, src)
    if view is None or not is_module(gm, src, nn.Conv2d) or module_calls(gm, str(src.target)) != 1:
        return False
    x, conv, name = view
    scale, shift = bn_scale_shift(module(gm, bn))
    folded = alg.fold_affine_after_conv(conv, scale, shift)
    new_name = set_module(gm, name, conv_module(folded, ctx.dtype), free=(src,))
    new = insert_call(gm, bn, new_name, x, bn)
    replace_node(gm, bn, new)
    return True


def _terms(ctx: Context, node: fx.Node):
    """Ways to read an operand: as a conv branch of its input, and as the identity of itself."""
    view = conv_of(ctx.gm, node)
    if view is not None and len(node.users) == 1:
        yield view[0], view[1], view[2], True
    ch = shape(node)
    if ch is not None and len(ch) == 4:
        yield node, alg.identity_conv(ch[1], 1, ch[1]), "", False


def merge_parallel_convs(ctx: Context, n: fx.Node) -> bool:
    """a(x) +/- b(x), each a conv, a lone BN, or x itself, becomes one conv (kernels padded to the larger,
    groups to the coarser): MobileOne branches, the large-kernel branch pair, RepMixer's mixer - norm,
    and the RepMixer/RepCPE skip ``x + conv(x)`` all go through here. Exact for centred odd kernels with
    equal stride: zero padding contributes nothing to any branch."""
    if len(n.args) != 2 or n.kwargs or not all(isinstance(a, fx.Node) for a in n.args):
        return False
    a, b = n.args
    if a is b:
        return False
    sign = -1.0 if root_kind(ctx.gm, n) == "sub" else 1.0
    for xa, ca, na, used_a in _terms(ctx, a):
        for xb, cb, nb, used_b in _terms(ctx, b):
            if xa is not xb or not (used_a or used_b):
                continue  # need one input, and at least one real conv (identity + identity is 2x)
            if not alg.aligned(ca, cb):
                continue
            merged = alg.add_convs(ca, cb, sign)
            consumed = [op for op, used in ((a, used_a), (b, used_b)) if used]
            name = set_module(ctx.gm, common_name([s for s in (na, nb) if s]), conv_module(merged, ctx.dtype),
                              free=consumed)
            new = insert_call(ctx.gm, n, name, xa, n)
            replace_node(ctx.gm, n, new)
            return True
    return False


def _scale_operand(ctx: Context, n: fx.Node) -> Optional[Tuple[fx.Node, fx.Node, torch.Tensor]]:
    """For ``x * c`` / ``c * x`` with a constant ``c``: (x, the get_attr node, c)."""
    if len(n.args) != 2 or n.kwargs:
        return None
    for x, c in (n.args, n.args[::-1]):
        t = constant(ctx.gm, c)
        if isinstance(x, fx.Node) and t is not None:
            return x, c, t
    return None


def fold_scale(ctx: Context, n: fx.Node) -> bool:
    """A per-channel constant scale (layer scale) after a conv, a linear (through layout ops that keep
    the channel axis), or another constant scale is folded into it."""
    gm = ctx.gm
    found = _scale_operand(ctx, n)
    if found is None:
        return False
    x, c_node, c = found
    x_shape = shape(x)
    if x_shape is None or len(value_users(x)) != 1 or len(x.users) != 1:
        return False
    if is_module(gm, x, nn.Conv2d) and module_calls(gm, str(x.target)) == 1:
        vec = per_channel(c, len(x_shape), 1)
        if vec is None:
            return False
        mod = module(gm, x)
        w, b = alg.fold_scale_into_rows(mod.weight.detach(), mod.bias.detach() if mod.bias is not None else None,
                                        vec.expand(mod.out_channels))
        return _retarget_with_weights(ctx, x, n, w, b)
    # linear -> layout ops -> mul: scale the linear's output rows
    chain: List[fx.Node] = []
    cur = x
    while is_layout(cur) and len(value_users(cur)) == 1 and len(cur.users) == 1:
        chain.append(cur)
        cur = cur.args[0]
    if chain and is_module(gm, cur, nn.Linear) and len(cur.users) == 1 and module_calls(gm, str(cur.target)) == 1:
        out_shape = shape(cur)
        axis = track_axis(list(reversed(chain)), len(out_shape) - 1) if out_shape else None
        vec = per_channel(c, len(x_shape), axis) if axis is not None else None
        if vec is None:
            return False
        mod = module(gm, cur)
        w, b = alg.fold_scale_into_rows(mod.weight.detach(), mod.bias.detach() if mod.bias is not None else None,
                                        vec.expand(mod.out_features))
        return _retarget_with_weights(ctx, cur, n, w, b, result=x)
    # scale of a scale: multiply the constants
    inner = _scale_operand(ctx, x) if root_kind(gm, x) == "mul" else None
    shared = sum(1 for m in gm.graph.nodes if m.op == "get_attr" and m.target == c_node.target) > 1
    if inner is not None and not shared:
        y, c2_node, c2 = inner
        product = (c.detach().double() * c2.detach().double()).to(c.dtype)
        name = str(c_node.target)
        _set_constant(gm, name, product)
        with gm.graph.inserting_before(n):
            c_new = gm.graph.get_attr(name)
            new = gm.graph.call_function(operator.mul, (y, c_new))
        new.meta = dict(n.meta)
        replace_node(gm, n, new)
        return True
    return False


def _set_constant(gm: fx.GraphModule, name: str, value: torch.Tensor) -> None:
    owner_path, _, attr = name.rpartition(".")
    owner = gm.get_submodule(owner_path) if owner_path else gm
    if isinstance(getattr(owner, attr, None), nn.Parameter):
        setattr(owner, attr, nn.Parameter(value.clone(), requires_grad=False))
    else:
        owner.register_buffer(attr, value.clone())


def _retarget_with_weights(ctx: Context, producer: fx.Node, root: fx.Node, w: torch.Tensor, b: torch.Tensor,
                           result: Optional[fx.Node] = None) -> bool:
    """Give ``producer``'s module new weights (it has no other caller), then drop ``root``."""
    set_weights(module(ctx.gm, producer), w, b)
    replace_node(ctx.gm, root, result if result is not None else producer)
    return True


def set_weights(mod: nn.Module, w: torch.Tensor, b: torch.Tensor) -> None:
    """Overwrite a conv/linear's weight and bias (creating the bias if it had none), keeping its dtype."""
    with torch.no_grad():
        mod.weight.copy_(w.to(mod.weight.dtype))
        if mod.bias is None:
            mod.bias = nn.Parameter(b.to(mod.weight.dtype))
        else:
            mod.bias.copy_(b.to(mod.weight.dtype))


def fold_bn_into_next_linear(ctx: Context, bn: fx.Node) -> bool:
    """BN whose only consumer is an unpadded 1x1 conv or (through layout ops and means that keep the
    channel axis) a linear layer folds into that consumer's input columns: the attention pre-norm into
    qkv, a MetaFormer mlp pre-norm into fc1, a head norm through global pooling into the classifier.
    Never into a padded conv: at the border the padding would see BN's shift."""
    gm = ctx.gm
    users = value_users(bn)
    if len(users) != 1:
        return False
    x = bn.args[0]
    mod_bn = module(gm, bn)
    scale, shift = bn_scale_shift(mod_bn)
    user = users[0]
    chain: List[fx.Node] = []
    while commutes_with_channel_affine(user) and len(value_users(user)) == 1 and len(user.users) == 1:
        chain.append(user)
        user = value_users(user)[0]
    if user.op != "call_module" or module_calls(gm, str(user.target)) != 1:
        return False
    target = module(gm, user)
    if isinstance(target, nn.Conv2d) and not chain:
        if (target.kernel_size != (1, 1) or target.padding not in ((0, 0), 0) or target.groups != 1
                or user.args[0] is not bn):
            return False
    elif isinstance(target, nn.Linear) and chain:
        bn_shape = shape(bn)
        if bn_shape is None or track_axis(chain, 1) != len(shape(chain[-1])) - 1 or user.args[0] is not chain[-1]:
            return False
    else:
        return False
    w, b = alg.fold_affine_before_linear(target.weight.detach(), target.bias.detach() if target.bias is not None
                                         else None, scale, shift)
    set_weights(target, w, b)
    replace_node(gm, bn, x)
    return True


def fold_bn_through_pool_mixer(ctx: Context, n: fx.Node) -> bool:
    """``avgpool(bn(x)) - bn(x)`` with padding excluded from the average equals ``s * (avgpool(x) - x)``:
    the pooling weights sum to one everywhere, so BN's shift cancels exactly and only its scale remains."""
    gm = ctx.gm
    if len(n.args) != 2 or not all(isinstance(a, fx.Node) for a in n.args):
        return False
    pooled, bn = n.args
    if not (is_module(gm, bn, nn.BatchNorm2d) and is_module(gm, pooled, nn.AvgPool2d) and pooled.args[0] is bn):
        return False
    pool = module(gm, pooled)
    if pool.count_include_pad or pool.divisor_override is not None or set(value_users(bn)) != {pooled, n}:
        return False
    if len(pooled.users) != 1:
        return False
    x = bn.args[0]
    scale, _ = bn_scale_shift(module(gm, bn))
    name = str(bn.target).replace(".", "_") + "_scale"
    gm.register_buffer(name, scale.to(ctx.dtype).reshape(-1, 1, 1))
    pooled.args = (x,)
    with gm.graph.inserting_before(n):
        diff = gm.graph.call_function(operator.sub, (pooled, x))
        c = gm.graph.get_attr(name)
        new = gm.graph.call_function(operator.mul, (diff, c))
    diff.meta = dict(n.meta)
    new.meta = dict(n.meta)
    replace_node(gm, n, new)
    return True


def drop_identity(ctx: Context, n: fx.Node) -> bool:
    """Dropout and Identity are no-ops in an eval-mode deploy graph."""
    if len(n.args) != 1 or not isinstance(n.args[0], fx.Node) or module(ctx.gm, n).training:
        return False
    replace_node(ctx.gm, n, n.args[0])
    return True


#: the rules, in the order each sweep tries them
RULES: Tuple[Rule, ...] = (
    Rule("drop_identity", "dropout", drop_identity, drop_identity.__doc__),
    Rule("fold_bn_into_conv", "batchnorm", fold_bn_into_conv, fold_bn_into_conv.__doc__),
    Rule("merge_parallel_convs", "add", merge_parallel_convs, merge_parallel_convs.__doc__),
    Rule("merge_parallel_convs", "sub", merge_parallel_convs, merge_parallel_convs.__doc__),
    Rule("fold_bn_through_pool_mixer", "sub", fold_bn_through_pool_mixer, fold_bn_through_pool_mixer.__doc__),
    Rule("fold_scale", "mul", fold_scale, fold_scale.__doc__),
    Rule("fold_bn_into_next_linear", "batchnorm", fold_bn_into_next_linear, fold_bn_into_next_linear.__doc__),
)
