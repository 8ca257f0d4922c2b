"""Cross-layer equalization and bias correction (archc.quant.remedies): equalization leaves the function unchanged
(float32 rounding aside) and balances the ranges, never across GELU; bias correction models ONNX Runtime's weight
quantizer exactly and removes the mean output shift that rounding the weights adds."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

pytest.importorskip("onnxruntime")

import archc  # noqa: E402
from archc.export.onnx_export import export_onnx  # noqa: E402
from archc.passes.graph import module  # noqa: E402
from archc.quant import correct_bias, equalize, quantize_onnx_int8  # noqa: E402
from archc.quant.remedies import (_in_ranges, _out_ranges, _post_scale, _scale_inputs,  # noqa: E402
                                  fake_quantize_weight, int8_codes, ort_weight_check)
from archc.testing import FLOAT64_SHARE, OTHER_CPU_ROUNDING, float32_error, randomize_, seeded_input  # noqa: E402
from archc.train.calibration import quant_images  # noqa: E402

SLICE = Path(__file__).resolve().parent / "data" / "fashion-mnist-slice"
#: FastViT-like: a pooling-mixer stage (its ConvFFN's fc2 is followed by a layer-scale Mul, which ONNX Runtime folds
#: into the conv before quantizing), an attention stage, GELU everywhere but the SE's ReLU
FASTVIT = {"name": "tiny_fastvit", "num_classes": 10, "input_size": 32, "in_chans": 1, "layer_scale_init": 0.5,
           "stem": {"type": "mobileone", "kernel": 3},
           "stage_defaults": {"mlp_ratio": 2, "ffn": "convffn", "ffn_kernel": 3,
                              "downsample": {"type": "replk", "kernel": 5, "small_kernel": 3, "stride": 2}},
           "stages": [{"depth": 1, "width": 16, "mixer": {"type": "pool", "pool_size": 3}},
                      {"depth": 1, "width": 32, "mixer": "attention", "head_dim": 16}],
           "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.0625}}
#: MobileOne-like: a plain chain of depthwise kxk -> ReLU -> pointwise 1x1 -> ReLU -> ..., linear head
MOBILEONE = {"name": "tiny_mobileone", "num_classes": 10, "input_size": 32, "in_chans": 1, "activation": "relu",
             "stem": {"type": "mobileone_block", "width": 8, "kernel": 3, "stride": 2},
             "stage_defaults": {"conv_branches": 2, "scale_branch": True},
             "stages": [{"depth": 2, "width": 16, "mixer": {"type": "mobileone", "kernel": 3, "stride": 2}},
                        {"depth": 2, "width": 32, "mixer": {"type": "mobileone", "kernel": 3, "stride": 2}}],
             "head": "linear"}


@pytest.fixture(scope="module")
def graphs():
    """Deploy graphs lowered from train graphs with random weights and random BatchNorm statistics / layer scales."""
    out = {}
    for spec in (FASTVIT, MOBILEONE):
        torch.manual_seed(0)
        out[spec["name"]] = archc.reparameterize(randomize_(archc.build(spec).eval(), seed=3))
    return out


def _state(gm):
    return {k: v.clone() for k, v in gm.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["tiny_fastvit", "tiny_mobileone"])
def test_equalization_is_exact_and_balances_the_ranges(graphs, name):
    """The equalized graph computes the same function: in float64 (weights not rounded to float32) within float64
    rounding, and in float32 within float32 rounding; and every pair's ranges r1_i, r2_i end up equal."""
    gm = graphs[name]
    before = _state(gm)
    report = equalize(gm)
    assert _same(before, _state(gm)), "equalize modified its input"
    assert report.converged and report.changed == len(report.pairs) > 0
    x = seeded_input((8, 1, 32, 32))
    out32, out64, e32 = float32_error(gm, x)
    scale = float(out64.abs().max())
    with torch.no_grad():
        eq64 = equalize(copy.deepcopy(gm).double()).graph(x.double())
        eq32 = report.graph(x)
    # float64: what is left is float64 rounding, ~2**-29 of float32's measured here (FLOAT64_SHARE: 2**-20, 512x room)
    tol64 = max(FLOAT64_SHARE * e32, 2.0 ** -53 * scale)
    gap64 = float((eq64 - out64).abs().max())
    assert gap64 <= tol64, f"float64 gap {gap64:.3g} > {tol64:.3g}: equalization changed the function"
    # float32: each graph is its own float32 rounding (e32 here, the same kind and size for both: one more rounding
    # per rescaled weight) away from the exact function, so ~2 e32 apart; OTHER_CPU_ROUNDING (4) leaves room
    gap32 = float((eq32.double() - out32.double()).abs().max())
    assert gap32 <= OTHER_CPU_ROUNDING * e32, f"float32 gap {gap32:.3g} vs float32 rounding {e32:.3g}"
    # balanced: r1_i = r2_i within the convergence tolerance (1%), where the raw graph was off by bits
    assert max(p.imbalance_before for p in report.pairs) > 1.0
    for p in report.pairs:
        m1, m2 = report.graph.get_submodule(p.conv1), report.graph.get_submodule(p.conv2)
        r1, r2 = _out_ranges(m1.weight.detach().double()), _in_ranges(m2, m2.weight.detach().double())
        assert torch.allclose(r1, r2, rtol=0.02, atol=0), p
        assert p.imbalance_after < np.log2(1.02)


def test_pairs_are_found_in_fastvit_and_mobileone_never_across_gelu(graphs):
    fv = equalize(graphs["tiny_fastvit"])
    pairs = {(p.conv1, p.via, p.conv2) for p in fv.pairs}
    # ConvFFN's depthwise conv -> fc1 and the downsample's grouped kxk -> 1x1 (nothing between), the SE's ReLU pair
    assert ("stages.0.blocks.0.mlp.conv.conv", (), "stages.0.blocks.0.mlp.fc1") in pairs
    assert ("stages.1.downsample.proj.0.reparam_conv", (), "stages.1.downsample.proj.1.reparam_conv") in pairs
    assert ("final_conv.se.fc1", ("final_conv.se.act",), "final_conv.se.fc2") in pairs
    gelu = {str(n.target) for n in graphs["tiny_fastvit"].graph.nodes
            if isinstance(module(graphs["tiny_fastvit"], n), nn.GELU)}
    assert gelu and not any(set(p.via) & gelu for p in fv.pairs)
    assert not any(p.conv1.endswith("mlp.fc1") for p in fv.pairs)  # fc1 -> GELU -> fc2
    mo = equalize(graphs["tiny_mobileone"])
    via = {p.via for p in mo.pairs}
    assert all(len(v) >= 1 and v[0].endswith(".act") for v in via)  # every pair through its ReLU
    assert any(p.conv2 == "head.fc" and "mean" in p.via for p in mo.pairs)  # last conv -> ReLU -> mean -> classifier
    assert mo.iterations > 1  # a chain: a conv in two pairs needs several sweeps


def test_equalizing_across_gelu_would_be_caught(graphs):
    """The exactness check can fail: the same rescaling applied across ConvFFN's GELU (fc1 -> GELU -> fc2) moves the
    float64 logits by far more than the tolerance above."""
    g64 = copy.deepcopy(graphs["tiny_fastvit"]).double()
    x = seeded_input((8, 1, 32, 32))
    _, _, e32 = float32_error(graphs["tiny_fastvit"], x)
    with torch.no_grad():
        ref = g64(x.double())
        m1, m2 = g64.get_submodule("stages.0.blocks.0.mlp.fc1"), g64.get_submodule("stages.0.blocks.0.mlp.fc2")
        s = (_out_ranges(m1.weight) / _in_ranges(m2, m2.weight)).sqrt()
        m1.weight.div_(s.reshape(-1, 1, 1, 1))
        m1.bias.div_(s)
        m2.weight.copy_(_scale_inputs(m2, m2.weight, s))
        gap = float((g64(x.double()) - ref).abs().max())
    assert gap > 1e3 * max(FLOAT64_SHARE * e32, 2.0 ** -53 * float(ref.abs().max()))


@pytest.mark.parametrize("per_channel", [False, True])
def test_weight_quantizer_is_onnx_runtimes(per_channel):
    """int8_codes against onnxruntime.quantization's own quantize_data (symmetric QInt8), tensor by tensor or
    row by row, including a row of zeros and a value on a rounding tie."""
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import quantize_data
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    w = w * torch.logspace(-3, 1, 6).reshape(-1, 1, 1, 1)   # rows 10**-3 .. 10 apart: one per-tensor scale
    w[2] = 0.0
    w[4] = 0.001
    w[4, 0, 0, 0], w[4, 0, 0, 1], w[4, 0, 0, 2] = 127 / 128, 0.5 / 128, 1.5 / 128  # scale 1/128: two ties
    codes, scale = int8_codes(w, per_channel)
    rows = [w[i].numpy().ravel() for i in range(len(w))] if per_channel else [w.numpy().ravel()]
    ours = codes.reshape(len(rows), -1).numpy()
    for i, row in enumerate(rows):
        _, s, q = quantize_data(row, TensorProto.INT8, symmetric=True)
        assert np.array_equal(ours[i], q.astype(np.float32)) and np.float32(s) == scale[i].item(), i


@pytest.fixture(scope="module")
def images():
    return quant_images(str(SLICE), 32, 1, calibration_images=60, eval_images=40)


@pytest.mark.parametrize("per_channel", [False, True])
def test_bias_correction_models_the_int8_weights_onnx_runtime_writes(graphs, images, tmp_path, per_channel):
    """The weights bias correction assumes are the ones in the quantized file: every conv/linear weight's int8 codes
    and scales read back equal, including fc2's with the layer-scale Mul folded in by ONNX Runtime."""
    bc = correct_bias(graphs["tiny_fastvit"], images.calibration, per_channel=per_channel)
    assert "stages.0.blocks.0.mlp.fc2" in bc.to_dict()["folded_scale"]
    path = export_onnx(bc.graph, torch.from_numpy(images.images[:1]), tmp_path / "bc.onnx")
    q = quantize_onnx_int8(path, tmp_path / "bc.int8.onnx", images.calibration, calibration="minmax",
                           per_channel=per_channel)
    check = ort_weight_check(bc.graph, q.path, per_channel)
    assert check["compared"] == len(bc.layers) and check["exact"] == check["compared"] and not check["missing"], check


def _weight_only_int8(gm, per_channel):
    """``gm`` with every conv/linear weight rounded as ONNX Runtime will (a folded layer scale included), activations
    in float: weight rounding alone, in torch."""
    sim = copy.deepcopy(gm)
    with torch.no_grad():
        for n in sim.graph.nodes:
            m = module(sim, n)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                gamma = _post_scale(sim, n)
                g = torch.ones(1) if gamma is None else gamma.reshape(-1, 1, 1, 1)
                m.weight.copy_(fake_quantize_weight(m.weight * g, per_channel) / g)
    return sim


@pytest.mark.parametrize("per_channel", [False, True])
def test_bias_correction_removes_the_mean_shift_of_weight_rounding(graphs, images, per_channel):
    """On the calibration images, with int8 weights and float activations: the first conv (whose input is the image,
    the same with and without int8) has no mean output shift left but float32 rounding, where uncorrected it has one;
    and the logits' mean shift shrinks (to under half). The input graph is not modified; a skipped layer keeps its
    bias."""
    gm = graphs["tiny_fastvit"]
    before = _state(gm)
    skipped = correct_bias(gm, images.calibration, per_channel=per_channel, skip=["head.fc"])
    assert torch.equal(skipped.graph.get_submodule("head.fc").bias, gm.get_submodule("head.fc").bias)
    assert skipped.skipped == ["head.fc"] and skipped.changed == len(skipped.layers) > 10
    bc = correct_bias(gm, images.calibration, per_channel=per_channel)
    assert _same(before, _state(gm)), "correct_bias modified its input"
    x = torch.from_numpy(images.calibration)
    first = next(n for n in gm.graph.nodes if n.op == "call_module")
    conv = module(gm, first)
    with torch.no_grad():
        ref_y, ref_logits = conv(x), gm(x)
        shifts = {}
        for label, g in (("raw", gm), ("corrected", bc.graph)):
            sim = _weight_only_int8(g, per_channel)
            y = module(sim, next(n for n in sim.graph.nodes if n.op == "call_module"))(x)
            shifts[label] = (float((y - ref_y).double().mean(dim=(0, 2, 3)).abs().max()),
                             float((sim(x) - ref_logits).double().mean(0).abs().max()))
    # each float32 output is within (fan-in) units of roundoff of max|y| of its exact value, in both graphs
    fan_in = conv.weight[0].numel()
    tol = 2 * fan_in * 2.0 ** -24 * float(ref_y.abs().max())
    assert shifts["corrected"][0] <= tol < shifts["raw"][0], shifts
    assert shifts["corrected"][1] < 0.5 * shifts["raw"][1], shifts
