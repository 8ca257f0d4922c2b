"""Running the rules: to a fixpoint, listing what would still fire, and debug mode.

Kept apart from ``reparam.py`` (tracing, levels, the public entry point) and ``verify.py`` (invariants and
equivalence) so that both can use it without importing each other.

Debug mode (``apply_rules(..., check=...)``) recompiles and checks the graph after every single rewrite;
the first rewrite after which the check fails is reported with the rule's name and the node it rewrote,
which a check at the end of the pass cannot tell.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, Tuple

import torch.fx as fx

from ..errors import LoweringError
from .rules import RULES, Context, Rule, root_kind

MAX_SWEEPS = 64

#: debug-mode check: given the graph after a rewrite, a failure message or None
Check = Callable[[fx.GraphModule], Optional[str]]


def _candidates(gm: fx.GraphModule, rule: Rule, root: str):
    kinds = {node: root_kind(gm, node) for node in gm.graph.nodes}
    for node, kind in kinds.items():
        if kind != root or (rule.calls_only and node.op != "call_module"):
            continue
        yield node


def _erased(node: fx.Node, gm: fx.GraphModule) -> bool:
    return node.graph is not gm.graph or getattr(node, "_erased", False)


def apply_rules(gm: fx.GraphModule, in_scope: Callable[[fx.Node], bool] = lambda n: True,
                rules: Sequence[Rule] = RULES, check: Optional[Check] = None) -> int:
    """Rewrite ``gm`` in place until no rule applies; returns the number of rewrites.

    With ``check`` (debug mode) the graph is recompiled and checked after every rewrite; a failure raises
    ``LoweringError`` naming the rule and the node it rewrote."""
    ctx = Context(gm, in_scope)
    total = 0
    for _ in range(MAX_SWEEPS):
        changed = 0
        for rule in rules:
            for root in rule.roots:
                for node in _candidates(gm, rule, root):
                    if _erased(node, gm) or not in_scope(node):
                        continue
                    name = node.name
                    found = rule.match(ctx, node)
                    if found is None:
                        continue
                    rule.apply(ctx, found)
                    changed += 1
                    if check is not None:
                        gm.recompile()
                        problem = check(gm)
                        if problem:
                            raise LoweringError(f"rule {rule.name} broke equivalence when it rewrote node "
                                                f"{name}: {problem}")
        total += changed
        if not changed:
            break
    else:  # pragma: no cover - would mean two rules undo each other
        raise LoweringError(f"reparameterization did not reach a fixpoint in {MAX_SWEEPS} sweeps")
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return total


def matching_rules(gm: fx.GraphModule, rules: Sequence[Rule] = RULES) -> Iterator[Tuple[str, str]]:
    """(rule, node name) for every rule whose ``match`` still captures something in ``gm``: empty at a
    fixpoint. ``match`` never changes the graph, so this needs no copy."""
    ctx = Context(gm, lambda n: True)
    for rule in rules:
        for root in rule.roots:
            for node in _candidates(gm, rule, root):
                if rule.match(ctx, node) is not None:
                    yield rule.name, node.name


__all__ = ["Check", "MAX_SWEEPS", "apply_rules", "matching_rules"]
