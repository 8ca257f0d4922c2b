"""The latency model: the shipped iPhone 12 Pro profile against the published figures, prediction
results, profile discovery and validation, and the fitting maths on data with a known answer."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from archc.errors import ArchcError, DeviceError
from archc.latency import LatencyResult, latency
from archc.latency.features import spec_features
from archc.latency.fit import Point, expand, merge_duplicates, nnls_relative
from archc.latency.predict import (BUILTIN_DIR, available_profiles, load_profile, predict_from_features,
                                   predict_latency, validate_profile)
from archc.proxies.rank import inversions, kendall_tau_b
from archc.spec import load_spec

from conftest import ROOT, reference_file

SHIPPED = BUILTIN_DIR / "iphone12pro.yaml"


def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def published_rows():
    path = ROOT / "archc" / "data" / "published_latency.csv"
    lines = [l for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
    return list(csv.DictReader(lines))


def test_shipped_profile_is_fitted_on_the_published_rows_only():
    prof = shipped()
    rows = published_rows()
    assert sorted(r["label"] for r in prof["rows"]) == sorted(r["model"] for r in rows)
    assert {r["latency_ms"] for r in prof["rows"]} == {float(r["iphone12pro_ms"]) for r in rows}
    assert prof["version"] == 2 and all(c >= 0 for c in prof["coefficients"].values())
    assert set(prof["families"]) == {"fastvit_repmixer", "fastvit_attention", "poolformer"}


def test_shipped_profile_held_out_figures_match_its_points():
    """The stored summary is what the stored held-out predictions give (no figure without its data)."""
    prof = shipped()
    pts = prof["points"]
    y = np.array([p["latency_ms"] for p in pts])
    k = np.array([p["heldout_ms"] for p in pts])
    l = np.array([p["lofo_ms"] for p in pts])
    assert prof["heldout"]["kfold"]["mape_pct"] == pytest.approx(np.mean(np.abs(k - y) / y) * 100, abs=0.01)
    assert prof["heldout"]["lofo"]["mape_pct"] == pytest.approx(np.mean(np.abs(l - y) / y) * 100, abs=0.01)
    assert prof["heldout"]["kfold"]["kendall_tau"] == pytest.approx(kendall_tau_b(k, y), abs=1e-3)
    assert prof["error"]["inside_pct"] == prof["heldout"]["kfold"]["mape_pct"]
    assert prof["error"]["outside_bound_pct"] >= prof["heldout"]["lofo"]["max_ape_pct"]
    chosen = [c for c in prof["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["model"].startswith(prof["combine"] + ":")


@pytest.mark.parametrize("spec", ["specs/t8.yaml", "specs/poolformer_s24.yaml"])
def test_shipped_profile_features_are_current(spec):
    """The stored fitted values are what the code predicts today (else: regenerate the profile)."""
    stored = next(p for p in shipped()["points"] if p["spec"] == spec)
    feats, graph = spec_features(load_spec(ROOT / spec), stored["resolution"])
    assert graph == shipped()["graph"]
    for k, v in stored["features"].items():
        assert feats[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
    r = predict_latency(load_spec(ROOT / spec), "iphone12pro", resolution=stored["resolution"])
    assert r.ms == pytest.approx(stored["fitted_ms"], abs=2e-4)


def test_predict_latency_says_it_is_a_prediction():
    spec = load_spec(ROOT / "specs/t8.yaml")
    r = predict_latency(spec, "iphone12pro")
    prof = shipped()
    assert isinstance(r, LatencyResult) and r.kind == "predicted" and r.batch == 1
    assert r.expected_error_pct == pytest.approx(prof["error"]["inside_pct"]) and not r.caveats
    assert r.error_bound_pct == pytest.approx(prof["error"]["inside_bound_pct"])
    assert r.resolution == (256, 256)
    point = next(p for p in prof["points"] if p["spec"] == "specs/t8.yaml")
    assert r.ms == pytest.approx(point["fitted_ms"], abs=1e-3)
    assert "prediction" in r.describe() and "expected error" in r.describe()
    assert sum(r.detail["terms_ms"].values()) == pytest.approx(r.ms, abs=1e-3)
    # the dispatcher routes a profile name to the prediction
    assert latency(spec, "iphone12pro").ms == pytest.approx(r.ms)


def test_prediction_grows_with_resolution_and_flags_extrapolation(tmp_path):
    spec = load_spec(ROOT / "specs/s12.yaml")
    small, full = predict_latency(spec, "iphone12pro", resolution=224), predict_latency(spec, "iphone12pro")
    assert small.resolution == (224, 224) and full.resolution == (256, 256) and small.ms < full.ms
    assert "extrapolation" not in small.detail and "extrapolation" not in full.detail
    # 1024x1024: 16x the pixels of any calibration point; the stated error widens to the family-out error
    big = predict_latency(spec, "iphone12pro", resolution=1024)
    assert "pixels" in big.detail["extrapolation"] and big.caveats
    assert big.expected_error_pct == pytest.approx(shipped()["error"]["outside_pct"])
    assert big.error_bound_pct == pytest.approx(shipped()["error"]["outside_bound_pct"])
    assert big.error_bound_pct > full.error_bound_pct
    # below the data too: T8 at 192 has fewer MACs than any calibration point
    assert "macs_dense" in predict_latency(load_spec(ROOT / "specs/t8.yaml"), "iphone12pro", 192).detail["extrapolation"]
    doc = shipped()
    doc["feature_ranges"]["macs_dw"] = [0.0, 0.01]  # as if fitted on nets with far less depthwise work
    (tmp_path / "narrow.yaml").write_text(yaml.safe_dump(doc))
    r = predict_latency(spec, str(tmp_path / "narrow.yaml"))
    assert list(r.detail["extrapolation"]) == ["macs_dw"]


def test_available_profiles_builtin_and_user(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHC_PROFILES", str(tmp_path))
    profs = available_profiles()
    assert profs["iphone12pro"].source == "built-in" and profs["iphone12pro"].points == 14
    doc = shipped()
    doc["name"] = "myphone"
    doc["coefficients"] = {"const": 1.0, "macs_dense": 2.0}
    (tmp_path / "myphone.yaml").write_text(yaml.safe_dump(doc))
    profs = available_profiles()
    assert profs["myphone"].source == "user"
    r = predict_latency(load_spec(ROOT / "specs/t8.yaml"), "myphone")
    feats, _ = spec_features(load_spec(ROOT / "specs/t8.yaml"))
    assert r.ms == pytest.approx(1.0 + 2.0 * (feats["macs_conv"] + feats["macs_pointwise"]))


def test_profiles_are_parsed_once_but_an_edited_file_is_read_again(tmp_path, monkeypatch):
    """Profiles are cached per file version (a search predicts thousands of times); editing one takes effect,
    and a caller changing its copy does not change what the next caller gets."""
    import os
    monkeypatch.setenv("ARCHC_PROFILES", str(tmp_path))
    doc = shipped()
    doc["name"] = "myphone"
    doc["coefficients"] = {"const": 1.0}
    f = tmp_path / "myphone.yaml"
    f.write_text(yaml.safe_dump(doc))
    from archc.latency import predict as predict_mod
    parses = []

    class Counting(predict_mod._SAFE_LOADER):
        def __init__(self, stream):
            parses.append(1)
            super().__init__(stream)

    monkeypatch.setattr(predict_mod, "_SAFE_LOADER", Counting)
    monkeypatch.setattr(predict_mod, "_PARSED", {})  # what earlier tests parsed does not count here
    first = load_profile("myphone")
    first["coefficients"]["const"] = 99.0
    assert load_profile("myphone")["coefficients"]["const"] == 1.0
    available_profiles()
    available_profiles()
    assert len(parses) == 2  # myphone once, the built-in iphone12pro once: never again while unchanged
    doc["coefficients"] = {"const": 2.0}
    f.write_text(yaml.safe_dump(doc))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a distinct mtime even on coarse clocks
    assert load_profile("myphone")["coefficients"]["const"] == 2.0
    assert len(parses) == 3  # the edited file, read again
    assert available_profiles()["myphone"].points == len(doc["points"])


def test_unknown_profile_suggests_a_name():
    with pytest.raises(DeviceError, match=r"unknown latency profile 'iphone12p'.*did you mean 'iphone12pro'"):
        load_profile("iphone12p")
    with pytest.raises(ArchcError, match="did you mean 'iphone12pro'"):
        latency(load_spec(ROOT / "specs/t8.yaml"), "iphone12p")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(kind="other"), "not an archc latency profile"),
    (lambda d: d["coefficients"].update(macs_dens=1.0), r"coefficients.macs_dens: unknown feature .*did you mean 'macs_dense'"),
    (lambda d: d["coefficients"].update(const=-0.1), r"coefficients.const: -0.1 must be a finite non-negative"),
    (lambda d: d.pop("heldout"), "heldout.kfold.mape_pct: missing"),
    (lambda d: d.update(combine="min"), "combine: 'min' is not a valid choice; valid: sum, max"),
])
def test_malformed_profiles_are_rejected(mutate, message):
    doc = shipped()
    mutate(doc)
    with pytest.raises(DeviceError, match=message):
        validate_profile(doc, "x.yaml")


def test_nnls_relative_recovers_known_coefficients_and_never_goes_negative():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(12), rng.uniform(0.5, 8, 12), rng.uniform(0, 0.3, 12), rng.uniform(0, 3, 12)])
    truth = np.array([0.4, 0.5, 1.2, 0.6])
    assert nnls_relative(X, X @ truth) == pytest.approx(truth, rel=1e-9)
    # a data set that an unconstrained fit explains with a negative cost per unit gets a zero there
    y = X @ np.array([0.4, 0.5, 0.0, 0.6]) - 0.2 * X[:, 2]
    coef = nnls_relative(X, y)
    assert np.all(coef >= 0) and coef[2] == 0.0
    unconstrained = np.linalg.lstsq(X / y[:, None], np.ones(12), rcond=None)[0]
    assert unconstrained[2] < 0


def test_duplicate_architectures_merge_to_the_most_precise_value():
    f = {"macs_conv": 1.0}
    pts = [Point("s12", "a", 1.390, decimals=3, arch_key="A", features=f),
           Point("v4", "b", 1.4, decimals=1, arch_key="A", features=f),
           Point("v9", "c", 2.0, decimals=1, arch_key="B", features=f)]
    merged, notes = merge_duplicates(pts)
    assert [p.latency_ms for p in merged] == [1.390, 2.0]
    assert "consistent within rounding" in notes[0]
    pts[1].latency_ms = 1.6  # 1.6 cannot be a rounding of 1.390
    assert "DISAGREE" in merge_duplicates(pts)[1][0]


def test_expand_derived_features():
    assert expand({"macs_conv": 1.0, "macs_pointwise": 2.0, "attn_elems": 3.0}, ["const", "macs_dense", "attn_elems"]) == [1.0, 3.0, 3.0]


def test_op_kinds_outside_the_calibration_data_are_flagged(tmp_path):
    doc = shipped()
    doc["op_kinds"] = [k for k in doc["op_kinds"] if k not in ("pool", "groupnorm")]  # as if fitted on FastViT only
    (tmp_path / "fastvit_only.yaml").write_text(yaml.safe_dump(doc))
    r = predict_latency(load_spec(ROOT / "specs/poolformer_s12.yaml"), str(tmp_path / "fastvit_only.yaml"))
    assert r.detail["unseen_op_kinds"] == ["groupnorm", "pool"] and "likely low" in r.detail["note"]
    assert any("never saw (groupnorm, pool)" in c for c in r.caveats)
    assert r.expected_error_pct == pytest.approx(doc["error"]["outside_pct"])
    inside = predict_latency(load_spec(ROOT / "specs/poolformer_s12.yaml"), "iphone12pro")
    assert "unseen_op_kinds" not in inside.detail


def test_a_block_family_the_calibration_never_saw_widens_the_stated_error():
    """MobileOne's graph has only op kinds the iPhone calibration saw (convs, depthwise convs, ReLU, pooling),
    but chains them as no FastViT or PoolFormer does (a depthwise conv into a ReLU): outside the data, with
    the family-out error, and the caveat names the patterns. A FastViT variant stays inside."""
    doc = shipped()
    r = predict_latency(load_spec(ROOT / "specs/mobileone_s2.yaml"), "iphone12pro")
    assert "unseen_op_kinds" not in r.detail
    assert "dwconv>relu" in r.detail["unseen_op_patterns"] and "relu>dwconv" in r.detail["unseen_op_patterns"]
    assert any(c.startswith("a block family the calibration never saw") and "dwconv>relu" in c for c in r.caveats)
    assert r.expected_error_pct == pytest.approx(doc["error"]["outside_pct"])
    inside = predict_latency(load_spec(ROOT / "specs/sa24.yaml"), "iphone12pro")
    assert "unseen_op_patterns" not in inside.detail and inside.expected_error_pct == pytest.approx(
        doc["error"]["inside_pct"])
    assert {"conv>gelu", "pool>sub", "attention>linear"} <= set(doc["op_patterns"])


def test_a_broken_user_profile_is_skipped_not_fatal(tmp_path, monkeypatch, capsys):
    from archc.cli import main
    from archc.latency.predict import invalid_profiles
    monkeypatch.setenv("ARCHC_PROFILES", str(tmp_path))
    (tmp_path / "broken.yaml").write_text("kind: archc-latency-profile\nname: broken\ncoefficients: {const: -1}\n")
    with pytest.warns(UserWarning, match=r"broken.yaml coefficients.const: -1 must be a finite non-negative"):
        assert "broken" not in available_profiles()
    assert list(invalid_profiles()) == [str(tmp_path / "broken.yaml")]
    with pytest.raises(DeviceError, match="broken.yaml coefficients.const"):
        load_profile("broken")
    assert main(["devices"]) == 0
    assert "not loaded:" in capsys.readouterr().out


def test_a_fifo_among_the_user_profiles_is_skipped_at_once(tmp_path, monkeypatch):
    """A FIFO named like a profile would block every command that lists targets; it is reported and skipped."""
    import os
    import warnings

    from archc.latency.predict import available_profiles, invalid_profiles
    monkeypatch.setenv("ARCHC_PROFILES", str(tmp_path))
    os.mkfifo(tmp_path / "stuck.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = available_profiles()
    assert "stuck" not in names and "iphone12pro" in names
    assert "not a regular file" in invalid_profiles()[str(tmp_path / "stuck.yaml")]


def test_archc_profiles_naming_a_file_is_reported(tmp_path, monkeypatch):
    """$ARCHC_PROFILES pointing at a file (or a FIFO) instead of a folder: said, not silently ignored."""
    import os

    from archc.latency.predict import available_profiles, invalid_profiles
    os.mkfifo(tmp_path / "evil.yaml")
    monkeypatch.setenv("ARCHC_PROFILES", str(tmp_path / "evil.yaml"))
    assert "iphone12pro" in available_profiles()
    assert "is not a folder" in invalid_profiles()[str(tmp_path / "evil.yaml")]
