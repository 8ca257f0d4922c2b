"""int8 (ONNX Runtime QDQ) and fp16 fidelity: the figures are computed, the quantized file is read back, and bad
flags get one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

import archc  # noqa: E402
from archc.export.onnx_export import export_onnx  # noqa: E402
from archc.quant import count_qdq, fidelity, quantize_onnx_int8, sqnr_db  # noqa: E402
from archc.quant.evaluate import precision_table, torch_logits  # noqa: E402
from archc.train.calibration import quant_images  # noqa: E402
from archc.quant.onnx_int8 import run_onnx  # noqa: E402
from archc.testing import randomize_  # noqa: E402

SLICE = Path(__file__).resolve().parent / "data" / "fashion-mnist-slice"
TINY = {"name": "tiny", "num_classes": 10, "input_size": 32, "in_chans": 1, "layer_scale_init": 0.5,
        "stem": {"type": "mobileone", "kernel": 3},
        "stage_defaults": {"mlp_ratio": 2, "ffn": "convffn", "ffn_kernel": 3,
                           "downsample": {"type": "replk", "kernel": 5, "small_kernel": 3, "stride": 2}},
        "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
                   {"depth": 1, "width": 32, "mixer": "attention", "head_dim": 16}],
        "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.0625}}


def test_sqnr_and_fidelity_follow_their_definitions():
    ref = np.ones((100, 10))
    assert sqnr_db(ref, ref + 0.1) == pytest.approx(10 * np.log10(1000 / 10))  # signal 1000, noise 100 * 10 * 0.01
    assert sqnr_db(ref, ref) == float("inf")
    a = np.eye(4)[[0, 1, 2, 3]]
    b = np.eye(4)[[0, 1, 2, 0]]
    f = fidelity(a, b, np.array([0, 1, 3, 3]))
    assert (f.top1_fp32, f.top1, f.agreement) == (75.0, 50.0, 75.0) and f.drop == 25.0
    with pytest.raises(ValueError):
        fidelity(a, b[:3], np.zeros(4))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quant")
    torch.manual_seed(0)
    model = archc.reparameterize(randomize_(archc.build(TINY).eval(), seed=3))
    images = quant_images(str(SLICE), 32, 1, calibration_images=60, eval_images=200)
    onnx = export_onnx(model, torch.from_numpy(images.images[:1]), folder / "tiny.onnx")
    return folder, model, images, onnx


def test_calibration_and_held_out_images_come_from_different_splits(tiny):
    _, _, images, _ = tiny
    assert images.calibration.shape == (60, 1, 32, 32) and images.images.shape == (200, 1, 32, 32)
    assert "training split" in images.description and "test split" in images.description
    cal = {x.tobytes() for x in images.calibration}
    assert not any(x.tobytes() in cal for x in images.images)
    assert abs(float(images.calibration.mean())) < 1.0  # normalised as archc train feeds them


@pytest.mark.parametrize("calibration, per_channel", [("minmax", False), ("percentile", False), ("entropy", True)])
def test_int8_export_is_quantized_and_close_to_fp32(tiny, calibration, per_channel):
    folder, model, images, onnx = tiny
    out = folder / f"int8-{calibration}-{per_channel}.onnx"
    export = quantize_onnx_int8(onnx, out, images.calibration, calibration=calibration, per_channel=per_channel)
    hist = count_qdq(out)
    assert export.quantize_nodes == hist["QuantizeLinear"] > 0 and export.dequantize_nodes == hist["DequantizeLinear"]
    ref = torch_logits(model, images.images)
    f = fidelity(ref, run_onnx(out, images.images), images.labels)
    # 8-bit steps on every tensor of a 2-stage net: far from exact, far from noise (a wrong scale gives ~0 dB)
    assert 10 < f.sqnr_db < 60


def test_excluded_nodes_stay_in_float(tiny):
    import onnx as onnx_lib
    folder, _, images, path = tiny
    convs = [n.name for n in onnx_lib.load(str(path)).graph.node if n.op_type == "Conv"]
    full = quantize_onnx_int8(path, folder / "all.onnx", images.calibration, calibration="minmax")
    part = quantize_onnx_int8(path, folder / "part.onnx", images.calibration, calibration="minmax",
                              exclude=convs[:3])
    assert part.quantize_nodes < full.quantize_nodes and part.excluded == tuple(convs[:3])


def test_u8_activations_quantize_to_uint8_and_stay_close(tiny):
    """U8S8 (ONNX Runtime's native x86 layout): activations' zero points are uint8, weights' int8, and the
    result is as close to fp32 as S8S8."""
    import onnx as onnx_lib
    from onnx import TensorProto
    folder, model, images, path = tiny
    export = quantize_onnx_int8(path, folder / "u8.onnx", images.calibration, calibration="minmax",
                                activations="u8")
    graph = onnx_lib.load(str(export.path)).graph
    zero_points = {i.name: i.data_type for i in graph.initializer}
    q_types = {zero_points[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert q_types == {TensorProto.UINT8} and export.detail["activations"] == "u8"
    f = fidelity(torch_logits(model, images.images), run_onnx(export.path, images.images), images.labels)
    assert 10 < f.sqnr_db < 60
    from archc.errors import ExportError
    with pytest.raises(ExportError, match="activations 'u16' is not one of: s8, u8"):
        quantize_onnx_int8(path, folder / "x.onnx", images.calibration, activations="u16")


def test_a_degenerate_activation_is_one_clear_error(tiny, monkeypatch):
    """ONNX Runtime's histogram calibration raises numpy's ValueError on a tensor of (almost) no range: an
    ExportError naming the way out, not a traceback."""
    from onnxruntime import quantization as q

    from archc.errors import ExportError
    folder, _, images, path = tiny

    def degenerate(*a, **kw):
        raise ValueError("Too many bins for data range. Cannot create 2048 finite-sized bins.")
    monkeypatch.setattr(q, "quantize_static", degenerate)
    with pytest.raises(ExportError, match="percentile calibration failed: an activation has .* --calibration minmax"):
        quantize_onnx_int8(path, folder / "d.onnx", images.calibration)


def test_bad_calibration_images_are_refused(tiny):
    from archc.errors import ExportError
    folder, _, images, path = tiny
    bad = images.calibration.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ExportError, match="NaN"):
        quantize_onnx_int8(path, folder / "x.onnx", bad)
    with pytest.raises(ExportError, match="N x C x H x W"):
        quantize_onnx_int8(path, folder / "x.onnx", images.calibration[0])
    with pytest.raises(ExportError, match="calibration 'kl' is not one of: minmax, entropy, percentile"):
        quantize_onnx_int8(path, folder / "x.onnx", images.calibration, calibration="kl")


def test_precision_table_reports_fp32_fp16_and_int8(tiny):
    folder, model, images, path = tiny
    export = quantize_onnx_int8(path, folder / "t.onnx", images.calibration)
    rows = precision_table(model, path, images, int8=(folder / "t.onnx", export), fp16=True)
    by = {(r.precision, r.how.split()[0]): r.fidelity for r in rows}
    assert by[("fp32", "torch")].agreement == 100.0
    assert by[("fp32", "ONNX")].sqnr_db > 80  # the same float32 graph in another runtime
    fp16 = next(r for r in rows if r.precision == "fp16")
    assert "simulated" in fp16.how and fp16.fidelity.sqnr_db > 40  # fp16 keeps ~11 bits of each value


def _spec_file(tmp_path) -> Path:
    import yaml
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_cli_int8_export_prints_its_fidelity_as_json(tmp_path, capsys):
    from archc.cli import main
    torch.manual_seed(0)  # the export builds untrained weights: fixed, so no activation is degenerate by chance
    spec = _spec_file(tmp_path)
    code = main(["export", str(spec), "--format", "onnx", "--precision", "int8", "--calibrate-data", str(SLICE),
                 "--calibration-images", "40", "--eval-images", "100", "--out", str(tmp_path / "out"), "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["precision"]: r for r in doc["fidelity"]["rows"] if r["how"] != "torch (reference)"}
    assert rows["int8"]["quantize_nodes"] > 0 and Path(rows["int8"]["path"]).is_file()
    assert {"top1_fp32", "top1", "agreement", "sqnr_db", "drop"} <= set(rows["int8"])
    # archc's default remedies: per-channel weights, the most sensitive layer kept in float
    assert rows["int8"]["per_channel"] is True and len(rows["int8"]["kept_in_float"]) == 1
    code = main(["export", str(spec), "--format", "onnx", "--precision", "int8", "--calibrate-data", str(SLICE),
                 "--calibration-images", "40", "--eval-images", "100", "--out", str(tmp_path / "pt"), "--json",
                 "--per-tensor", "--keep-float", "0", "--activations", "u8"])
    assert code == 0
    row = [r for r in json.loads(capsys.readouterr().out)["fidelity"]["rows"] if r["precision"] == "int8"][0]
    assert row["per_channel"] is False and row["kept_in_float"] == [] and row["activations"] == "u8"


@pytest.mark.parametrize("extra, message", [
    (["--format", "onnx", "--precision", "int8"], "needs --calibrate-data"),
    (["--format", "torchscript", "--precision", "int8", "--calibrate-data", str(SLICE)], "add onnx to --format"),
    (["--format", "onnx", "--precision", "int8", "--calibrate-data", str(SLICE), "--eval-images", "0"],
     "must be >= 1"),
])
def test_cli_refuses_bad_precision_flags_in_one_line(tmp_path, capsys, extra, message):
    from archc.cli import main
    code = main(["export", str(_spec_file(tmp_path)), "--out", str(tmp_path / "out")] + extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_layer_sensitivity_names_every_quantizable_layer_by_spec_part(tiny):
    import onnx as onnx_lib

    from archc.quant.sensitivity import layer_sensitivity, spec_part
    _, model, images, path = tiny
    n = sum(1 for node in onnx_lib.load(str(path)).graph.node if node.op_type in ("Conv", "Gemm", "MatMul"))
    ref = torch_logits(model, images.images[:50])
    rows = layer_sensitivity(path, images.calibration, images.images[:50], ref, calibration="minmax")
    assert len(rows) == n and [r.sqnr_db for r in rows] == sorted(r.sqnr_db for r in rows)
    assert all(r.where.split("[")[0] in ("stem", "stages", "head", "final_conv") for r in rows), rows
    assert any(r.where.startswith("stages[1].blocks[0]") for r in rows)
    assert spec_part("stages.2.blocks.1.mlp.fc1") == "stages[2].blocks[1]" and spec_part("stem.0.reparam_conv") == "stem"


def test_cli_keep_float_names_the_layers_it_kept(tmp_path, capsys):
    from archc.cli import main
    torch.manual_seed(0)  # untrained weights, fixed (see above)
    code = main(["export", str(_spec_file(tmp_path)), "--format", "onnx", "--precision", "int8", "--calibrate-data",
                 str(SLICE), "--calibration-images", "20", "--eval-images", "40", "--keep-float", "2",
                 "--out", str(tmp_path / "out"), "--json"])
    assert code == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["fidelity"]["rows"] if r["precision"] == "int8")
    assert len(row["kept_in_float"]) == 2 and len(row["excluded"]) == 2 and "dB alone" in row["kept_in_float"][0]
