"""Export of deploy graphs: every shipped spec to ONNX (onnxruntime within 1e-4), TorchScript and
torch.export by reloading, Core ML (package validates, no batch_norm, no residual add the pass removed)
for representative specs. Small inputs (64x64) keep it fast; BN statistics and layer scales randomised."""
from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from archc import load_spec
from archc.spec import spec_to_dict
from archc.analysis.profile import profile_graph
from archc.builder import build
from archc.errors import ExportError
from archc.export import (CoreMLExpectation, CoreMLReport, ImageNormalization, check_coreml, export_model,
                          inspect_coreml, parse_formats)
from archc.passes import reparameterize
from archc.testing import randomize_

from conftest import PARITY_DEEP, SPECS, shipped_specs

RES = 64
TINY = {
    "name": "tiny_hybrid", "num_classes": 10, "input_size": 32, "layer_scale_init": 1.0e-5,
    "stem": {"type": "mobileone", "kernel": 3},
    "stage_defaults": {"mlp_ratio": 2, "ffn": "convffn", "ffn_kernel": 3,
                       "downsample": {"type": "replk", "kernel": 5, "small_kernel": 3, "stride": 2}},
    "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
               {"depth": 1, "width": 32, "mixer": "attention", "head_dim": 16,
                "pos_enc": {"type": "repcpe", "kernel": 3}}],
    "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.25},
}


@functools.lru_cache(maxsize=None)
def _deploy(name: str, seed: int = 0):
    """(spec, eval-mode train model, deploy graph) at 64x64, cached across tests. The pass's own
    equivalence check is skipped: every test here compares the exported file with the train graph or
    the deploy graph itself, and tests/test_reparam* own the pass's verification."""
    src = TINY if name == "tiny" else SPECS / f"{name}.yaml"
    spec = load_spec(src, overrides={"input_size": RES if name != "tiny" else TINY["input_size"]})
    train = randomize_(build(spec), seed=seed).eval()
    return spec, train, reparameterize(train, verify=False)


def _example(spec, batch=1):
    return torch.randn((batch, spec.in_chans) + tuple(spec.input_size), generator=torch.Generator().manual_seed(7))


def _distinct_at(res: int):
    """Shipped specs, minus those identical to another once the input size is fixed (sa36_384 at 64x64
    *is* sa36 at 64x64; some ablations are paper variants): the id names all of them. Deep variants are
    marked slow (still run by default)."""
    groups = {}
    for path in sorted((p for p in shipped_specs() if p.stem not in PARITY_DEEP),
                       key=lambda p: (p.stem.startswith("ablation"), p.stem)):
        d = spec_to_dict(load_spec(path, overrides={"input_size": res}))
        d.pop("name", None)
        groups.setdefault(json.dumps(d, sort_keys=True, default=str), []).append(path)
    out = []
    for paths in groups.values():
        spec = load_spec(paths[0])
        deep = sum(spec.depths) > 12
        out.append(pytest.param(paths[0], id="=".join(p.stem for p in paths),
                                marks=[pytest.mark.slow] if deep else []))
    return out


@pytest.mark.parametrize("path", _distinct_at(RES))
def test_every_shipped_spec_exports_to_onnx_within_1e4(path, tmp_path):
    spec, train, gm = _deploy(path.stem)
    x = _example(spec)
    (res,) = export_model(gm, x, ["onnx"], tmp_path, name=spec.name)
    assert res.verified == "compared"
    assert res.max_abs_error <= 1e-4 * max(1.0, res.max_abs_output), res
    # and the file computes what the *train-time* graph computes, not only the deploy graph
    from archc.export.onnx_export import run_onnx
    with torch.no_grad():
        ref = train(x)
    assert (run_onnx(res.path, x) - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())
    import onnx
    assert not [n.name for n in onnx.load(str(res.path)).graph.node if n.op_type == "Identity"]


@pytest.mark.parametrize("name", ["t8", "sa12", "poolformer_s12"])
def test_torchscript_and_exported_program_reload_and_match(name, tmp_path):
    spec, _, gm = _deploy(name)
    results = export_model(gm, _example(spec), ["torchscript", "exported-program"], tmp_path, name=spec.name)
    assert [r.format for r in results] == ["torchscript", "exported-program"]
    for r in results:
        assert r.path.is_file() and r.verified == "compared"
        assert r.max_abs_error <= 1e-5 * max(1.0, r.max_abs_output)


def test_onnx_has_dynamic_batch(tmp_path):
    from archc.export.onnx_export import run_onnx
    spec, _, gm = _deploy("tiny")
    (res,) = export_model(gm, _example(spec), ["onnx"], tmp_path)
    x4 = _example(spec, batch=4)
    with torch.no_grad():
        ref = gm(x4)
    assert torch.allclose(run_onnx(res.path, x4), ref, atol=1e-5)


def test_a_wrong_export_is_caught(tmp_path):
    """The check compares against torch: a file from a different model must fail it."""
    from archc.export import _compare
    spec, _, gm = _deploy("tiny")
    _, _, other = _deploy("tiny", seed=1)
    x = _example(spec)
    with torch.no_grad():
        ref, wrong = gm(x), other(x)
    with pytest.raises(ExportError, match="differs from torch"):
        _compare("onnx", ref, wrong, 1e-4)
    with pytest.raises(ExportError, match="shape"):
        _compare("onnx", ref, wrong[:, :5], 1e-4)


# ---------------------------------------------------------------------------------------- Core ML
needs_coremltools = pytest.mark.skipif(importlib.util.find_spec("coremltools") is None,
                                       reason="coremltools is not installed")


@needs_coremltools
@pytest.mark.parametrize("name", ["sa12", "poolformer_s12"])
def test_coreml_package_validates_without_batch_norm(name, tmp_path):
    """SA12 covers RepMixer, attention, RepCPE, the SE head; poolformer the conv stem, pooling, GroupNorm
    and the mlp FFN (its GroupNorm affines are the only batch_norm ops Core ML may show)."""
    spec, _, gm = _deploy(name)
    x = _example(spec)
    prof = profile_graph(gm, x)
    residual = prof.residual_adds()
    group_norms = sum(1 for n in prof.nodes if n.kind == "groupnorm")
    assert not any(n.kind == "batchnorm" for n in prof.nodes)
    (res,) = export_model(gm, x, ["coreml"], tmp_path, name=spec.name)
    assert res.path.suffix == ".mlpackage" and res.path.is_dir()
    report = inspect_coreml(res.path)
    assert report.batch_norms == group_norms  # 0 for SA12
    assert report.spec_version >= 7 and report.input_name == "image" and report.input_kind == "imageType"
    assert report.precision == "fp16"
    assert 0 < report.residual_adds <= residual + group_norms
    assert report.op_histogram["conv"] > 0
    if name == "sa12":
        assert report.op_histogram.get("softmax", 0) == spec.stages[3].depth


@needs_coremltools
def test_coreml_fp32_and_normalization_metadata(tmp_path):
    spec, _, gm = _deploy("tiny")
    norm = ImageNormalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    (res,) = export_model(gm, _example(spec), ["coreml"], tmp_path, fp32=True, normalization=norm)
    report = inspect_coreml(res.path)
    assert report.precision == "fp32"
    assert report.metadata["archc.precision"] == "fp32"
    assert "mean=0.5,0.5,0.5" in report.metadata["archc.normalization"]


@needs_coremltools
def test_coreml_check_rejects_the_train_graph(tmp_path):
    """The train-time graph keeps BatchNorms Core ML cannot fold (identity branches): the check must say so."""
    spec, train, gm = _deploy("tiny")
    x = _example(spec)
    deploy_expect = CoreMLExpectation.from_graph(gm, x)
    assert deploy_expect.batch_norms == 0
    with pytest.raises(ExportError, match="batch_norm ops remain"):
        export_model(train, x, ["coreml"], tmp_path, coreml_expect=deploy_expect)


def test_check_coreml_names_each_problem():
    rep = CoreMLReport(path=Path("m.mlpackage"), spec_version=6, input_name="x", input_kind="multiArrayType",
                       precision="fp16", op_histogram={"batch_norm": 3, "conv": 4}, residual_adds=5)
    with pytest.raises(ExportError) as e:
        check_coreml(rep, CoreMLExpectation(batch_norms=0, residual_adds=2))
    msg = str(e.value)
    assert "version 6" in msg and "not an image" in msg and "3 batch_norm" in msg and "5 residual adds" in msg
    ok = CoreMLReport(Path("ok"), 7, "image", "imageType", "fp16", {"conv": 1, "batch_norm": 2}, 2)
    check_coreml(ok, CoreMLExpectation(batch_norms=2, residual_adds=2, norms=2))
    with pytest.raises(ExportError, match="2 batch_norm ops remain"):
        check_coreml(ok, CoreMLExpectation(batch_norms=0, residual_adds=2))


def test_image_normalization_split_is_exact():
    """Core ML computes pixel/255 - mean (ImageType bias) then x * (1/std) in the graph: same as torch's."""
    norm = ImageNormalization()
    px = torch.randint(0, 256, (1, 3, 8, 8)).float()
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor(norm.std).view(1, 3, 1, 1)
    split = (px / 255.0 - mean) * inv_std
    assert torch.allclose(split, norm.apply(px / 255.0), atol=1e-6)


# ------------------------------------------------------------------------------------------- errors
def test_parse_formats_errors():
    assert parse_formats("onnx, coreml,onnx") == ["onnx", "coreml"]
    with pytest.raises(ExportError, match="unknown export format 'onx'.*did you mean 'onnx'"):
        parse_formats("onx")
    with pytest.raises(ExportError, match="no export format"):
        parse_formats(" , ")


def test_cli_export_json_and_errors(tmp_path, capsys):
    from archc.cli import main
    spec_file = tmp_path / "tiny.yaml"
    import yaml
    spec_file.write_text(yaml.safe_dump(TINY))
    assert main(["export", str(spec_file), "--format", "onnx,torchscript", "--out", str(tmp_path / "o"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["graph"] == "deploy" and [e["format"] for e in out["exports"]] == ["onnx", "torchscript"]
    assert all(e["max_abs_error"] <= 1e-4 for e in out["exports"])
    assert (tmp_path / "o" / "tiny_hybrid.onnx").is_file()
    assert main(["export", str(spec_file), "--format", "tflite", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archc: error: unknown export format 'tflite'") and "Traceback" not in err
    assert main(["export", str(spec_file), "--format", "coreml", "--mean", "0.5,0.5", "--out", str(tmp_path)]) == 2
    assert "expected 3 values" in capsys.readouterr().err


def test_cli_export_cpu_kernels(tmp_path, capsys):
    """--cpu-kernels writes the lowered graph (a repeat + depthwise conv where the deploy graph has a
    channel-multiplier conv), verified like any export; Core ML and --train refuse it."""
    import onnx
    import yaml

    from archc.cli import main
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(TINY))
    groups = {}
    for flag in ([], ["--cpu-kernels"]):
        out_dir = tmp_path / ("lowered" if flag else "plain")
        assert main(["export", str(spec_file), "--format", "onnx", "--out", str(out_dir), "--json"] + flag) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["exports"][0]["max_abs_error"] <= 1e-4
        g = onnx.load(str(out_dir / "tiny_hybrid.onnx")).graph
        convs = [n for n in g.node if n.op_type == "Conv"]
        groups[bool(flag)] = sorted(a.i for n in convs for a in n.attribute if a.name == "group")
        if flag:
            assert any(n.op_type == "Expand" for n in g.node)
    assert groups[False] != groups[True]  # the multiplier convs became depthwise ones
    for bad in (["--format", "coreml"], ["--format", "onnx", "--train"]):
        assert main(["export", str(spec_file), "--cpu-kernels", "--out", str(tmp_path)] + bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("archc: error: --cpu-kernels") and "Traceback" not in err


def test_onnx_uses_opset_20_gelu_and_carries_preprocessing_and_program_input_is_image(tmp_path):
    import onnx
    import onnxruntime as ort
    spec, _, gm = _deploy("tiny")
    norm = ImageNormalization(mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    onnx_res, prog_res = export_model(gm, _example(spec), ["onnx", "exported-program"], tmp_path, normalization=norm,
                                      metadata={"author": "me", "archc.model": spec.name})
    ops = {n.op_type for n in onnx.load(str(onnx_res.path)).graph.node}
    assert "Gelu" in ops and "Erf" not in ops and onnx_res.detail["opset"] == 20
    meta = ort.InferenceSession(str(onnx_res.path)).get_modelmeta().custom_metadata_map
    assert meta["archc.mean"] == "0.5,0.4,0.3" and meta["archc.std"] == "0.2,0.3,0.4" and meta["author"] == "me"
    assert "(pixel/255 - mean) / std" in meta["archc.preprocessing"] and meta["archc.model"] == spec.name
    (old,) = export_model(gm, _example(spec), ["onnx"], tmp_path / "17", onnx_opset=17)
    assert "Erf" in {n.op_type for n in onnx.load(str(old.path)).graph.node}
    ep = torch.export.load(str(prog_res.path))
    assert [n.name for n in ep.graph.nodes if n.op == "placeholder"][-1] == "image"


@needs_coremltools
def test_coreml_classifier_with_labels_and_author_version(tmp_path):
    spec, _, gm = _deploy("tiny")
    labels = [f"class_{i}" for i in range(spec.num_classes)]
    (res,) = export_model(gm, _example(spec), ["coreml"], tmp_path, class_labels=labels,
                          metadata={"author": "A. Author", "version": "2.1"})
    import coremltools as ct
    desc = ct.models.MLModel(str(res.path), skip_model_load=True).get_spec().description
    assert desc.metadata.author == "A. Author" and desc.metadata.versionString == "2.1"
    assert desc.predictedFeatureName == "classLabel" and res.detail["classifier"] is True
    with pytest.raises(ExportError, match="3 class labels for a model with 10 outputs"):
        export_model(gm, _example(spec), ["coreml"], tmp_path / "bad", class_labels=["a", "b", "c"])
