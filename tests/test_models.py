"""Named models (archc.catalog / archc.models), the `archc models` command, `archc build NAME` and
`archc build FILE.pt`, `base: NAME`, shipped spaces and published tables, and the shared progress display."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import yaml

import archc
from archc import catalog
from archc.cli import main
from archc.cli.progress import Progress

from conftest import ROOT, SPECS


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_shipped_spec_has_one_unique_name_found_by_the_index():
    files = sorted(catalog.SPECS_DIR.rglob("*.yaml"))
    names = [yaml.safe_load(p.read_text())["name"] for p in files]
    assert catalog.duplicate_names() == {}
    assert sorted(catalog.model_index()) == sorted(names)
    assert catalog.model_index()["fastvit_sa12"].name == "sa12.yaml"
    assert catalog.model_index()["poolformer_s12"].name == "poolformer_s12.yaml"


def test_a_new_spec_file_is_picked_up_by_name_without_code(tmp_path, monkeypatch):
    (tmp_path / "x.yaml").write_text(archc.spec_to_yaml(archc.load_spec(SPECS / "t8.yaml", ["name=my_net"])))
    monkeypatch.setattr(catalog, "SPECS_DIR", tmp_path)
    assert catalog.list_models() == ["my_net"]
    assert archc.load_spec("my_net").name == "my_net"


def test_list_models_matches_patterns():
    fv = archc.list_models("fastvit*")
    assert "fastvit_sa12" in fv and "fastvit_t8" in fv and all(n.startswith("fastvit") for n in fv)
    assert "poolformer_s12" not in fv and "poolformer_s12" in archc.list_models()
    assert archc.list_models("nothing*") == []


def test_a_name_loads_the_shipped_spec_and_a_path_still_wins(tmp_path, monkeypatch):
    assert archc.load_spec("fastvit_sa12") == archc.load_spec(SPECS / "sa12.yaml")
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "fastvit_sa12"
    own.write_text(archc.spec_to_yaml(archc.load_spec(SPECS / "t8.yaml")))  # a local file of that name: a path
    assert archc.load_spec("fastvit_sa12").name == "fastvit_t8"


def test_an_unknown_name_suggests_one():
    with pytest.raises(archc.SpecError, match=r"no shipped model of that name \(did you mean 'fastvit_sa24'\?\)"):
        archc.load_spec("fastvit_sa21")


def test_base_may_name_a_shipped_model(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("base: fastvit_sa12\nname: mine\nstages: {2: {mixer: attention}}\n")
    spec = archc.load_spec(p)
    assert spec.mixers == ("repmixer", "repmixer", "attention", "attention") and spec.depths == (2, 2, 6, 2)
    p.write_text("base: fastvit_sa21\nname: mine\n")
    with pytest.raises(archc.SpecError, match=r"mine.yaml:1 base: .*did you mean 'fastvit_sa24'"):
        archc.load_spec(p)


def test_create_model_with_weights_deploy_and_new_head(tmp_path):
    torch.manual_seed(0)
    model = archc.create_model("fastvit_t8", overrides=["input_size=64"])
    assert model.training and model.spec.name == "fastvit_t8"
    path = archc.save_weights(model, tmp_path / "t8.pt", spec=model.spec)
    x = torch.randn(2, 3, 64, 64)
    loaded = archc.create_model("fastvit_t8", weights=path, overrides=["input_size=64"]).eval()
    assert torch.equal(loaded(x), model.eval()(x))
    deploy = archc.create_model("fastvit_t8", weights=path, deploy=True, overrides=["input_size=64"])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())
    assert torch.allclose(deploy(x), model(x), atol=1e-4)
    # a new classifier size: the checkpoint's head is left out, every other weight loads
    ten = archc.create_model("fastvit_t8", weights=path, num_classes=10, overrides=["input_size=64"]).eval()
    assert ten.head.fc.out_features == 10
    assert torch.equal(ten.stem[0].conv_kxk[0].conv.weight, model.stem[0].conv_kxk[0].conv.weight)
    with pytest.raises(archc.WeightsError, match="wrongly shaped"):  # only the head may differ
        archc.create_model("fastvit_t12", weights=path, num_classes=10)


def test_cli_models_lists_names_as_table_and_json(capsys):
    code, out, err = run(capsys, "models", "fastvit_s*", "--json")
    assert code == 0
    data = json.loads(out)
    names = [m["name"] for m in data["models"]]
    assert names == archc.list_models("fastvit_s*") and "fastvit_sa12" in names
    sa12 = next(m for m in data["models"] if m["name"] == "fastvit_sa12")
    assert sa12["depths"] == [2, 2, 6, 2] and sa12["spec"] == "specs/sa12.yaml"
    code, out, err = run(capsys, "models", "poolformer*")
    assert code == 0 and "poolformer_s12_repmixer" in out and "fastvit_t8" not in out


def test_cli_build_takes_a_name_and_an_archc_checkpoint(capsys, tmp_path):
    code, out, err = run(capsys, "build", "fastvit_t8", "--input-size", "64", "--json")
    assert code == 0 and json.loads(out)["name"] == "fastvit_t8"
    ckpt = tmp_path / "t8.pt"
    code, out, err = run(capsys, "build", "fastvit_t8", "--input-size", "64", "--deploy", "--save", str(ckpt), "--json")
    assert code == 0
    code, out, err = run(capsys, "build", str(ckpt), "--json")
    data = json.loads(out)
    assert code == 0 and data["name"] == "fastvit_t8" and "deploy" in data and data["weights"]["format"] == "archc"
    assert data["train"]["input_size"] == [64, 64]
    timm_like = tmp_path / "plain.pt"
    torch.save(archc.build(archc.load_spec("fastvit_t8")).state_dict(), timm_like)
    code, out, err = run(capsys, "build", str(timm_like))
    assert code == 2 and "stores no spec" in err and f"--weights {timm_like}" in err and "Traceback" not in err


def test_search_space_resolves_by_name_and_repository_path_from_anywhere(tmp_path, monkeypatch):
    from archc.space import load_space
    monkeypatch.chdir(tmp_path)
    assert load_space("fastvit").name == "fastvit"
    assert load_space("search/fastvit.yaml").name == "fastvit"  # the README's form, after a plain install
    with pytest.raises(archc.SpecError, match=r"no shipped search space of that name \(did you mean 'fastvit'\?\)"):
        load_space("fastvi")


def test_published_tables_ship_with_the_package_and_match_the_shared_ones(reference_dir):
    for name in ("published_fastvit.csv", "published_latency.csv"):
        assert catalog.reference_csv(name).read_text() == (reference_dir / name).read_text()


def test_proxies_eval_and_ablate_reference_work_from_an_unrelated_directory(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "archc", "proxies", "--eval", "--proxy", "params", "--json"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)  # stdout holds the JSON only; progress went to stderr
    assert data["points"] == 12 and data["results"][0]["proxy"] == "params"
    assert "proxies --eval 12/12 (100%)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "archc", "ablate", "ablation_v1", "fastvit_sa12", "--reference",
                        "--objective", "none", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert rows[0]["published"]["top1"] == "78.9" and rows[1]["published"]["iphone12pro_ms"]
    assert "ablate 2/2 (100%)" in r.stderr


def test_progress_prints_a_line_per_step_when_piped(capsys):
    with Progress("work", total=3, mode="plain") as p:
        p.update(status="first")
        p.advance()
        p.update(status="second")  # a status change alone prints nothing
        p.advance("second done")
        p.advance("third done")
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "work 0/3 started"
    assert err[1].startswith("work 1/3 (33%) elapsed 0:00 ETA ") and err[1].endswith("· first")
    assert err[2].startswith("work 2/3 (67%)") and err[2].endswith("· second done")
    assert err[3].startswith("work 3/3 (100%)") and " ETA 0:00 " in err[3]
    assert len(err) == 4


def test_progress_eta_is_the_mean_pace_times_the_steps_left(monkeypatch):
    clock = iter([0.0, 0.0, 10.0, 10.0])
    monkeypatch.setattr("archc.cli.progress.time.monotonic", lambda: next(clock))
    p = Progress("x", total=5, mode="off")
    p.__enter__()
    p.update(2)
    assert math.isclose(p.eta(), 10.0 / 2 * 3)


def test_a_missing_optional_package_names_the_extra(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails as if it were not installed
    code, out, err = run(capsys, "export", "fastvit_t8", "--input-size", "64", "--format", "onnx",
                         "--out", str(tmp_path))
    assert code == 2 and "pip install 'archc[export]'" in err and "Traceback" not in err

    def needs_coremltools(args):
        import coremltools  # noqa: F401  (blocked below)
    from archc.cli import make_parser
    monkeypatch.setitem(sys.modules, "coremltools", None)
    monkeypatch.setattr("archc.cli.make_parser", lambda *a: _parser_running(make_parser(*a), needs_coremltools))
    code, out, err = run(capsys, "devices")
    assert code == 2 and err.strip() == ("archc: error: this needs the optional package 'coremltools': "
                                         "pip install 'archc[export]'")


def _parser_running(parser, func):
    parser.set_defaults(func=func)
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser


def test_schema_json_and_output_under_a_new_folder(capsys, tmp_path):
    code, out, err = run(capsys, "schema", "--json")
    assert code == 0 and json.loads(out)["type"] == "object"
    target = tmp_path / "runs" / "archc.schema.json"
    code, out, err = run(capsys, "schema", "--json", "-o", str(target))
    assert code == 0 and json.loads(out)["schema_file"] == str(target) and target.is_file()


def test_create_model_new_head_for_a_distilled_classifier(tmp_path):
    """EfficientFormer's classifier is ``head.*`` plus the distilled ``head_dist.*``: both give way to a new
    ``num_classes`` (refused as wrongly shaped before), and every other weight still loads exactly."""
    torch.manual_seed(0)
    model = archc.create_model("efficientformer_l1", overrides=["input_size=64"])
    path = archc.save_weights(model, tmp_path / "l1.pt", spec=model.spec)
    ten = archc.create_model("efficientformer_l1", weights=path, num_classes=10, overrides=["input_size=64"])
    assert ten.head.out_features == 10 and ten.head_dist.out_features == 10
    own = model.state_dict()
    kept = {k: v for k, v in ten.state_dict().items() if not k.startswith(("head.", "head_dist."))}
    assert kept and all(torch.equal(v, own[k]) for k, v in kept.items())
    with pytest.raises(archc.WeightsError, match="wrongly shaped"):  # only the classifier may differ
        archc.create_model("efficientformer_l3", weights=path, num_classes=10, overrides=["input_size=64"])


def test_in_chans_adapts_the_input_convs_as_timm_does():
    """create_model(in_chans=1) on RGB weights: a grey image gives exactly what the same image as RGB gave
    (randomised BatchNorm and layer scales); in_chans=4 loads strictly; a wrong type is an archc error."""
    import torch

    import archc
    from archc.testing import randomize_
    rgb = randomize_(archc.create_model("fastvit_t8", num_classes=10, overrides=["input_size=64"]), seed=1).eval()
    grey = archc.create_model("fastvit_t8", weights=rgb.state_dict(), in_chans=1, num_classes=10,
                              overrides=["input_size=64"]).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        want, got = rgb(x.repeat(1, 3, 1, 1)), grey(x)
    assert torch.allclose(want, got, rtol=0, atol=1e-5 * want.abs().max().item())
    four = archc.create_model("fastvit_t8", weights=rgb.state_dict(), in_chans=4, num_classes=10,
                              overrides=["input_size=64"]).eval()
    assert four(torch.randn(1, 4, 64, 64)).shape == (1, 10)
    with pytest.raises(archc.ArchcError, match=r"in_chans=\.\.\.\) takes an integer, got float 2.5"):
        archc.create_model("fastvit_t8", in_chans=2.5)
