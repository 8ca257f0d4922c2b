"""Reparameterization rewrite rules: data (name, root op, rewrite function), applied to a fixpoint.

Each rewrite function looks at one root node, checks that folding is *exact* there, rewrites and
returns True, or leaves the graph untouched and returns False. The weight algebra is in
``algebra.py``; graph plumbing in ``graph.py``.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn as nn

from ..ops import node_kind
from . import algebra as alg
from .graph import (bn_scale_shift, common_name, commutes_with_channel_affine, constant, conv_module, conv_of, dtype_of, insert_call,
                    is_layout, is_module, module, module_calls, per_channel, replace_node,
                    set_module, shape, sole_user, track_axis, value_users)


Captures = Dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """A rewrite rule: ``match`` looks at one root node and returns what it captured (or None) without
    touching the graph; ``apply`` performs the rewrite from those captures. Keeping the two apart lets the
    pass list what would still fire (the fixpoint invariant) and lets debug mode name the rule at fault."""

    name: str
    roots: Tuple[str, ...]  # op kinds (``archc.ops.node_kind``) that anchor the pattern
    match: Callable[["Context", fx.Node], Optional[Captures]]
    apply: Callable[["Context", Captures], None]
    doc: str
    calls_only: bool = False  # roots must be module calls (drop_identity: Identity shares the layout kind)

    def rewrite(self, ctx: "Context", node: fx.Node) -> bool:
        """Match and, if it matched, apply; True when the graph changed."""
        found = self.match(ctx, node)
        if found is None:
            return False
        self.apply(ctx, found)
        return True


@dataclass
class Context:
    gm: fx.GraphModule
    in_scope: Callable[[fx.Node], bool]  # which nodes this run may rewrite (all, or the reference blocks)

    @property
    def dtype(self) -> torch.dtype:
        return dtype_of(self.gm)


def root_kind(gm: fx.GraphModule, node: fx.Node) -> Optional[str]:
    """The node's op kind from the shared table (``archc.ops``), or None for placeholders and constants."""
    if node.op not in ("call_module", "call_function", "call_method"):
        return None
    return node_kind(node, gm)


# --------------------------------------------------------------------------------------- rules
def match_bn_into_conv(ctx: Context, bn: fx.Node) -> Optional[Captures]:
    gm = ctx.gm
    src = bn.args[0] if bn.args else None
    if not (isinstance(src, fx.Node) and sole_user(src) is bn and len(src.users) == 1):
        return None
    view = conv_of(gm, src)
    if view is None or not is_module(gm, src, nn.Conv2d) or module_calls(gm, str(src.target)) != 1:
        return None
    return {"bn": bn, "conv": src, "view": view}


def apply_bn_into_conv(ctx: Context, c: Captures) -> None:
    """conv -> BN (the conv used only by the BN) becomes one conv with bias: exact, BN is per-channel affine."""
    gm, bn = ctx.gm, c["bn"]
    x, conv, name = c["view"]
    scale, shift = bn_scale_shift(module(gm, bn))
    folded = alg.fold_affine_after_conv(conv, scale, shift)
    new_name = set_module(gm, name, conv_module(folded, ctx.dtype), free=(c["conv"],))
    new = insert_call(gm, bn, new_name, x, bn)
    replace_node(gm, bn, new)


def _terms(ctx: Context, node: fx.Node):
    """Ways to read an operand: as a conv branch of its input, and as the identity of itself."""
    view = conv_of(ctx.gm, node)
    if view is not None and len(node.users) == 1:
        yield view[0], view[1], view[2], True
    ch = shape(node)
    if ch is not None and len(ch) == 4:
        yield node, alg.identity_conv(ch[1], 1, ch[1]), "", False


def match_parallel_convs(ctx: Context, n: fx.Node) -> Optional[Captures]:
    if len(n.args) != 2 or n.kwargs or not all(isinstance(a, fx.Node) for a in n.args):
        return None
    a, b = n.args
    if a is b:
        return None
    sign = -1.0 if root_kind(ctx.gm, n) == "sub" else 1.0
    for xa, ca, na, used_a in _terms(ctx, a):
        for xb, cb, nb, used_b in _terms(ctx, b):
            if xa is not xb or not (used_a or used_b):
                continue  # need one input, and at least one real conv (identity + identity is 2x)
            if not alg.aligned(ca, cb):
                continue
            consumed = [op for op, used in ((a, used_a), (b, used_b)) if used]
            return {"root": n, "x": xa, "a": ca, "b": cb, "sign": sign, "names": [s for s in (na, nb) if s],
                    "consumed": consumed}
    return None


def apply_parallel_convs(ctx: Context, c: Captures) -> None:
    """a(x) +/- b(x), each a conv, a lone BN, or x itself, becomes one conv (kernels padded to the larger,
    groups to the coarser): MobileOne branches, the large-kernel branch pair, RepMixer's mixer - norm,
    and the RepMixer/RepCPE skip ``x + conv(x)`` all go through here. Exact for centred odd kernels with
    equal stride: zero padding contributes nothing to any branch."""
    merged = alg.add_convs(c["a"], c["b"], c["sign"])
    name = set_module(ctx.gm, common_name(c["names"]), conv_module(merged, ctx.dtype), free=c["consumed"])
    new = insert_call(ctx.gm, c["root"], name, c["x"], c["root"])
    replace_node(ctx.gm, c["root"], new)


def _scale_operand(ctx: Context, n: fx.Node) -> Optional[Tuple[fx.Node, fx.Node, torch.Tensor]]:
    """For ``x * c`` / ``c * x`` with a constant tensor ``c`` (possibly a view of one): (x, c's node, c)."""
    if len(n.args) != 2 or n.kwargs:
        return None
    for x, c in (n.args, n.args[::-1]):
        t = constant(ctx.gm, c)
        if isinstance(x, fx.Node) and t is not None:
            return x, c, t
    return None


def _number_operand(ctx: Context, n: fx.Node) -> Optional[Tuple[fx.Node, float]]:
    """For ``x * s``, ``s * x`` or ``x / s`` with a Python number ``s``: (x, the factor)."""
    if len(n.args) != 2 or n.kwargs:
        return None
    a, b = n.args
    kind = root_kind(ctx.gm, n)
    if kind == "div":
        return (a, 1.0 / float(b)) if isinstance(a, fx.Node) and isinstance(b, (int, float)) and b != 0 else None
    for x, s in ((a, b), (b, a)):
        if isinstance(x, fx.Node) and isinstance(s, (int, float)) and not isinstance(s, bool):
            return x, float(s)
    return None


def _linear_through_layout(ctx: Context, x: fx.Node) -> Optional[Tuple[fx.Node, List[fx.Node]]]:
    """``x`` as linear -> layout ops (each with one user): (the linear node, the chain), else None."""
    gm = ctx.gm
    chain: List[fx.Node] = []
    cur = x
    while is_layout(cur) and len(value_users(cur)) == 1 and len(cur.users) == 1:
        chain.append(cur)
        cur = cur.args[0]
    if is_module(gm, cur, nn.Linear) and len(cur.users) == 1 and module_calls(gm, str(cur.target)) == 1:
        return cur, list(reversed(chain))
    return None


def match_scale(ctx: Context, n: fx.Node) -> Optional[Captures]:
    gm = ctx.gm
    found = _scale_operand(ctx, n)
    number = None if found is not None else _number_operand(ctx, n)
    if found is None and number is None:
        return None
    if found is not None:
        x, c_node, c = found
    else:
        x, factor = number
        c_node, c = None, torch.tensor(factor, dtype=torch.float64)
    x_shape = shape(x)
    if x_shape is None or len(value_users(x)) != 1 or len(x.users) != 1:
        return None
    if is_module(gm, x, nn.Conv2d) and module_calls(gm, str(x.target)) == 1:
        vec = per_channel(c, len(x_shape), 1)
        if vec is None:
            return None
        return {"root": n, "producer": x, "vec": vec.expand(module(gm, x).out_channels), "result": None}
    # linear -> layout ops (possibly none) -> mul: scale the linear's output rows
    lin = _linear_through_layout(ctx, x)
    if lin is not None:
        cur, chain = lin
        out_shape = shape(cur)
        axis = track_axis(chain, len(out_shape) - 1) if out_shape else None
        vec = per_channel(c, len(x_shape), axis) if axis is not None else None
        if vec is None:
            return None
        return {"root": n, "producer": cur, "vec": vec.expand(module(gm, cur).out_features), "result": x}
    # scale of a scale: multiply the constants (stored tensors only)
    if c_node is None or c_node.op != "get_attr":
        return None
    inner = _scale_operand(ctx, x) if root_kind(gm, x) == "mul" else None
    shared = sum(1 for m in gm.graph.nodes if m.op == "get_attr" and m.target == c_node.target) > 1
    if inner is not None and not shared and inner[1].op == "get_attr":
        return {"root": n, "inner": inner, "c_node": c_node, "c": c}
    return None


def apply_scale(ctx: Context, c: Captures) -> None:
    """A per-channel constant scale (a layer scale, or a number such as the 1/2 averaging two heads) after
    a conv, a linear (through layout ops that keep the channel axis), or another constant scale is folded
    into it."""
    gm, n = ctx.gm, c["root"]
    if "inner" in c:
        y, _, c2 = c["inner"]
        product = (c["c"].detach().double() * c2.detach().double()).to(c["c"].dtype)
        name = str(c["c_node"].target)
        _set_constant(gm, name, product)
        with gm.graph.inserting_before(n):
            c_new = gm.graph.get_attr(name)
            new = gm.graph.call_function(operator.mul, (y, c_new))
        new.meta = dict(n.meta)
        replace_node(gm, n, new)
        return
    mod = module(gm, c["producer"])
    w, b = alg.fold_scale_into_rows(mod.weight.detach(), mod.bias.detach() if mod.bias is not None else None,
                                    c["vec"])
    set_weights(mod, w, b)
    replace_node(gm, n, c["result"] if c["result"] is not None else c["producer"])


def _set_constant(gm: fx.GraphModule, name: str, value: torch.Tensor) -> None:
    owner_path, _, attr = name.rpartition(".")
    owner = gm.get_submodule(owner_path) if owner_path else gm
    if isinstance(getattr(owner, attr, None), nn.Parameter):
        setattr(owner, attr, nn.Parameter(value.clone(), requires_grad=False))
    else:
        owner.register_buffer(attr, value.clone())


def set_weights(mod: nn.Module, w: torch.Tensor, b: torch.Tensor) -> None:
    """Overwrite a conv/linear's weight and bias (creating the bias if it had none), keeping its dtype."""
    with torch.no_grad():
        mod.weight.copy_(w.to(mod.weight.dtype))
        if mod.bias is None:
            mod.bias = nn.Parameter(b.to(mod.weight.dtype))
        else:
            mod.bias.copy_(b.to(mod.weight.dtype))


def _next_linear(ctx: Context, norm: fx.Node, axis_of) -> Optional[Captures]:
    """The one consumer of ``norm`` (through layout ops and means that keep the normalised channel axis)
    that a per-channel affine map can fold into: an unpadded dense 1x1 conv right after it, or a linear."""
    gm = ctx.gm
    users = value_users(norm)
    if len(users) != 1:
        return None
    user = users[0]
    chain: List[fx.Node] = []
    while commutes_with_channel_affine(user) and len(value_users(user)) == 1 and len(user.users) == 1:
        chain.append(user)
        user = value_users(user)[0]
    if user.op != "call_module" or module_calls(gm, str(user.target)) != 1:
        return None
    target = module(gm, user)
    if isinstance(target, nn.Conv2d) and not chain:
        if (target.kernel_size != (1, 1) or target.padding not in ((0, 0), 0) or target.groups != 1
                or user.args[0] is not norm):
            return None
    elif isinstance(target, nn.Linear):
        norm_shape = shape(norm)
        last = chain[-1] if chain else norm
        if norm_shape is None or shape(last) is None or user.args[0] is not last:
            return None
        if track_axis(chain, axis_of(norm_shape)) != len(shape(last)) - 1:
            return None
    else:
        return None
    return {"norm": norm, "target": user}


def match_bn_into_next_linear(ctx: Context, bn: fx.Node) -> Optional[Captures]:
    return _next_linear(ctx, bn, lambda s: 1)


def apply_bn_into_next_linear(ctx: Context, c: Captures) -> None:
    """BN whose only consumer is an unpadded 1x1 conv or (through layout ops and means that keep the
    channel axis) a linear layer folds into that consumer's input columns: the attention pre-norm into
    qkv, a MetaFormer mlp pre-norm into fc1, a head norm through global pooling into the classifier.
    Never into a padded conv: at the border the padding would see BN's shift."""
    gm, bn = ctx.gm, c["norm"]
    scale, shift = bn_scale_shift(module(gm, bn))
    _fold_before(module(gm, c["target"]), scale, shift)
    replace_node(gm, bn, bn.args[0])


def _fold_before(target: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    w, b = alg.fold_affine_before_linear(target.weight.detach(), target.bias.detach() if target.bias is not None
                                         else None, scale, shift)
    set_weights(target, w, b)


def match_layernorm_affine(ctx: Context, ln: fx.Node) -> Optional[Captures]:
    mod = module(ctx.gm, ln)
    if (not isinstance(mod, nn.LayerNorm) or not mod.elementwise_affine or len(mod.normalized_shape) != 1
            or module_calls(ctx.gm, str(ln.target)) != 1 or len(ln.args) != 1):
        return None
    return _next_linear(ctx, ln, lambda s: len(s) - 1)


def apply_layernorm_affine(ctx: Context, c: Captures) -> None:
    """LayerNorm's affine (``w * n(x) + b``, per channel on the last axis) folds into the linear that reads
    it (Meta3D's qkv and fc1, the head through the token mean): the normalisation itself stays, as a
    LayerNorm without affine."""
    gm, ln = ctx.gm, c["norm"]
    mod = module(gm, ln)
    w = mod.weight.detach().double() if mod.weight is not None else torch.ones(mod.normalized_shape, dtype=torch.float64)
    b = mod.bias.detach().double() if mod.bias is not None else torch.zeros(mod.normalized_shape, dtype=torch.float64)
    _fold_before(module(gm, c["target"]), w, b)
    bare = nn.LayerNorm(mod.normalized_shape, eps=mod.eps, elementwise_affine=False).eval()
    owner_path, _, attr = str(ln.target).rpartition(".")
    setattr(gm.get_submodule(owner_path) if owner_path else gm, attr, bare)


def match_parallel_linears(ctx: Context, n: fx.Node) -> Optional[Captures]:
    gm = ctx.gm
    if len(n.args) != 2 or n.kwargs or not all(isinstance(a, fx.Node) for a in n.args):
        return None
    a, b = n.args
    if a is b or not all(is_module(gm, v, nn.Linear) and len(v.users) == 1 and len(v.args) == 1
                         and module_calls(gm, str(v.target)) == 1 for v in (a, b)):
        return None
    if a.args[0] is not b.args[0] or module(gm, a).weight.shape != module(gm, b).weight.shape:
        return None
    return {"root": n, "a": a, "b": b}


def apply_parallel_linears(ctx: Context, c: Captures) -> None:
    """``fa(x) + fb(x)`` for two linears on one input is one linear with summed weights and biases: the
    classifier and distillation heads (their average then folds as a scale)."""
    gm = ctx.gm
    ma, mb = module(gm, c["a"]), module(gm, c["b"])

    def _b(m):
        return m.bias.detach().double() if m.bias is not None else torch.zeros(m.out_features, dtype=torch.float64)
    w = ma.weight.detach().double() + mb.weight.detach().double()
    set_weights(ma, w, _b(ma) + _b(mb))
    replace_node(gm, c["root"], c["a"])


def match_scale_into_query(ctx: Context, n: fx.Node) -> Optional[Captures]:
    gm = ctx.gm
    number = _number_operand(ctx, n)
    if number is None:
        return None
    mm, factor = number
    if root_kind(gm, mm) != "matmul" or len(mm.users) != 1 or len(mm.args) != 2:
        return None
    for operand in mm.args:
        rows = query_rows(ctx, operand)
        if rows is not None:
            linear, idx = rows
            return {"root": n, "matmul": mm, "linear": linear, "rows": idx, "factor": factor}
    return None


def apply_scale_into_query(ctx: Context, c: Captures) -> None:
    """``(q @ k^T) * s`` with q read (through reshape/permute/split) from rows of a linear (qkv) that nothing
    else reads: s multiplies those rows' weights and biases instead (attention's 1/sqrt(key_dim))."""
    mod = module(ctx.gm, c["linear"])
    scale = torch.ones(mod.out_features, dtype=torch.float64)
    scale[c["rows"]] = c["factor"]
    w, b = alg.fold_scale_into_rows(mod.weight.detach(), mod.bias.detach() if mod.bias is not None else None, scale)
    set_weights(mod, w, b)
    replace_node(ctx.gm, c["root"], c["matmul"])


def query_rows(ctx: Context, q: fx.Node) -> Optional[Tuple[fx.Node, torch.Tensor]]:
    """If ``q`` is a pure re-indexing of some output rows of one linear layer that reach nothing but
    ``q`` (layout ops, each used once, except a ``split`` whose other parts are other rows), return
    (the linear node, those rows). Found by running the layout chain on a tensor of row indices."""
    gm = ctx.gm
    if len(value_users(q)) != 1:
        return None
    path = [q]
    cur = q
    while root_kind(gm, cur) == "layout" and cur.op != "call_module":
        cur = cur.args[0] if cur.args and isinstance(cur.args[0], fx.Node) else None
        if cur is None:
            return None
        path.append(cur)
    if not (is_module(gm, cur, nn.Linear) and module_calls(gm, str(cur.target)) == 1 and len(cur.users) == 1):
        return None
    path = list(reversed(path))  # linear, layout ops ..., q
    for prev, node in zip(path[1:-1], path[2:]):
        is_split = prev.op == "call_method" and prev.target == "split"
        if not is_split and len(prev.users) != 1:
            return None
        if is_split and not all(u.op == "call_function" and u.target is operator.getitem for u in prev.users):
            return None
    out_shape = shape(cur)
    if out_shape is None:
        return None
    value: Any = torch.arange(out_shape[-1], dtype=torch.float64).expand(out_shape)
    for node in path[1:]:
        if any(isinstance(a, fx.Node) for a in list(node.args[1:]) + list(node.kwargs.values())):
            target_shape = shape(node)
            name = node.target if node.op == "call_method" else ""
            if name not in ("reshape", "view") or target_shape is None:
                return None
            value = value.reshape(target_shape)
            continue
        if node.op == "call_method":
            value = getattr(value, str(node.target))(*node.args[1:], **node.kwargs)
        elif node.op == "call_function":
            value = node.target(value, *node.args[1:], **node.kwargs)
        else:
            return None
    if not isinstance(value, torch.Tensor):
        return None
    return cur, torch.unique(value.long())


def match_bn_through_pool_mixer(ctx: Context, n: fx.Node) -> Optional[Captures]:
    gm = ctx.gm
    if len(n.args) != 2 or not all(isinstance(a, fx.Node) for a in n.args):
        return None
    pooled, bn = n.args
    if not (is_module(gm, bn, nn.BatchNorm2d) and is_module(gm, pooled, nn.AvgPool2d) and pooled.args[0] is bn):
        return None
    pool = module(gm, pooled)
    if pool.count_include_pad or pool.divisor_override is not None or set(value_users(bn)) != {pooled, n}:
        return None
    if len(pooled.users) != 1:
        return None
    return {"root": n, "pooled": pooled, "bn": bn}


def apply_bn_through_pool_mixer(ctx: Context, c: Captures) -> None:
    """``avgpool(bn(x)) - bn(x)`` with padding excluded from the average equals ``s * (avgpool(x) - x)``:
    the pooling weights sum to one everywhere, so BN's shift cancels exactly and only its scale remains."""
    gm, n, pooled, bn = ctx.gm, c["root"], c["pooled"], c["bn"]
    x = bn.args[0]
    scale, _ = bn_scale_shift(module(gm, bn))
    name = str(bn.target).replace(".", "_") + "_scale"
    gm.register_buffer(name, scale.to(ctx.dtype).reshape(-1, 1, 1))
    pooled.args = (x,)
    with gm.graph.inserting_before(n):
        diff = gm.graph.call_function(operator.sub, (pooled, x))
        cn = gm.graph.get_attr(name)
        new = gm.graph.call_function(operator.mul, (diff, cn))
    diff.meta = dict(n.meta)
    new.meta = dict(n.meta)
    replace_node(gm, n, new)


def match_identity(ctx: Context, n: fx.Node) -> Optional[Captures]:
    mod = module(ctx.gm, n)
    if not isinstance(mod, (nn.Dropout, nn.Identity)) or mod.training:
        return None
    if len(n.args) != 1 or not isinstance(n.args[0], fx.Node):
        return None
    return {"root": n}


def apply_identity(ctx: Context, c: Captures) -> None:
    """Dropout and Identity are no-ops in an eval-mode deploy graph."""
    replace_node(ctx.gm, c["root"], c["root"].args[0])


def _rule(name: str, roots: Tuple[str, ...], match, apply, calls_only: bool = False) -> Rule:
    return Rule(name, roots, match, apply, " ".join((apply.__doc__ or "").split()), calls_only)


#: the rules, in the order each sweep tries them
RULES: Tuple[Rule, ...] = (
    _rule("drop_identity", ("dropout", "layout"), match_identity, apply_identity, calls_only=True),
    _rule("fold_bn_into_conv", ("batchnorm",), match_bn_into_conv, apply_bn_into_conv),
    _rule("merge_parallel_convs", ("add", "sub"), match_parallel_convs, apply_parallel_convs),
    _rule("fold_bn_through_pool_mixer", ("sub",), match_bn_through_pool_mixer, apply_bn_through_pool_mixer),
    _rule("fold_scale", ("mul", "div"), match_scale, apply_scale),
    _rule("fold_bn_into_next_linear", ("batchnorm",), match_bn_into_next_linear, apply_bn_into_next_linear),
    _rule("fold_layernorm_affine", ("layernorm",), match_layernorm_affine, apply_layernorm_affine),
    _rule("merge_parallel_linears", ("add",), match_parallel_linears, apply_parallel_linears),
    _rule("fold_scale_into_query", ("mul", "div"), match_scale_into_query, apply_scale_into_query),
)
