"""Parity with timm 1.0.31 for the MobileOne, PoolFormer and MobileCLIP (MCi) specs, without timm.

``tests/reference/timm/<model>.pt`` (made by ``benchmarks/timm_reference.py`` in the anchor venv) holds
timm's keys and shapes, the seed of a key-seeded random state dict, an input seed, timm's eval logits,
and params/MACs of timm's model before and after ``reparameterize_model``. Each test builds the named
spec, checks its state-dict keys and shapes equal timm's exactly, loads the same seeded weights
(BatchNorm statistics, affines and layer scales random), and compares logits, the deploy graph, and
params/MACs (torch's FlopCounterMode / 2 on the meta device, as the reference script counts them).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.testing import randomize_, reference_check, seeded_input, seeded_state_dict

from conftest import PARITY_DEEP, ROOT, SPECS

REF = ROOT / "tests" / "reference" / "timm"
ALWAYS = ["mobileone_s0", "poolformer_s12", "fastvit_mci0"]
MODELS = ALWAYS + [pytest.param(m, marks=pytest.mark.slow) for m in sorted(PARITY_DEEP)]


def _ref(name: str) -> dict:
    path = REF / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"{path} missing: run benchmarks/timm_reference.py {name} in the anchor venv")
    return torch.load(path, weights_only=True)


def _keys(model: nn.Module) -> dict:
    return {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()}


def macs(model: nn.Module, size) -> int:
    meta = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty((1, 3, *size), device="meta"))
    return counter.get_total_flops() // 2


def _batchnorms(gm: fx.GraphModule) -> int:
    mods = dict(gm.named_modules())
    return sum(1 for n in gm.graph.nodes
               if (n.op == "call_module" and isinstance(mods[str(n.target)], nn.modules.batchnorm._BatchNorm))
               or (n.op == "call_function" and "batch_norm" in str(n.target)))


@pytest.mark.parametrize("name", MODELS)
def test_timm_parity(name):
    ref = _ref(name)
    model = archc.build(SPECS / f"{name}.yaml").eval()
    got = _keys(model)
    missing, extra = sorted(set(ref["keys"]) - set(got)), sorted(set(got) - set(ref["keys"]))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    wrong = [k for k in got if got[k] != ref["keys"][k]]
    assert not wrong, [(k, got[k], ref["keys"][k]) for k in wrong[:5]]
    assert archc.load_weights(model, seeded_state_dict(model.state_dict(), ref["seed"])) == "timm"  # strict
    x = seeded_input(tuple(ref["input_shape"]), ref["input_seed"])
    # archc in float64 against timm's float64 logits, within float32's rounding of the computation (CPU-free)
    check = reference_check(model, x, ref["logits"], ref.get("logits64"))
    assert check.ok, check.describe()
    scale = check.scale
    size = tuple(ref["input_shape"][2:])
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    assert macs(model, size) == ref["macs"]

    # timm's own reparameterized logits say whether the seeded weights are well conditioned: with them
    # MobileOne-S4's squeeze-excite stack amplifies rounding ~1e12-fold (timm's deploy is 39% off its own
    # train graph, float64 still 1e-4), so its fold is checked on archc's own init + randomize_ (as
    # test_reparam_specs does)
    conditioned = (ref["logits"] - ref["logits_reparam"]).abs().max().item() <= 1e-5 * scale
    if not conditioned:
        torch.manual_seed(0)
        model = randomize_(archc.build(SPECS / f"{name}.yaml").eval(), seed=0)
    # archc's deploy graph: every branch and every BatchNorm folded. The folds are exact: folded in float64, the
    # deploy graph equals the float64 train graph to float64's rounding. (Compared in float32 instead, the seeded
    # weights decide: MCi1's give attention logits of 1e13, a softmax that float32 rounding flips on one CPU and
    # not another; the pass's own float32 verification tells that apart, see Equivalence.ill_conditioned_but_exact.)
    deploy = archc.reparameterize(model, example=x)
    with torch.no_grad():
        train64 = copy.deepcopy(model).double()(x.double())
    deploy64 = archc.reparameterize(copy.deepcopy(model).double(), example=x.double())
    check = reference_check(deploy, x, train64.float(), train64, deploy64)
    assert check.ok, check.describe()
    assert _batchnorms(deploy) == 0
    # the reference level stops where timm's reparameterize_model stops: timm's params, MACs and logits
    reference = archc.reparameterize(model, example=x, level="reference")
    if conditioned:
        # folded in float64 too, so the gap is float64's: timm folded its float64 logits in float64
        reference64 = archc.reparameterize(copy.deepcopy(model).double(), example=x.double(), level="reference")
        check = reference_check(reference, x, ref["logits_reparam"], ref.get("logits_reparam64"), reference64)
        assert check.ok, check.describe()
    assert sum(p.numel() for p in reference.parameters()) == ref["params_reparam"]
    assert macs(reference, size) == ref["macs_reparam"]
    # the full pass folds further (ConvFFN BN, attention pre-norm, layer scales): never more, same MACs
    assert sum(p.numel() for p in deploy.parameters()) <= ref["params_reparam"]
    assert macs(deploy, size) == ref["macs_reparam"]
