"""What a deploy graph must satisfy: structural invariants, and numerical equivalence to the train graph."""
from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn as nn

from ..blocks import MIXERS
from ..errors import LoweringError
from .engine import matching_rules
from .graph import constant, module

#: a deploy graph whose error exceeds this fraction of max |output| is rejected
REL_TOLERANCE = 1e-5


@dataclass
class Equivalence:
    """Eval-mode train graph vs deploy graph on one random input, in float32 (what users run).

    Deep randomised networks can amplify float32 rounding past the tolerance on their own; when the
    float32 error exceeds it, both graphs are re-run in float64, which separates rounding (error drops
    to ~1e-7) from a wrong graph (error stays): ``float64_rel_error`` then decides.
    """

    max_abs_error: float
    max_rel_error: float  # max abs error / max |reference output|, float32
    max_abs_output: float
    input_shape: tuple
    tolerance: float = REL_TOLERANCE
    float64_rel_error: Optional[float] = None
    #: the pass re-run on a float64 copy (no float32 rounding of folded weights) vs the float64 train graph
    relowered_float64_rel_error: Optional[float] = None
    #: float32 train graph and float32 deploy graph, each against the float64 train graph (the exact function)
    train_float32_error: Optional[float] = None
    deploy_float32_error: Optional[float] = None

    @property
    def ok(self) -> bool:
        if self.max_rel_error <= self.tolerance:
            return True
        if self.float64_rel_error is not None and self.float64_rel_error <= self.tolerance:
            return True
        return self.ill_conditioned_but_exact

    @property
    def ill_conditioned_but_exact(self) -> bool:
        """The folds are exact in float64, and in float32 the deploy graph is no further from the exact
        function than the train graph itself is (within 10x): the network amplifies rounding of its own
        weights (deep plain stacks of summed branches do, e.g. MobileOne with random statistics)."""
        if None in (self.relowered_float64_rel_error, self.train_float32_error, self.deploy_float32_error):
            return False
        return (self.relowered_float64_rel_error <= self.tolerance
                and self.deploy_float32_error <= max(self.tolerance, 10 * self.train_float32_error))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["ok"] = self.ok
        return d

    def describe(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        text = (f"equivalence {verdict}: max abs error {self.max_abs_error:.3e}, relative to max |output| "
                f"{self.max_rel_error:.3e} (tolerance {self.tolerance:.0e}) on input {tuple(self.input_shape)}")
        if self.float64_rel_error is not None:
            text += f"; float64 re-check {self.float64_rel_error:.3e}"
            if self.ok and not self.ill_conditioned_but_exact:
                text += " (the float32 excess is rounding amplified by the network, not a folding error)"
        if self.relowered_float64_rel_error is not None:
            text += (f"; lowered in float64: {self.relowered_float64_rel_error:.3e}; against the float64 train graph "
                     f"float32 train {self.train_float32_error:.3e}, float32 deploy {self.deploy_float32_error:.3e}")
            if self.ill_conditioned_but_exact:
                text += " (exact folds; the network amplifies float32 rounding of its weights, the train graph's too)"
        return text


def _rel_error(reference: nn.Module, deploy: nn.Module, x: torch.Tensor) -> Tuple[float, float, float]:
    ref = reference.eval()(x)
    out = deploy.eval()(x)
    err = (ref - out).abs().max().item()
    scale = ref.abs().max().item()
    return err, (err / scale if scale > 0 else err), scale


@torch.no_grad()
def check_equivalence(reference: nn.Module, deploy: nn.Module, x: torch.Tensor,
                      tolerance: float = REL_TOLERANCE) -> Equivalence:
    err, rel, scale = _rel_error(reference, deploy, x)
    eq = Equivalence(err, rel, scale, tuple(x.shape), tolerance)
    if rel > tolerance and x.dtype == torch.float32:
        _, eq.float64_rel_error, _ = _rel_error(copy.deepcopy(reference).double(), copy.deepcopy(deploy).double(),
                                                x.double())
    return eq


def declared_leaves(gm: fx.GraphModule, node: fx.Node) -> Tuple[type, ...]:
    """The module types the block kind of ``node``'s stage declares it leaves in a deploy graph (``Kind.deploy_leaves``)."""
    spec = getattr(gm, "spec", None)
    found = re.match(r"stages[._](\d+)[._]", str(node.target)) if node.op == "call_module" else None
    if spec is None or found is None or int(found.group(1)) >= len(spec.stages):
        return ()
    return MIXERS[spec.stages[int(found.group(1))].mixer.type].deploy_leaves


def invariant_violations(gm: fx.GraphModule) -> List[str]:
    """Structural invariants of a fully lowered deploy graph (empty list: all hold).

    - no BatchNorm remains, except where a stage's block kind declares it (``Kind.deploy_leaves``);
    - no constant (layer-scale) multiply remains after a conv or linear;
    - no foldable rule still matches (the pass reached its fixpoint): so no parallel conv branches on one
      input, no ``x + conv(x)`` skip, no BN next to a conv it could fold into.
    """
    problems: List[str] = []
    for n in gm.graph.nodes:
        if isinstance(module(gm, n), nn.BatchNorm2d) and not isinstance(module(gm, n), declared_leaves(gm, n)):
            problems.append(f"BatchNorm remains at {n.target}")
    for rule, node in matching_rules(gm):
        problems.append(f"rule {rule} still applies at {node}")
    return problems


def debug_check(reference: nn.Module, x: torch.Tensor, tolerance: Optional[float] = None
                ) -> Callable[[fx.GraphModule], Optional[str]]:
    """The per-rewrite check of debug mode: the graph so far against the eval-mode train graph on ``x``."""
    ref = copy.deepcopy(reference).eval()
    tol = tolerance or REL_TOLERANCE

    def check(gm: fx.GraphModule) -> Optional[str]:
        eq = check_equivalence(ref, gm, x, tol)
        return None if eq.ok else eq.describe()
    return check


def assert_invariants(gm: fx.GraphModule) -> None:
    problems = invariant_violations(gm)
    if problems:
        raise LoweringError("deploy graph breaks its invariants: " + "; ".join(problems[:5]))


def constant_multiplies(gm: fx.GraphModule) -> List[str]:
    """Nodes that multiply by a stored constant (a layer scale that was not folded)."""
    out = []
    for n in gm.graph.nodes:
        if n.op in ("call_function", "call_method") and str(getattr(n.target, "__name__", n.target)) == "mul":
            if any(constant(gm, a) is not None for a in n.args):
                out.append(n.name)
    return out
