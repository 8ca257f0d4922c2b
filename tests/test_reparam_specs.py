"""The pass on every shipped spec, on the reference checkpoints, and on random valid specs."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc.analysis.profile import example_input, profile_graph
from archc.blocks import HEADS, MIXERS
from archc.deploy import deploy_model
from archc.passes import constant_multiplies, invariant_violations, reparameterize
from archc.passes.kernels import lower_for_kernels
from archc.testing import randomize_, reference_check

from conftest import PARITY_DEEP, own_flat_keys, reference_file, shipped_specs

DEEP = {"sa24", "sa36", "ma36", "sa36_384", "ma36_384"}


def _batchnorms(gm) -> int:
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in gm.modules())


@pytest.mark.parametrize("path", [p for p in shipped_specs() if p.stem not in PARITY_DEEP], ids=lambda p: p.stem)
@pytest.mark.parametrize("size", [256, 250])
def test_every_shipped_spec_lowers_exactly(path, size):
    spec = archc.load_spec(path, overrides={"input_size": size})
    torch.manual_seed(size)
    model = randomize_(archc.build(spec).eval(), seed=size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_modules = len(list(model.modules()))
    gm = reparameterize(model)  # raises LoweringError if not equivalent
    assert gm.equivalence.max_rel_error <= 1e-5, gm.equivalence.describe()  # float32 vs float32
    assert _batchnorms(gm) == 0
    assert invariant_violations(gm) == []
    if not {"pool", "meta4d"} & set(spec.mixers):  # their pool mixers keep a scale (no conv to fold into)
        assert constant_multiplies(gm) == []  # every layer scale folded
    # the input model is untouched
    assert len(list(model.modules())) == n_modules
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


PAPER_DEPLOY_GMACS = {"t8": 0.685, "t12": 1.391, "s12": 1.794, "sa12": 1.929, "sa24": 3.745, "sa36": 5.562,
                      "ma36": 7.785}


@pytest.mark.parametrize("name", list(PAPER_DEPLOY_GMACS))
def test_deploy_macs_match_the_paper(name):
    spec = archc.load_spec(f"specs/{name}.yaml")
    gm = reparameterize(archc.build(spec).eval(), verify=False)
    macs = profile_graph(gm, example_input((256, 256))).macs / 1e9
    assert math.isclose(macs, PAPER_DEPLOY_GMACS[name], rel_tol=0.005), macs


def test_deploy_graph_names_follow_timm_inference_mode():
    gm = reparameterize(archc.build("specs/sa12.yaml").eval(), verify=False, level="reference")
    names = {n for n, _ in gm.named_parameters()}
    for expected in ("stem.0.reparam_conv.weight", "stages.1.downsample.proj.0.reparam_conv.weight",
                     "stages.1.downsample.proj.1.reparam_conv.weight", "stages.0.blocks.0.token_mixer.reparam_conv.weight",
                     "stages.3.pos_emb.reparam_conv.weight", "final_conv.reparam_conv.weight",
                     "stages.0.blocks.0.mlp.conv.bn.weight", "stages.3.blocks.0.norm.weight"):
        assert expected in names, expected


@pytest.mark.parametrize("variant,rel", [
    ("t8", "timm_fastvit/fastvit_t8.seed0.pt"), ("sa12", "timm_fastvit/fastvit_sa12.seed0.pt"),
    ("t8", "apple_fastvit/fastvit_t8.unfused.pt"), ("t8", "apple_fastvit/fastvit_t8.reparam.pt"),
    ("sa12", "apple_fastvit/fastvit_sa12.reparam.pt")])
def test_reference_checkpoints_reproduce_their_logits_through_the_deploy_graph(variant, rel):
    path = reference_file(rel)
    ref = torch.load(path, weights_only=True)
    gm = deploy_model(archc.load_spec(f"specs/{variant}.yaml"), path)
    check = reference_check(gm, ref["input"], ref["logits"])  # float32 reference: 4x float32's rounding here
    assert check.ok, check.describe()
    assert _batchnorms(gm) == 0


def test_archc_deploy_checkpoint_round_trip(tmp_path):
    spec = archc.load_spec("specs/t8.yaml", overrides={"input_size": 64})
    gm = reparameterize(randomize_(archc.build(spec).eval(), seed=5))
    archc.save_weights(gm, tmp_path / "t8.deploy.pt", spec=spec, deploy=True)
    again = deploy_model(spec, tmp_path / "t8.deploy.pt")
    x = example_input((64, 64))
    with torch.no_grad():
        assert torch.equal(gm(x), again(x))


# ---------------------------------------------------------------------------- random valid specs
@st.composite
def random_specs(draw):
    n = draw(st.integers(2, 4))
    widths = [draw(st.sampled_from([8, 16]))]
    for _ in range(n - 1):
        widths.append(widths[-1] * draw(st.sampled_from([1, 2])))
    odd = st.sampled_from([1, 3, 5, 7])
    stages = []
    for i, w in enumerate(widths):
        stage = {"depth": draw(st.integers(1, 2)), "width": w, "mixer": draw(st.sampled_from(list(MIXERS))),
                 "mlp_ratio": draw(st.sampled_from([1, 2, 3])), "mixer_kernel": draw(odd),
                 "ffn": draw(st.sampled_from(["convffn", "mlp"])), "ffn_kernel": draw(odd), "head_dim": 8,
                 "conv_branches": draw(st.integers(0, 2)), "scale_branch": draw(st.booleans())}
        if stage["mixer"] == "mobileone":  # MobileOne's plain blocks between FastViT/MetaFormer stages
            stage["mixer"] = {"type": "mobileone", "kernel": draw(st.sampled_from([1, 3, 5])),
                              "stride": draw(st.sampled_from([1, 2])), "se_blocks": draw(st.integers(0, 1))}
            stage["conv_branches"] = draw(st.integers(1, 2))
            stages.append(own_flat_keys(stage))
            continue
        if i > 0:
            k = draw(st.sampled_from([3, 5, 7]))
            if draw(st.booleans()):
                stage["downsample"] = {"type": "replk", "kernel": k, "small_kernel": draw(st.sampled_from([None, 1, 3])),
                                       "stride": 2, "se_ratio": draw(st.sampled_from([None, 0.25])),
                                       "act": draw(st.booleans())}
            else:
                stage["downsample"] = {"type": "conv", "kernel": k, "stride": 2}
        if draw(st.booleans()):
            stage["pos_enc"] = {"kernel": draw(st.sampled_from([3, 7]))}
        stages.append(own_flat_keys(stage))
    return {"name": "random", "num_classes": 10, "input_size": draw(st.sampled_from([32, 40, 47])),
            "norm": draw(st.sampled_from(["batchnorm", "groupnorm"])),
            "layer_scale_init": draw(st.sampled_from([None, 1e-5])),
            "stem": {"type": draw(st.sampled_from(["mobileone", "mobileone_block"])),
                     "conv_branches": draw(st.integers(1, 2)), "scale_branch": draw(st.booleans()),
                     "kernel": draw(st.sampled_from([3, 5]))},
            "head": {"type": draw(st.sampled_from(list(HEADS)))},
            "stages": stages}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_specs(), st.integers(0, 1000))
def test_random_specs_lower_exactly(data, seed):
    model = randomize_(archc.build(data).eval(), seed=seed)
    gm = reparameterize(model)
    assert gm.equivalence.ok
    assert _batchnorms(gm) == 0
    assert invariant_violations(gm) == []
    # the CPU kernel lowerings on top stay exact too (checked inside; channels_last input as the runtime feeds it)
    lowered = lower_for_kernels(gm)
    x = torch.randn((1, 3, data["input_size"], data["input_size"]), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x)
        out = lowered.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert (out - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_quant_friendly_mobileone_blocks_fold_exactly_and_leave_old_dumps_alone():
    """QARepVGG-style blocks (benchmarks/specs/mobileone_s0_qa.yaml): bare identity and 1x1 branches, one BN after
    the sum; they lower to one conv per block under randomised BatchNorm statistics, like the plain blocks. The new
    key is written only when set, so every earlier dump (golden files, ground-truth architecture keys) stays."""
    from archc.spec import arch_key, spec_to_yaml
    qa = archc.load_spec("benchmarks/specs/mobileone_s0_qa.yaml", overrides={"input_size": 64})
    plain = archc.load_spec("mobileone_s0", overrides={"input_size": 64})
    model = randomize_(archc.build(qa).eval(), seed=3)
    block = model.stages[1][2]  # a depthwise block with an identity path
    assert isinstance(block.identity, torch.nn.Identity) and isinstance(block.norm, torch.nn.BatchNorm2d)
    assert isinstance(model.stages[1][3].conv_scale, torch.nn.Conv2d) or model.stages[1][3].conv_scale is None
    gm = reparameterize(model)  # raises LoweringError if not equivalent
    assert gm.equivalence.max_rel_error <= 1e-5, gm.equivalence.describe()
    assert _batchnorms(gm) == 0 and invariant_violations(gm) == []
    assert "quant_friendly" not in spec_to_yaml(plain) and "quant_friendly: true" in spec_to_yaml(qa)
    assert archc.load_spec(__import__("yaml").safe_load(spec_to_yaml(qa))) == qa
    assert arch_key(plain) != arch_key(qa)
