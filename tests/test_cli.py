"""The ``archc build`` and ``archc schema`` commands, run in-process through ``archc.cli.main`` (plus one real
``python -m archc`` subprocess): user errors are one ``archc: error:`` line on stderr and exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import pytest
import torch
import yaml

import archc
from archc.cli import main

from conftest import ROOT, SPECS, shipped_specs

SA12 = str(SPECS / "sa12.yaml")




def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, out, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("archc: error: "), err
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------ errors
def test_bad_spec_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages:\n  - {depth: 2, width: 64, mixer: repmix}\n")
    line = assert_one_error_line(*run(capsys, "build", str(bad)))
    assert line == (f"archc: error: {bad}:3 stages[0].mixer: invalid value 'repmix' (did you mean 'repmixer'?); "
                    f"valid: {', '.join(archc.blocks.MIXERS)}")


@pytest.mark.parametrize("argv, fragments", [
    (["build", "no/such/spec.yaml"], ["no/such/spec.yaml: file not found"]),
    (["build", SA12, "--set", "stages[2].mixer=attn"], ["(override) stages[2].mixer", "did you mean 'attention'?"]),
    (["build", SA12, "--set", "stages[7].depth=1"], ["no index 7 in stages; valid: 0 to 3"]),
    (["build", SA12, "--set", "oops"], ["override 'oops' must look like key.path=value"]),
    (["build", SA12, "--input-size", "2"], ["input_size: value 2 out of range; valid: 8 to 4096"]),
    (["build", SA12, "--weights", "no/such.pt"], ["no/such.pt: checkpoint file not found"]),
])
def test_user_errors_are_one_line(capsys, argv, fragments):
    assert_one_error_line(*run(capsys, *argv), *fragments)


def test_yaml_syntax_error_and_hostile_yaml(capsys, tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nstages: [\n")
    assert_one_error_line(*run(capsys, "build", str(p)), f"{p}:3: YAML syntax error")
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\nstages: []\n")
    code, out, err = run(capsys, "build", str(p))
    assert_one_error_line(code, out, err, "YAML tag 'python/object/apply:os.system' is not allowed")
    assert "pwned" not in out + err


def test_mismatching_weights_one_line_listing_the_keys(capsys, tmp_path):
    ckpt = tmp_path / "t8.pt"
    archc.save_weights(archc.build(SPECS / "t8.yaml"), ckpt)
    line = assert_one_error_line(*run(capsys, "build", SA12, "--input-size", "64", "--weights", str(ckpt)))
    assert f"{ckpt}: checkpoint does not fit the model;" in line
    for part in ("missing: ", "unexpected: ", "wrongly shaped: ", "(checkpoint (48,", "model (64,"):
        assert part in line, line


def test_reparameterized_weights_into_train_model(capsys, reference_dir):
    from conftest import reference_file
    ckpt = reference_file("apple_fastvit/fastvit_t8.reparam.pt")
    assert_one_error_line(*run(capsys, "build", str(SPECS / "t8.yaml"), "--input-size", "64", "--weights", str(ckpt)),
                          "reparameterized (deploy) checkpoint")


def test_python_m_archc_subprocess(tmp_path):
    """The real entry point, in a fresh interpreter: one stderr line, exit 2, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages:\n  - {depth: 0, width: 64, mixer: repmixer}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "archc", "build", str(bad)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"archc: error: {bad}:3 stages[0].depth: value 0 out of range; valid: 1 to 128"]
    assert proc.stdout == ""


# ------------------------------------------------------------------------------------ build output
def test_build_prints_the_per_stage_table(capsys):
    """The README's command, as is: SA12 at its 256x256."""
    code, out, err = run(capsys, "build", SA12)
    assert code == 0 and err == ""
    assert "fastvit_sa12" in out and "train-time graph" in out
    for header in ("part", "resolution", "tokens", "width", "depth", "mixer", "params", "MACs"):
        assert header in out
    rows = {line.split()[0] + (" " + line.split()[1] if line.startswith("stage") else ""): line
            for line in out.splitlines() if line.strip()}
    for part in ("stem", "stage 0", "stage 1", "stage 2", "stage 3", "head", "total"):
        assert part in rows, out
    assert "256x256 -> 64x64" in rows["stem"]
    assert "64x64" in rows["stage 0"] and "4096" in rows["stage 0"] and "repmixer" in rows["stage 0"]
    assert "8x8" in rows["stage 3"] and "attention" in rows["stage 3"]
    assert "11.581M" in rows["total"]  # SA12's 11,580,968 parameters
    assert "params 11,580,968" in out


def test_build_json_is_valid_with_per_stage_rows(capsys):
    code, out, err = run(capsys, "build", SA12, "--input-size", "64", "--set", "stages[2].mixer=attention", "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["name"] == "fastvit_sa12" and data["spec"] == SA12
    train = data["train"]
    assert train["input_size"] == [64, 64]
    assert [r["part"] for r in train["rows"]] == ["stem", "stage 0", "stage 1", "stage 2", "stage 3", "head"]
    assert [r["mixer"] for r in train["rows"][1:5]] == ["repmixer", "repmixer", "attention", "attention"]
    assert [r["tokens"] for r in train["rows"][1:5]] == [256, 64, 16, 4]
    assert sum(r["params"] for r in train["rows"]) == train["params"]
    assert sum(r["macs"] for r in train["rows"]) == train["macs"] > 0
    spec = archc.load_spec(SA12, ["stages[2].mixer=attention"])
    assert train["params"] == sum(p.numel() for p in archc.build(spec).parameters())


def test_build_weights_and_save(capsys, tmp_path):
    spec = archc.load_spec(SPECS / "t8.yaml", ["input_size=64"])
    src = tmp_path / "src.pt"
    archc.save_weights(archc.build(spec), src, spec=spec)
    out_ckpt = tmp_path / "out.pt"
    code, out, err = run(capsys, "build", str(SPECS / "t8.yaml"), "--input-size", "64", "--weights", str(src),
                         "--save", str(out_ckpt))
    assert code == 0 and err == ""
    assert f"loaded {src} (archc format, strict)" in out and f"saved {out_ckpt} (archc format, train graph)" in out
    saved = torch.load(out_ckpt, weights_only=True)
    assert archc.load_spec(saved["spec"]) == spec
    original = torch.load(src, weights_only=True)["state_dict"]
    assert saved["state_dict"].keys() == original.keys()
    assert all(torch.equal(v, original[k]) for k, v in saved["state_dict"].items())
    code, out, _ = run(capsys, "build", str(SPECS / "t8.yaml"), "--input-size", "64", "--weights", str(src), "--json")
    assert json.loads(out)["weights"] == {"file": str(src), "format": "archc"}


# ------------------------------------------------------------------------------------ schema
@pytest.fixture(scope="module")
def schema():
    from archc.spec import spec_json_schema
    return spec_json_schema()


def test_schema_command_writes_valid_json_schema(capsys, tmp_path, schema):
    code, out, err = run(capsys, "schema")
    assert code == 0 and err == ""
    printed = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed == schema
    target = tmp_path / "archc.schema.json"
    code, out, _ = run(capsys, "schema", "-o", str(target))
    assert code == 0 and out.strip() == f"wrote {target}"
    assert json.loads(target.read_text()) == printed


def _as_json(path):
    """A spec file as an editor's YAML language server sees it (JSON data: mapping keys are strings)."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text())))


@pytest.mark.parametrize("path", shipped_specs(), ids=lambda p: p.stem)
def test_every_shipped_spec_validates_against_the_schema(path, schema):
    jsonschema.Draft202012Validator(schema).validate(_as_json(path))


@pytest.mark.parametrize("name, mutate", [
    ("unknown top key", lambda d: d.update(stagess=[])),
    ("unknown stage key", lambda d: d["stages"][0].update(mixr="pool")),
    ("unknown mixer", lambda d: d["stages"][0].update(mixer="repmix")),
    ("unknown downsample key", lambda d: d["stage_defaults"]["downsample"].update(kernal=3)),
    ("unknown stage_defaults key", lambda d: d["stage_defaults"].update(mixr="pool")),
    ("unknown stem key", lambda d: d["stem"].update(kernal=3)),
    ("string depth", lambda d: d["stages"][0].update(depth="two")),
    ("zero depth", lambda d: d["stages"][0].update(depth=0)),
    ("input size list of 3", lambda d: d.update(input_size=[1, 2, 3])),
])
def test_schema_rejects_bad_specs(name, mutate, schema):
    data = _as_json(SPECS / "sa12.yaml")
    mutate(data)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(data)


def test_schema_checks_index_patches(schema):
    data = _as_json(SPECS / "sa36.yaml")  # stages: {0: {depth: 6}, ...}
    jsonschema.Draft202012Validator(schema).validate(data)
    data["stages"]["2"]["mixr"] = "pool"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(data)


def test_schema_documents_every_key_with_defaults(schema):
    stage = schema["$defs"]["StageSpec"]
    assert set(stage["required"]) == {"depth", "width", "mixer"}
    assert stage["properties"]["mixer"]["anyOf"][0]["enum"] == list(archc.blocks.MIXERS)
    assert {"mixer_kernel", "head_dim", "pool_size"} <= set(stage["properties"])  # today's flat keys still valid
    assert stage["properties"]["ffn_kernel"]["default"] == 7
    assert all(p.get("description") for d in schema["$defs"].values() for p in d["properties"].values())
    assert schema["properties"]["input_size"]["default"] == [256, 256]


def test_a_multi_line_error_is_printed_as_one_line(capsys, monkeypatch):
    from archc.cli import build as build_command

    def fail(args):
        raise archc.WeightsError("first line\nsecond line")
    monkeypatch.setattr(build_command, "run", fail)
    assert_one_error_line(*run(capsys, "build", SA12), "archc: error: first line second line")


def test_a_command_whose_dependency_is_missing_says_so_and_the_others_work(tmp_path):
    """An environment without Optuna (seen on a CUDA image): `archc bench` still runs and `archc search`
    gives one line naming the package, not a traceback."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nclass _Block:\n    def find_spec(self, name, path=None, target=None):\n"
                       "        if name == 'optuna' or name.startswith('optuna.'):\n"
                       "            raise ModuleNotFoundError(\"No module named 'optuna'\", name='optuna')\n"
                       "sys.meta_path.insert(0, _Block())\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    ok = subprocess.run([sys.executable, "-m", "archc", "build", str(ROOT / "specs" / "t8.yaml"), "--json"],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "archc", "search", "--latency-ms", "1.5"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "needs the Python package 'optuna'" in bad.stderr


def test_archc_alone_lists_the_commands(capsys):
    from archc.cli import COMMANDS, main
    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in COMMANDS) and "usage: archc" in err


def test_help_loads_neither_torch_nor_optuna():
    """`archc --help` and each `archc CMD --help` build their parser without importing torch or Optuna (the
    seconds a user waits before anything runs; timed in benchmarks/cli_startup.py, docs/BENCHMARKS.md)."""
    from archc.cli import COMMANDS
    code = ("import sys\nfrom archc.cli import make_parser\nfor command in [''] + sys.argv[1:]:\n"
            "    make_parser(command)\nheavy = sorted(m for m in ('torch', 'optuna', 'numpy', 'scipy') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code, *COMMANDS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported by the parsers: {out.stdout.strip()}"


def test_an_error_never_prints_a_control_character(capsys):
    """An ESC in a path (it could recolour or clear the terminal) is shown escaped, on one line."""
    assert main(["build", "/tmp/\x1b[31mred\nline.yaml"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[31mred line.yaml" in err and err.count("\n") == 1


def test_a_bad_flag_value_is_one_line(capsys):
    """argparse's own errors take archc's form: one line with the flag, the value and where to look."""
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", "--measure", "--n", "1e9", "--device", "x"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("archc calibrate: error: argument --n: invalid int value: '1e9'") and "--help" in err


def test_a_weighted_eta_counts_cost_left_not_steps_left(monkeypatch):
    """Three cheap steps done at 1 s each (after a slow first one) with one step 16x as costly left: the ETA is
    16 s, not the few seconds that equal steps would give (the README's 224..1024 px bench sweep at fixed runs)."""
    from archc.cli import progress as progress_mod
    now = [0.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: now[0])
    bar = progress_mod.Progress("t", 4, mode="off", weights=[1, 1, 1, 16])
    with bar:
        now[0] += 5.0  # the first step also pays the start-up (building the graph): left out of the pace
        bar.advance()
        assert bar.eta() is None  # no pace known yet
        for _ in range(2):
            now[0] += 1.0
            bar.advance()
        assert bar.eta() == pytest.approx(16.0)
    plain = progress_mod.Progress("t", 4, mode="off")
    with plain:
        now[0] += 3.0
        plain.update(3)
        assert plain.eta() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        progress_mod.Progress("t", 2, weights=[1])


def test_expected_macs_grow_with_the_input_and_match_the_traced_count():
    """The meta-device count equals the MACs the traced cost report gives, and a 2x input costs about 4x."""
    import archc
    from archc.analysis.cost import cost_report
    from archc.guards import expected_macs
    from archc.spec import load_spec
    spec = load_spec("fastvit_t8", ["input_size=64"])
    report = cost_report(archc.build(spec).eval(), spec)
    assert expected_macs(spec) == report.macs
    assert 3.5 < expected_macs(spec, (128, 128)) / expected_macs(spec) < 4.6
