"""Runtime options compute what the deploy graph computes; bad options and missing backends say so."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archc import load_spec
from archc.builder import build
from archc.errors import ArchcError, DeviceError
from archc.runtime import RUNTIMES, explicit_attention, inference_model, make_runner, resolve_runtime
from archc.testing import randomize_

TINY = {
    "name": "tiny_rt", "num_classes": 10, "input_size": 32,
    "stage_defaults": {"mlp_ratio": 2, "ffn_kernel": 3,
                       "downsample": {"type": "replk", "kernel": 5, "small_kernel": 3, "stride": 2}},
    "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
               {"depth": 2, "width": 32, "mixer": "attention", "head_dim": 16, "pos_enc": {"type": "repcpe", "kernel": 3}}],
    "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.25},
}


@pytest.fixture(scope="module")
def graphs():
    spec = load_spec(TINY)
    train = randomize_(build(spec), seed=3).eval()
    deploy = inference_model(spec, model=train)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = train(x)
    return spec, train, deploy, x, ref


def test_inference_model_is_the_verified_deploy_graph(graphs):
    spec, train, deploy, x, ref = graphs
    assert getattr(deploy, "reparam_level", None) == "full"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())
    with torch.no_grad():
        assert torch.allclose(deploy(x), ref, atol=1e-5 * max(1.0, ref.abs().max().item()))
    assert inference_model(spec, model=deploy) is deploy  # a deploy graph is used as it is
    assert inference_model(spec, model=train, deploy=False) is train
    with pytest.raises(ArchcError, match="either a model or weights"):
        inference_model(spec, {"x": torch.zeros(1)}, model=train)


@pytest.mark.parametrize("runtime", ["eager", "channels_last", "explicit_attention", "onnxruntime",
                                     pytest.param("compile", marks=pytest.mark.slow)])  # inductor: ~10-20 s
def test_runtime_options_match_the_train_graph(graphs, runtime):
    _, _, deploy, x, ref = graphs
    runner = make_runner(deploy, x, runtime)
    try:
        out = runner.output(x)
    finally:
        runner.close()
    assert runner.name == runtime
    assert (out - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def test_explicit_attention_replaces_the_fused_call(graphs):
    _, _, deploy, x, _ = graphs
    before = [n for n in deploy.graph.nodes if n.target is F.scaled_dot_product_attention]
    gm = explicit_attention(__import__("copy").deepcopy(deploy))
    after = [n for n in gm.graph.nodes if n.target is F.scaled_dot_product_attention]
    assert len(before) == 2 and after == []


def test_runtime_names_and_missing_backends(graphs):
    _, _, deploy, x, _ = graphs
    assert resolve_runtime("best", "cpu") in RUNTIMES and resolve_runtime("best", "cpu") != "best"
    with pytest.raises(DeviceError, match="unknown runtime 'eagre'.*did you mean 'eager'"):
        make_runner(deploy, x, "eagre")
    with pytest.raises(DeviceError, match="runtime 'tensorrt' runs on CUDA only"):
        make_runner(deploy, x, "tensorrt", "cpu")


def test_compile_without_a_compiler_says_so(graphs, monkeypatch):
    import archc.runtime as R
    _, _, deploy, x, _ = graphs
    monkeypatch.setattr(R.shutil, "which", lambda name: None)
    with pytest.raises(DeviceError, match="needs a C\\+\\+ compiler"):
        make_runner(deploy, x, "compile")
