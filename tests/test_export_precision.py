"""Lower-precision exports (issue 22 item 1): fp16 ONNX through ONNX Runtime's converter, Core ML int8 weights
(W8A16) through coremltools.optimize, each file read back, and the Core ML row simulated in torch and labelled so.
A tiny 1-channel spec and the Fashion-MNIST slice keep each test to seconds."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

pytest.importorskip("onnxruntime")

import archc  # noqa: E402
from archc.errors import ExportError  # noqa: E402
from archc.export import export_coreml_int8, export_model, export_onnx_fp16  # noqa: E402
from archc.quant.evaluate import torch_logits  # noqa: E402
from archc.train.calibration import quant_images  # noqa: E402
from archc.quant.onnx_int8 import run_onnx  # noqa: E402
from archc.testing import randomize_  # noqa: E402

SLICE = Path(__file__).resolve().parent / "data" / "fashion-mnist-slice"
#: tests/test_bench_cli.py's TINY with one grey channel and an attention stage (so linear weights are covered)
TINY = {"name": "tiny_prec", "num_classes": 10, "input_size": 32, "in_chans": 1, "layer_scale_init": 0.5,
        "stage_defaults": {"mlp_ratio": 2, "ffn_kernel": 3,
                           "downsample": {"type": "replk", "kernel": 3, "small_kernel": None, "stride": 2}},
        "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
                   {"depth": 1, "width": 32, "mixer": "attention", "head_dim": 16}],
        "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.25}}
FM_NORM = ["--mean", "0.286", "--std", "0.353"]  # the Core ML image input of a grey Fashion-MNIST model
needs_coremltools = pytest.mark.skipif(importlib.util.find_spec("coremltools") is None,
                                       reason="coremltools is not installed")


def _deploy(seed: int):
    torch.manual_seed(seed)  # build() draws the conv weights, randomize_ the BatchNorm statistics and layer scales
    return archc.reparameterize(randomize_(archc.build(TINY).eval(), seed=seed), verify=False).eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prec")
    images = quant_images(str(SLICE), 32, 1, calibration_images=20, eval_images=200)
    model = _deploy(3)
    example = torch.from_numpy(images.images[:1])
    (onnx_res,) = export_model(model, example, ["onnx"], folder / "fp32", name="tiny")
    return folder, model, images, example, onnx_res.path


def _conv_linear(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# ----------------------------------------------------------------------------------------------- fp16 ONNX
def test_fp16_onnx_has_float16_weights_and_agrees_with_fp32_within_fp16_rounding(setup):
    """Read back independently: every float initializer is float16, input/output float32. Tolerance: twice the
    error of running this same graph entirely in IEEE fp16 in torch (weights and every activation rounded, 11-bit
    significand): what fp16 rounding alone costs this network; a runtime that keeps more in fp32 (ONNX Runtime's
    CPU provider, see the placement test) stays below it. A different model's file must fail the same bound."""
    import onnx
    from onnx import TensorProto
    folder, model, images, example, fp32 = setup
    res = export_onnx_fp16(model, example, fp32, folder / "tiny.fp16.onnx")
    assert res.path.name == "tiny.fp16.onnx" and res.verified == "compared" and res.detail["precision"] == "fp16"
    graph = onnx.load(str(res.path)).graph
    kinds = [i.data_type for i in graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    weights = len(_conv_linear(model))
    assert kinds.count(TensorProto.FLOAT16) == res.detail["fp16_initializers"] >= weights
    assert TensorProto.FLOAT not in kinds
    assert {v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output)} == {TensorProto.FLOAT}

    x = images.images
    ref = torch_logits(model, x)
    tol = 2 * float(np.abs(torch_logits(model, x, torch.float16) - ref).max())
    err = float(np.abs(run_onnx(res.path, x) - ref).max())
    assert 0 < err <= tol, (err, tol)  # > 0: the weights really were rounded; the file is not the fp32 one
    # the bound is tight enough to catch a wrong file: another model's fp16 export is far outside it
    wrong = _deploy(4)
    other = export_onnx_fp16(wrong, example, export_model(wrong, example, ["onnx"], folder / "o")[0].path,
                             folder / "other.fp16.onnx")
    assert float(np.abs(run_onnx(other.path, x) - ref).max()) > 10 * tol


def test_fp16_onnx_reports_what_onnx_runtime_cpu_runs_in_fp16(setup):
    """The session's own graph is read: compute ops are counted as fp16 or fp32, and every op moved to fp32 (no
    fp16 CPU kernel) came with inserted Casts."""
    folder, model, _, example, fp32 = setup
    res = export_onnx_fp16(model, example, fp32, folder / "p.fp16.onnx")
    place = res.detail["ort_cpu_placement"]
    assert "error" not in place, place
    assert place["fp16_op_count"] + place["fp32_op_count"] > 0
    assert "Conv" in {**place["fp16_ops"], **place["fp32_ops"]}
    if place["fp32_op_count"]:
        assert place["inserted_casts"] > 0 and "fp32" in res.detail["runtime"]


def test_an_fp16_onnx_that_stayed_float32_is_an_error(setup, monkeypatch):
    import onnxruntime.transformers.float16 as f16
    folder, model, _, example, fp32 = setup
    monkeypatch.setattr(f16, "convert_float_to_float16", lambda m, **kw: m)  # a converter that does nothing
    with pytest.raises(ExportError, match="stayed in float32"):
        export_onnx_fp16(model, example, fp32, folder / "same.fp16.onnx")


# -------------------------------------------------------------------------------------------- Core ML int8
@pytest.fixture(scope="module")
def int8_package(setup):
    pytest.importorskip("coremltools")
    from archc.export import ImageNormalization
    folder, model, _, example, _ = setup
    (fp16,) = export_model(model, example, ["coreml"], folder / "cm", name="tiny",
                           normalization=ImageNormalization((0.286,), (0.353,)))
    return export_coreml_int8(model, example, fp16.path, folder / "cm" / "tiny.int8.mlpackage")


@needs_coremltools
def test_coreml_int8_package_has_one_int8_weight_per_conv_and_linear(setup, int8_package):
    """Read the saved program back (not the exporter's own report): one quantized-weight op per conv/linear weight
    of the deploy graph (every size: weight_threshold 0), int8 data, one scale per output channel, zero offset,
    feeding only conv/linear ops, and no conv/linear fed by a float const."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil
    _, model, _, _, _ = setup
    mlmodel = ct.models.MLModel(str(int8_package.path), skip_model_load=True)
    spec = mlmodel.get_spec()
    ops = [op for fn in load_mil(spec, spec.specificationVersion, mlmodel.weights_dir).functions.values()
           for op in fn.operations]
    quant = [op for op in ops if op.op_type in ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")]
    expected = _conv_linear(model)
    assert len(quant) == len(expected) == int8_package.detail["quantized_weight_ops"] == 18
    for op in quant:
        data = op.quantized_data.val if op.op_type == "constexpr_affine_dequantize" else op.data.val
        assert data.dtype == np.int8 and np.asarray(op.scale.val).shape == (data.shape[0],)
        assert not np.asarray(op.zero_point.val).any()
        assert {c.op_type for c in op.outputs[0].child_ops} <= {"conv", "linear"}
    float_fed = [op.name for op in ops if op.op_type in ("conv", "linear") and op.weight.op.op_type == "const"]
    assert float_fed == []
    assert int8_package.detail["scheme"] == "W8A16" and "macOS" in int8_package.detail["why_not_w8a8"]
    assert mlmodel.user_defined_metadata["archc.precision"].startswith("int8 weights")


@needs_coremltools
def test_coreml_int8_that_stayed_float_is_an_error(setup, monkeypatch, tmp_path):
    import coremltools.optimize.coreml as cto
    from archc.export import ImageNormalization
    _, model, _, example, _ = setup
    (fp16,) = export_model(model, example, ["coreml"], tmp_path, name="t",
                           normalization=ImageNormalization((0.3,), (0.3,)))
    monkeypatch.setattr(cto, "linear_quantize_weights", lambda m, config: m)  # a quantizer that does nothing
    with pytest.raises(ExportError, match="stayed float"):
        export_coreml_int8(model, example, fp16.path, tmp_path / "t.int8.mlpackage")


def test_int8_weight_rule_is_symmetric_per_channel_with_ties_to_even():
    from archc.export.coreml_quant import int8_weight
    w = np.array([[1.0, -0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [-2.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    q, scale = int8_weight(w)
    assert scale.tolist() == pytest.approx([1 / 127, 0.0, 2 / 127])
    assert q.tolist() == [[127, -64, 32, 0], [0, 0, 0, 0], [-127, 64, 0, 0]]  # -63.5 -> -64, 31.75 -> 32, 63.5 -> 64


@needs_coremltools
def test_simulated_int8_weights_are_exactly_the_packages(setup, int8_package):
    from archc.export.coreml_quant import fake_quantize_weights, match_package, read_int8_package
    _, model, _, _, _ = setup
    sim, rules = fake_quantize_weights(model, torch.float16)
    check = match_package(rules, read_int8_package(int8_package.path).weights)
    assert check == {"simulated_weights": 18, "matched_in_package": 18, "max_int8_step_difference": 0,
                     "max_scale_relative_difference": 0.0, "zero_scale_channels": 0}
    # and the simulation changed the weights (it is not the fp32 graph under another name)
    name, conv = _conv_linear(model)[0]
    assert not torch.equal(dict(sim.named_modules())[name].weight, conv.weight)


# ----------------------------------------------------------------------------------------------------- CLI
def _spec_file(tmp_path) -> Path:
    import yaml
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _cli(tmp_path, capsys, *flags):
    from archc.cli import main
    torch.manual_seed(0)
    code = main(["export", str(_spec_file(tmp_path)), "--calibrate-data", str(SLICE), "--calibration-images", "20",
                 "--eval-images", "60", "--out", str(tmp_path / "out"), "--json", *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@needs_coremltools
def test_cli_int8_coreml_writes_w8a16_and_a_simulated_row(tmp_path, capsys):
    doc = _cli(tmp_path, capsys, "--format", "onnx,coreml", "--precision", "int8", *FM_NORM)
    by_path = {Path(e["path"]).name: e for e in doc["exports"]}
    pkg = by_path["tiny_prec.int8.mlpackage"]
    assert pkg["quantized_weight_ops"] == pkg["graph_conv_linear_weights"] > 0 and pkg["float_weights_left"] == 0
    assert by_path["tiny_prec.mlpackage"]["precision"] == "fp16"  # the plain package keeps Core ML's default
    rows = [r for r in doc["fidelity"]["rows"] if r["precision"] == "int8"]
    onnx_row = next(r for r in rows if r["format"] == "onnx")
    assert onnx_row["quantize_nodes"] > 0 and len(onnx_row["kept_in_float"]) == 1  # int8 ONNX unchanged
    row = next(r for r in rows if r["format"] == "coreml")
    assert row["simulated"] is True and "simulated in torch (Core ML predicts only on macOS)" in row["how"]
    assert "W8A16" in row["how"] and row["activations"] == "fp16" and "macOS" in row["why_not_w8a8"]
    assert row["simulation_check"]["matched_in_package"] == row["simulation_check"]["simulated_weights"]
    assert {"top1", "agreement", "sqnr_db"} <= set(row) and row["agreement"] > 50


def test_cli_fp16_onnx_gets_a_file_and_a_fidelity_row(tmp_path, capsys):
    doc = _cli(tmp_path, capsys, "--format", "onnx", "--precision", "fp16")
    (fp16,) = [e for e in doc["exports"] if e["path"].endswith(".fp16.onnx")]
    assert fp16["precision"] == "fp16" and fp16["fp16_initializers"] > 0 and Path(fp16["path"]).is_file()
    row = next(r for r in doc["fidelity"]["rows"] if r["precision"] == "fp16" and r["format"] == "onnx")
    assert row["path"] == fp16["path"] and "ONNX Runtime CPU" in row["how"] and row["sqnr_db"] > 30
    assert any(r["precision"] == "fp16" and r.get("simulated") for r in doc["fidelity"]["rows"])  # torch's, as before


def test_cli_int8_without_onnx_or_coreml_is_one_line(tmp_path, capsys):
    from archc.cli import main
    code = main(["export", str(_spec_file(tmp_path)), "--format", "torchscript", "--precision", "int8",
                 "--calibrate-data", str(SLICE), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "add onnx to --format (or coreml)" in err and len(err.strip().splitlines()) == 1
