"""EfficientFormer L1/L3/L7 against timm 1.0.31, without timm: the reference files in tests/reference/timm
(benchmarks/timm_reference.py) hold timm's keys and shapes, its eval logits on key-seeded random weights
(BN statistics and affines, LayerNorm affines, layer scales and attention biases randomised) and its
params/MACs. The deploy graph must fold everything exact: no BatchNorm, no LayerNorm affine, no layer scale
except Meta4D's on the pool mixer (``pool(x) - x`` excludes padding from the average: no conv to fold into).
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.passes import constant_multiplies, invariant_violations, reparameterize
from archc.testing import reference_check, seeded_input, seeded_state_dict

from conftest import SPECS

REF = Path(__file__).resolve().parent / "reference" / "timm"
MODELS = ["efficientformer_l1", "efficientformer_l3", "efficientformer_l7"]


def _ref(name: str) -> dict:
    return torch.load(REF / f"{name}.pt", weights_only=True)


def _seeded(name: str):
    ref = _ref(name)
    model = archc.build(archc.load_spec(SPECS / f"{name}.yaml")).eval()
    assert archc.load_weights(model, seeded_state_dict(model.state_dict(), ref["seed"])) == "timm"  # strict
    return model, ref, seeded_input(tuple(ref["input_shape"]), ref["input_seed"])


def _macs(model: nn.Module, size: int) -> int:
    meta = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty((1, 3, size, size), device="meta"))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", MODELS)
def test_keys_logits_params_macs_equal_timm(name):
    model, ref, x = _seeded(name)
    keys = {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()}
    assert list(keys) == list(ref["keys"]) and keys == ref["keys"]
    check = reference_check(model, x, ref["logits"], ref.get("logits64"))  # float64, float32's rounding as tolerance
    assert check.ok, check.describe()
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    assert _macs(model, ref["input_shape"][-1]) == ref["macs"]


def _meta4d_blocks(spec) -> int:
    return sum(s.depth - s.mixer.meta3d for s in spec.stages)


@pytest.mark.parametrize("name", MODELS[:2])
def test_deploy_folds_norms_scales_heads(name):
    model, ref, x = _seeded(name)
    gm = reparameterize(model, example=x)
    assert gm.equivalence.max_rel_error <= 1e-5, gm.equivalence.describe()
    # the folded graph against timm's train graph, folded in float64 too (a float32 fold rounds every weight)
    gm64 = reparameterize(copy.deepcopy(model).double(), example=x.double())
    check = reference_check(gm, x, ref["logits"], ref.get("logits64"), gm64)
    assert check.ok, check.describe()
    mods = list(gm.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in mods)
    lns = [m for m in mods if isinstance(m, nn.LayerNorm)]
    assert lns and not any(m.elementwise_affine for m in lns)  # normalisation stays, affine gone
    assert len(constant_multiplies(gm)) == _meta4d_blocks(model.spec)  # only the pool mixers' ls1
    gammas = [n for n, _ in gm.named_parameters() if n.endswith("gamma")]
    assert len(gammas) == _meta4d_blocks(model.spec) and all(n.endswith("ls1.gamma") for n in gammas)
    # the two heads are one Linear; no scalar multiply (attention scale, head average) remains
    assert not hasattr(gm, "head_dist") or not any(True for _ in gm.head_dist.parameters())
    scalars = [n for n in gm.graph.nodes if n.op in ("call_function", "call_method")
               and getattr(n.target, "__name__", str(n.target)) in ("mul", "truediv")
               and any(isinstance(a, (int, float)) for a in n.args)]
    assert scalars == []
    assert invariant_violations(gm) == []
    # the bias table gather stays (an index into a learned table)
    assert any("attention_bias_idxs" in str(n.target) for n in gm.graph.nodes if n.op == "get_attr")


def test_meta3d_count_and_flat_position():
    spec = archc.load_spec(SPECS / "efficientformer_l1.yaml", ["stages[3].meta3d=2"])
    model = archc.build(spec)
    kinds = [type(b).__name__ for b in model.stages[3].blocks]
    assert kinds == ["Meta4D", "Meta4D", "Flat", "Meta3D", "Meta3D"]
    spec = archc.load_spec(SPECS / "efficientformer_l1.yaml", ["stages[3].meta3d=0"])
    model = archc.build(spec).eval()
    kinds = [type(b).__name__ for b in model.stages[3].blocks]
    assert kinds == ["Meta4D"] * 4  # a feature map, as every stage promises; the distilled head flattens it
    shapes = []
    model.stages[3].register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    assert shapes == [(1, 448, 7, 7)]
    spec = archc.load_spec(SPECS / "efficientformer_l1.yaml", ["stages[3].meta3d=4", "input_size=160"])
    model = archc.build(spec).eval()
    assert [type(b).__name__ for b in model.stages[3].blocks][0] == "Flat"
    assert model(torch.randn(1, 3, 160, 160)).shape == (1, 1000)


@pytest.mark.parametrize("override, message", [
    ("stages[3].meta3d=5", "exceeds depth"),
    ("stages[2].meta3d=1", "only the last stage"),
    ("head.type=norm_linear", "ends in tokens"),
])
def test_meta3d_misuse_is_one_clear_error(override, message):
    with pytest.raises(archc.SpecError, match=message):
        archc.load_spec(SPECS / "efficientformer_l1.yaml", [override])


def test_a_graph_sized_to_its_input_is_profiled_predicted_and_timed_at_each_resolution(capsys):
    """Meta3D's attention bias is sized to the input, so its graph runs at that size only: features, predictions
    and ``archc bench --resolutions`` build one graph per size (they crashed with a shape error at any size but
    256 before), and a Meta4D-only stage, sized to nothing, still shares one graph."""
    from archc.cli import main
    from archc.latency.features import deploy_graph, profile_features, spec_features
    from archc.analysis.profile import example_input, profile_graph
    from archc.spec import sized_to_input
    spec = archc.load_spec(SPECS / "efficientformer_l1.yaml")
    assert sized_to_input(spec) and not sized_to_input(archc.load_spec(SPECS / "efficientformer_l1.yaml",
                                                                       ["stages[3].meta3d=0"]))
    at_224, _ = spec_features(spec, 224)
    direct = profile_features(profile_graph(deploy_graph(spec)[0], example_input((224, 224))))
    assert at_224 == pytest.approx(direct)
    assert spec_features(spec, 256)[0]["macs_pointwise"] > at_224["macs_pointwise"]
    assert main(["bench", str(SPECS / "efficientformer_l1.yaml"), "--target", "iphone12pro",
                 "--resolutions", "224,256", "--json"]) == 0
    assert main(["bench", str(SPECS / "efficientformer_l1.yaml"), "--target", "cpu", "--resolutions", "160,224",
                 "--runs", "1", "--warmup", "0", "--json"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_guards_proxies_and_ablate_take_a_graph_sized_to_its_input(capsys, tmp_path, monkeypatch):
    """The memory guard, the zero-cost proxies and ``archc ablate`` run EfficientFormer at a size other than
    its ``input_size`` (they ended in a [8, 49] vs [8, 1] shape error inside the guard before): a spec is
    measured and built at the size it is fed, as training builds it; a built model at its own size."""
    from archc.cli import main
    from archc.guards import memory_bytes
    from archc.proxies import score
    spec = archc.load_spec(SPECS / "efficientformer_l1.yaml")
    at_128 = archc.load_spec(SPECS / "efficientformer_l1.yaml", ["input_size=128"])
    assert memory_bytes(spec, 2, (128, 128))["activations"] == memory_bytes(at_128, 2)["activations"]
    assert memory_bytes(spec, 2, (128, 128))["activations"] < memory_bytes(spec, 2)["activations"]
    assert score(spec, "params") == pytest.approx(sum(p.numel() for p in archc.build(spec).parameters()) / 1e6)
    fed = score(spec, "naswot", batch=4, resolution=64)  # built at 64 px
    assert fed == score(archc.load_spec(SPECS / "efficientformer_l1.yaml", ["input_size=64"]), "naswot",
                        batch=4, resolution=64)
    torch.manual_seed(0)
    small = archc.build(archc.load_spec(SPECS / "efficientformer_l1.yaml", ["input_size=64"]))
    assert score(small, "naswot", batch=4, resolution=96) == pytest.approx(fed)  # built: scored at its 64 px
    monkeypatch.chdir(tmp_path)  # ablate keeps its locks under ./runs
    assert main(["ablate", str(SPECS / "efficientformer_l1.yaml"), "--target", "none", "--objective", "params",
                 "--json"]) == 0
    assert "Traceback" not in capsys.readouterr().err
