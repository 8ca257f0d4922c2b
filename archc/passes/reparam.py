"""The reparameterization pass: trace, apply the rules to a fixpoint, verify.

``reparameterize(model)`` never touches its input: it traces a deep copy in eval mode with torch.fx,
rewrites the graph with the rules in ``rules.py`` until none applies, and (by default) checks the
result numerically against the eval-mode train graph, raising ``LoweringError`` if it differs.

``level="reference"`` stops where timm's and Apple's hand-written ``reparameterize()`` stop (only
MobileOne blocks, large-kernel convs, RepMixer and RepCPE are folded; ConvFFN BN, attention
pre-norm and block layer scales stay). Reparameterized timm/Apple checkpoints load into that graph,
and the full pass then continues from it.
"""
from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from ..analysis.profile import example_input
from ..errors import LoweringError
from ..blocks import MIXERS
from ..nn import LargeKernelConv, MobileOneBlock, RepCPE, RepMixer
from .engine import apply_rules
from .verify import assert_invariants, check_equivalence, debug_check

LEVELS = ("full", "reference")
#: block types whose folding the reference implementations also do (block kinds add theirs: reference_blocks())
REFERENCE_BLOCKS = (MobileOneBlock, LargeKernelConv, RepCPE, RepMixer)


def reference_blocks() -> tuple:
    return REFERENCE_BLOCKS + tuple(m for kind in MIXERS.kinds() for m in kind.reference_modules)


def _scope_filter(model: nn.Module, level: str) -> Callable[[fx.Node], bool]:
    if level == "full":
        return lambda node: True
    types = {name: type(m) for name, m in model.named_modules()}
    blocks = reference_blocks()

    def in_reference_block(node: fx.Node) -> bool:
        paths = list(node.meta.get("nn_module_stack", {}).keys())
        if node.op == "call_module":
            paths.append(str(node.target))
        return any(issubclass(types.get(p, type(None)), blocks) for p in paths)
    return in_reference_block


def trace_for_rewrite(model: nn.Module, x: torch.Tensor) -> fx.GraphModule:
    """Deep-copy ``model`` in eval mode, trace it, and record every node's shape (for axis tracking)."""
    work = copy.deepcopy(model).eval()
    gm = fx.symbolic_trace(work)
    with torch.no_grad():
        ShapeProp(gm).propagate(x)
    return gm


def reparameterize(model: nn.Module, *, verify: bool = True, level: str = "full",
                   example: Optional[torch.Tensor] = None, tolerance: Optional[float] = None,
                   debug: bool = False) -> fx.GraphModule:
    """Lower a train-time archc model to its deploy graph (a ``torch.fx.GraphModule``).

    The input model is not modified. With ``verify`` (default) the deploy graph is compared with the
    eval-mode train graph on a random input and ``LoweringError`` is raised if the error exceeds
    1e-5 of the max |output|; the report is on ``gm.equivalence``. With ``debug`` the comparison runs
    after every rewrite (slow: one forward pass each) and the error names the first rule that broke it.
    """
    if level not in LEVELS:
        raise LoweringError(f"unknown level '{level}'; valid: {', '.join(LEVELS)}")
    spec = getattr(model, "spec", None)
    if example is None:
        size = tuple(spec.input_size) if spec is not None else (224, 224)
        example = example_input(size, spec.in_chans if spec is not None else 3)
    gm = _retrace(model, example) if isinstance(model, fx.GraphModule) else trace_for_rewrite(model, example)
    check = debug_check(model, example, tolerance) if debug else None
    apply_rules(gm, _scope_filter(model, level), check=check)
    gm.spec = spec
    gm.reparam_level = level
    gm.equivalence = None
    if level == "full":
        assert_invariants(gm)
    if verify:
        eq = check_equivalence(model, gm, example, **({"tolerance": tolerance} if tolerance else {}))
        if not eq.ok and example.dtype == torch.float32:
            _recheck_in_float64(model, gm, eq, example, level)
        gm.equivalence = eq
        if not eq.ok:
            raise LoweringError(f"{getattr(spec, 'name', 'model')}: deploy graph is not equivalent to the train "
                                f"graph: {eq.describe()}")
    return gm


def _retrace(gm: fx.GraphModule, x: torch.Tensor) -> fx.GraphModule:
    """Continue lowering an existing GraphModule (e.g. a reference-level graph with loaded weights)."""
    work = copy.deepcopy(gm).eval()
    with torch.no_grad():
        ShapeProp(work).propagate(x)
    work.spec = getattr(gm, "spec", None)
    return work


@torch.no_grad()
def _recheck_in_float64(model: nn.Module, gm: fx.GraphModule, eq, example: torch.Tensor, level: str) -> None:
    """Tell a wrong fold from an ill-conditioned network: lower a float64 copy (so folded weights are not
    rounded to float32) and compare it with the float64 train graph; and measure how far the float32 train
    and deploy graphs each are from that exact function. Fills the fields ``Equivalence.ok`` reads."""
    ref64 = copy.deepcopy(model).eval().double()
    x64 = example.double()
    gm64 = reparameterize(ref64, verify=False, level=level, example=x64)
    truth = ref64(x64)
    scale = truth.abs().max().item() or 1.0

    def rel(out: torch.Tensor) -> float:
        return (out.double() - truth).abs().max().item() / scale
    eq.relowered_float64_rel_error = rel(gm64(x64))
    eq.train_float32_error = rel(copy.deepcopy(model).eval()(example))
    eq.deploy_float32_error = rel(gm(example))
