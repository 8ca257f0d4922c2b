"""``archc calibrate`` and ``archc devices``: a round trip on measurements with a known answer, and
clear errors for bad CSV files (file, line, column)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from archc.cli import main
from archc.errors import ArchcError
from archc.latency.features import spec_features
from archc.latency.fit import read_measurements
from archc.latency.predict import available_profiles, predict_latency
from archc.spec import load_spec

TINY = """\
name: {name}
num_classes: 10
input_size: 64
stem: {{type: mobileone, kernel: 3}}
stage_defaults:
  mlp_ratio: {mlp}
  ffn: convffn
  ffn_kernel: {k}
  downsample: {{type: replk, kernel: 5, small_kernel: 3, stride: 2}}
stages:
  - {{depth: {d}, width: {w}, mixer: repmixer}}
  - {{depth: 1, width: {w2}, mixer: {mixer}}}
head: {{type: mobileone_se, expansion: 2, se_ratio: 0.0625}}
"""
# (file, depth, width, mlp ratio, ffn kernel, last mixer); resolutions vary per row below
VARIANTS = [("a", 1, 16, 2, 3, "repmixer"), ("b", 2, 16, 2, 3, "attention"), ("c", 1, 24, 3, 5, "repmixer"),
            ("d", 2, 24, 2, 5, "attention"), ("e", 1, 32, 4, 3, "attention")]
ROWS = [("a", None), ("b", None), ("c", None), ("d", None), ("e", None), ("a", 96), ("d", 96)]
TRUTH = {"const": 0.3, "macs_dense": 40.0, "macs_dw": 300.0, "attn_elems": 2.0}


def write_specs(folder):
    for name, d, w, mlp, k, mixer in VARIANTS:
        (folder / f"{name}.yaml").write_text(TINY.format(name=name, d=d, w=w, w2=2 * w, mlp=mlp, k=k, mixer=mixer if mixer != "attention" else "{type: attention, head_dim: 16}"))


def true_ms(path, res):
    f, _ = spec_features(load_spec(path), res)
    return TRUTH["const"] + TRUTH["macs_dense"] * (f["macs_conv"] + f["macs_pointwise"]) + \
        TRUTH["macs_dw"] * f["macs_dw"] + TRUTH["attn_elems"] * f["attn_elems"]


@pytest.fixture
def profiles_dir(tmp_path, monkeypatch):
    d = tmp_path / "profiles"
    monkeypatch.setenv("ARCHC_PROFILES", str(d))
    return d


def test_calibrate_round_trip(tmp_path, profiles_dir, capsys):
    write_specs(tmp_path)
    lines = ["# synthetic device: latency is an exact linear function of the features", "spec,latency_ms,resolution"]
    for name, res in ROWS:
        lines.append(f"{name}.yaml,{true_ms(tmp_path / f'{name}.yaml', res):.6f},{res or ''}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    assert main(["calibrate", str(tmp_path / "m.csv"), "--device", "toyphone", "--json",
                 "--features", "const,macs_dense,macs_dw,attn_elems"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["profile"] == str(profiles_dir / "toyphone.yaml")
    k = out["heldout"]["kfold"]
    assert k["mape_pct"] < 0.1 and k["inversions"] == 0 and out["heldout"]["architectures"] == 5 and k["points"] == 7
    for k, v in TRUTH.items():
        assert out["coefficients"][k] == pytest.approx(v, rel=1e-3)
    doc = yaml.safe_load((profiles_dir / "toyphone.yaml").read_text())
    assert doc["name"] == "toyphone" and len(doc["rows"]) == len(ROWS)
    # the stored profile predicts a new point (another resolution) it was not fitted on
    r = predict_latency(load_spec(tmp_path / "e.yaml"), "toyphone", resolution=96)
    assert r.kind == "predicted" and r.ms == pytest.approx(true_ms(tmp_path / "e.yaml", 96), rel=1e-3)
    assert r.expected_error_pct == pytest.approx(doc["error"]["inside_pct"])
    info = available_profiles()["toyphone"]
    assert info.source == "user" and info.points == 7
    assert main(["devices", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["profiles"]}
    assert set(listed) >= {"iphone12pro", "toyphone"} and listed["toyphone"]["source"] == "user"


def test_calibrate_too_few_architectures(tmp_path, profiles_dir, capsys):
    write_specs(tmp_path)
    (tmp_path / "m.csv").write_text("spec,latency_ms\na.yaml,1.0\nb.yaml,2.0\na.yaml,1.1\n")
    assert main(["calibrate", str(tmp_path / "m.csv"), "--device", "x"]) == 2
    assert "at least 5 distinct architectures for a 4-term model with a held-out check; got 2" in capsys.readouterr().err
    assert not (profiles_dir / "x.yaml").exists()


@pytest.mark.parametrize("text, message", [
    ("", r"m.csv: no rows"),
    ("spec,latency\na.yaml,1\n", r"m.csv:1: header has no 'latency_ms' column; found spec, latency"),
    ("spec,latency_ms,res\na.yaml,1,64\n", r"m.csv:1: unknown column 'res'; valid: spec, latency_ms, resolution, label, family, uncertainty_ms"),
    ("spec,latency_ms\na.yaml,fast\n", r"m.csv:2 column 'latency_ms': 'fast' is not a number"),
    ("spec,latency_ms\n# comment\na.yaml,-1\n", r"m.csv:3 column 'latency_ms': '-1' must be a number of milliseconds from 1e-06 to 1e\+06"),
    ("spec,latency_ms\na.yaml,1e308\n", r"m.csv:2 column 'latency_ms': '1e308' must be a number of milliseconds"),
    ("spec,latency_ms\na.yaml,1e-300\n", r"m.csv:2 column 'latency_ms': '1e-300' must be a number of milliseconds"),
    ("spec,latency_ms,label\na.yaml,1,\x1b[31mred\n", r"m.csv:2: control character '\\x1b' in the row"),
    ("spec,latency_ms,label\na.yaml,1," + "x" * 200_000 + "\n", r"m.csv:2: a row of 200,009 characters, over the limit of 4,096"),
    ("spec,latency_ms\n" + "a.yaml,1\n" * 20_001, r"m.csv: 20,001 rows, over the limit of 20,000"),
    ("spec,latency_ms\nfastvit_t9,1\n", r"no shipped model of that name \(did you mean 'fastvit_t8'\?\)"),
    ("spec,latency_ms\nnope.yaml,1\n", r"m.csv:2 column 'spec': spec file 'nope.yaml' not found"),
    ("spec,latency_ms,resolution\na.yaml,1,big\n", r"m.csv:2 column 'resolution': 'big' is not an integer"),
    ("spec,latency_ms\na.yaml\n", r"m.csv:2: 1 fields, the header has 2"),
    ("spec,latency_ms\n", r"m.csv: header but no measurement rows"),
    ("spec,latency_ms,uncertainty_ms\na.yaml,1,-0.1\n", r"m.csv:2 column 'uncertainty_ms': '-0.1' must be a non-negative"),
])
def test_bad_csv_errors_name_file_line_and_column(tmp_path, text, message):
    write_specs(tmp_path)
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ArchcError, match=message):
        read_measurements(str(tmp_path / "m.csv"))


def test_a_model_name_works_in_the_spec_column(tmp_path):
    (tmp_path / "m.csv").write_text("spec,latency_ms\nfastvit_t8,1.5\n")
    (point,) = read_measurements(str(tmp_path / "m.csv"))
    assert Path(point.spec_path).name == "t8.yaml" and point.latency_ms == 1.5


def test_a_fifo_or_a_huge_file_is_refused_before_reading(tmp_path, monkeypatch):
    import os

    import archc.latency.fit as fit
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(ArchcError, match="pipe.csv: not a regular file"):
        read_measurements(str(tmp_path / "pipe.csv"))  # returns at once: opening a FIFO would block
    text = "spec,latency_ms\n" + "a.yaml,1\n" * 100
    (tmp_path / "big.csv").write_text(text)
    monkeypatch.setattr(fit, "MAX_MEASUREMENTS_BYTES", 100)
    with pytest.raises(ArchcError, match=rf"big.csv: {len(text)} bytes, over the limit of 100"):
        read_measurements(str(tmp_path / "big.csv"))


def test_a_profile_name_of_a_builtin_or_a_measured_target_is_refused(tmp_path, profiles_dir, capsys):
    write_specs(tmp_path)
    (tmp_path / "m.csv").write_text("spec,latency_ms\na.yaml,1\n")
    assert main(["calibrate", str(tmp_path / "m.csv"), "--device", "iphone12pro"]) == 2
    assert "a built-in profile has that name" in capsys.readouterr().err and not profiles_dir.exists()
    assert main(["calibrate", str(tmp_path / "m.csv"), "--device", "cpu"]) == 2
    assert "names a measured target" in capsys.readouterr().err


def test_out_into_the_profile_folder_under_a_builtin_name_is_refused(tmp_path, profiles_dir, capsys):
    """issue 23: --out $ARCHC_PROFILES/iphone12pro.yaml silently shadowed the built-in profile."""
    write_specs(tmp_path)
    (tmp_path / "m.csv").write_text("spec,latency_ms\na.yaml,1\n")
    profiles_dir.mkdir()
    out = profiles_dir / "iphone12pro.yaml"
    assert main(["calibrate", str(tmp_path / "m.csv"), "--device", "mine", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"archc: error: --out '{out}': a built-in profile has that name ('iphone12pro'), "
                                       "and a user profile would replace it as --target iphone12pro; choose another "
                                       "name (e.g. iphone12pro-mine), or pass --shadow-builtin to mean it\n")
    assert not out.exists()


def test_a_fifo_where_the_profile_goes_is_refused_at_once(tmp_path, profiles_dir, capsys):
    """issue 23: a FIFO at $ARCHC_PROFILES/NAME.yaml (or --out FIFO) hung the write of the fitted profile."""
    import os
    import stat
    write_specs(tmp_path)
    (tmp_path / "m.csv").write_text("spec,latency_ms\na.yaml,1\n")
    profiles_dir.mkdir()
    os.mkfifo(profiles_dir / "evil.yaml")
    os.mkfifo(tmp_path / "out.yaml")
    assert main(["calibrate", str(tmp_path / "m.csv"), "--device", "evil"]) == 2
    assert capsys.readouterr().err == (f"archc: error: --device evil: profile '{profiles_dir / 'evil.yaml'}': is a FIFO "
                                       "(named pipe); give the path of a regular file\n")
    assert main(["calibrate", str(tmp_path / "m.csv"), "--device", "x", "--out", str(tmp_path / "out.yaml")]) == 2
    assert f"--out '{tmp_path / 'out.yaml'}': is a FIFO" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(profiles_dir / "evil.yaml").st_mode) and stat.S_ISFIFO(os.stat(tmp_path / "out.yaml").st_mode)
    from archc.latency.fit import save_profile
    with pytest.raises(ArchcError, match="is a FIFO"):  # the writer itself checks too (a FIFO made meanwhile)
        save_profile({"name": "evil"}, profiles_dir / "evil.yaml")


def test_a_profile_written_onto_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, full_disk):
    from archc.latency.fit import save_profile
    out = tmp_path / "p.yaml"
    with pytest.raises(ArchcError, match=rf"^profile '{out}': cannot write: No space left on device$"):
        save_profile({"name": "p"}, out)
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_input_is_one_line_exit_2(tmp_path, profiles_dir, capsys):
    assert main(["calibrate", str(tmp_path / "missing.csv"), "--device", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.csv: measurements file not found" in err
    assert main(["calibrate", str(tmp_path / "missing.csv"), "--device", "../evil"]) == 2
    assert "not a valid profile name" in capsys.readouterr().err
    write_specs(tmp_path)
    (tmp_path / "m.csv").write_text("spec,latency_ms\na.yaml,1\n")
    assert main(["calibrate", str(tmp_path / "m.csv"), "--device", "x", "--features", "const,macs_dens"]) == 2
    assert "did you mean 'macs_dense'" in capsys.readouterr().err


def test_measure_samples_spaces_and_resumes_from_its_cache(tmp_path):
    """--measure's pipeline with a stand-in for the timer: every (architecture, resolution) is measured once,
    a second run reads the cache, and each space is one family of the fit."""
    from archc.latency import LatencyResult
    from archc.latency.calibrate import measure_all, points_of, read_cache, sample_spaces
    from archc.latency.fit import make_profile

    calls = []

    def fake_measure(spec, target, *, model, runs, warmup, resolution, threads, runtime):
        calls.append((spec.name, resolution))
        f, _ = spec_features(spec, resolution)
        ms = 0.2 + 30 * (f["macs_conv"] + f["macs_pointwise"]) + 100 * f["macs_dw"] + 0.01 * f["mbytes"]
        return LatencyResult(target=target, ms=ms, kind="measured", batch=1, resolution=(resolution, resolution),
                             iqr_ms=0.0, cv=0.0, runs=runs, detail={"device": "stub"})

    samples = sample_spaces(["search/tiny.yaml"], 6, seed=1)
    assert len({s.arch for s in samples}) == 6 and {s.family for s in samples} == {"tiny"}
    assert [s.arch for s in sample_spaces(["search/tiny.yaml"], 6, seed=1)] == [s.arch for s in samples]
    cache = tmp_path / "c.jsonl"
    recs = measure_all(samples, [64, 96], target="onnxruntime", cache=cache, runs=2, warmup=0, measure=fake_measure)
    assert len(calls) == 12 and len(read_cache(cache)) == 12
    with cache.open("a") as f:
        f.write('{"key": "torn')  # an interrupted write
    again = measure_all(samples, [64, 96], target="onnxruntime", cache=cache, runs=2, warmup=0, measure=fake_measure)
    assert len(calls) == 12 and [r["ms"] for r in again] == [r["ms"] for r in recs]
    pts = points_of(recs)
    for p in pts[:6]:
        p.family = "other"  # two families: the leave-one-family-out check runs
    prof = make_profile(pts, name="stub", device="stub", folds=3, generated_by="test", data_source=str(cache))
    assert prof["heldout"]["kfold"]["mape_pct"] < 2.0 and set(prof["heldout"]["lofo"]["families"]) == {"other", "tiny"}


def test_cached_only_fits_a_foreign_cache_without_measuring(tmp_path):
    """A cache measured on another machine (its spec paths do not exist here) is fitted as it is: nothing is
    measured, points it lacks are left out, and records point at this machine's copy of each spec."""
    import json
    from archc.latency.calibrate import cache_key, measure_all, sample_spaces

    samples = sample_spaces(["search/tiny.yaml"], 4, seed=1)
    cache = tmp_path / "foreign.jsonl"
    with cache.open("w") as f:
        for s in samples[:3]:
            key = cache_key(s.arch, 64, "onnxruntime", "eager", 1)
            f.write(json.dumps({"key": key, "arch": s.arch, "family": s.family, "name": s.spec.name, "resolution": 64,
                                "spec": "/elsewhere/" + s.arch + ".yaml", "ms": 1.0, "iqr_ms": 0.0}) + "\n")

    def must_not_measure(*a, **k):
        raise AssertionError("--cached-only measured a point")
    recs = measure_all(samples, [64], target="onnxruntime", cache=cache, runs=1, warmup=0, measure=must_not_measure,
                       cached_only=True)
    assert sorted(r["arch"] for r in recs) == sorted(s.arch for s in samples[:3])
    assert all(Path(r["spec"]).is_file() and Path(r["spec"]).parent.parent == tmp_path for r in recs)
    with pytest.raises(AssertionError, match="measured a point"):
        measure_all(samples, [64], target="onnxruntime", cache=cache, runs=1, warmup=0, measure=must_not_measure)


def test_ratio_check_times_each_pair_side_by_side_caches_it_and_states_its_interval(tmp_path, profiles_dir):
    """The Fig. 3 check: each pair is timed in one side-by-side measurement per resolution (not two separate
    ones), the reduction and its bootstrap interval come from those runs, a rerun reads the cache, and
    --cached-only measures nothing."""
    import numpy as np
    from archc.latency.calibrate import measure_all, points_of, ratio_check, read_cache, sample_spaces
    from archc.latency.fit import make_profile, save_profile
    from archc.latency import LatencyResult

    def fake_measure(spec, target, *, model, runs, warmup, resolution, threads, runtime):
        f, _ = spec_features(spec, resolution)
        ms = 0.2 + 30 * (f["macs_conv"] + f["macs_pointwise"]) + 100 * f["macs_dw"] + 0.01 * f["mbytes"]
        return LatencyResult(target=target, ms=ms, kind="measured", batch=1, resolution=(resolution, resolution),
                             iqr_ms=0.0, cv=0.0, runs=runs, detail={"device": "stub"})

    samples = sample_spaces(["search/tiny.yaml"], 8, seed=1)
    cache = tmp_path / "c.jsonl"
    recs = measure_all(samples, [64, 96], target="onnxruntime", cache=cache, runs=1, warmup=0, measure=fake_measure)
    profile = tmp_path / "stub.yaml"
    save_profile(make_profile(points_of(recs), name="stub", device="stub", folds=0, generated_by="test",
                              data_source=str(cache)), profile)
    paths = []
    for s in samples[:2]:
        path = tmp_path / f"{s.arch}.yaml"
        path.write_text((Path(recs[0]["spec"]).parent / f"{s.arch}.yaml").read_text())
        paths.append(str(path))

    calls = []
    rng = np.random.default_rng(0)

    def fake_pair(models, shape, target, *, runs, warmup, threads, runtime):
        calls.append((tuple(models), tuple(shape)))
        return {"a": list(10.0 + rng.normal(0, 0.1, runs)), "b": list(8.0 + rng.normal(0, 0.1, runs))}

    out = ratio_check(str(profile), [tuple(paths)], [64, 96], target="onnxruntime", cache=cache, runs=15, warmup=0,
                      measure_pair=fake_pair)
    assert calls == [(("a", "b"), (1, 3, 64, 64)), (("a", "b"), (1, 3, 96, 96))]
    for c in out:
        lo, hi = c["measured_reduction_ci95_pct"]
        assert lo < c["measured_reduction_pct"] < hi and 17 < lo and hi < 23  # 20% +- noise of 15 runs
        assert c["points_off"] == pytest.approx(c["predicted_reduction_pct"] - c["measured_reduction_pct"], abs=0.02)
    pairs = [r for r in read_cache(cache).values() if r["key"].endswith(":side-by-side")]
    assert len(pairs) == 2 and all(r["runs"] == 15 for r in pairs)
    again = ratio_check(str(profile), [tuple(paths)], [64, 96, 128], target="onnxruntime", cache=cache, runs=15,
                        warmup=0, measure_pair=fake_pair, cached_only=True)
    assert len(calls) == 2 and again == out  # cached, and 128 (never measured) is left out, not measured


@pytest.mark.parametrize("argv, message", [
    ([], "give MEASUREMENTS.csv, or --measure"),
    (["m.csv", "--measure"], "give either MEASUREMENTS.csv or --measure, not both"),
    (["--measure", "--resolutions", "224,big"], "--resolutions '224,big': expected comma-separated integers"),
    (["--measure", "--resolutions", "8"], "every resolution must be in 32..4096"),
    (["--measure", "--runs", "0"], "--runs, --check-runs and --threads must be >= 1"),
    (["--measure", "--check-runs", "0"], "--runs, --check-runs and --threads must be >= 1"),
    (["--measure", "--check-pair", "a.yaml", "--n", "0"], "--n must be >= 1"),
    (["--folds", "-1", "m.csv"], "--folds must be >= 0"),
    (["--channel-block", "0", "m.csv"], "--channel-block must be >= 1"),
    (["--cache-mb", "0", "m.csv"], "--cache-mb > 0"),
])
def test_measure_option_errors_are_one_line(tmp_path, profiles_dir, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "--device", "x", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("flags, message", [
    (["--n", "1000000000"], "--n 1000000000: at most 10,000"),
    (["--threads", "1000"], "--threads 1000: at most"),
    (["--runs", "10000000"], "--runs 10000000: at most 100,000"),
])
def test_measure_counts_are_bounded(tmp_path, profiles_dir, capsys, flags, message):
    assert main(["calibrate", "--measure", "--device", "x", "--cache", str(tmp_path / "c.jsonl")] + flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_measure_refuses_a_fifo_cache(tmp_path, profiles_dir, capsys):
    import os
    os.mkfifo(tmp_path / "c.jsonl")
    assert main(["calibrate", "--measure", "--device", "x", "--cache", str(tmp_path / "c.jsonl"), "--n", "5"]) == 2
    assert "not a regular file" in capsys.readouterr().err
