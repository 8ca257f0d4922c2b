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
from archc.latency.fit import Point, expand, fit, merge_duplicates, nnls_relative
from archc.latency.predict import (BUILTIN_DIR, available_profiles, load_profile, predict_from_features,
                                   predict_latency, validate_profile)
from archc.proxies.rank import inversions, kendall_tau_b
from archc.spec import load_spec

from conftest import ROOT, reference_file

SHIPPED = BUILTIN_DIR / "iphone12pro.yaml"


def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def published_rows():
    path = reference_file("published_fastvit.csv")
    lines = [l for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
    return list(csv.DictReader(lines))


def test_shipped_profile_loo_recomputed_from_published_csv():
    prof = shipped()
    rows = published_rows()
    by_spec = {p["spec"]: p for p in prof["points"]}
    points = []
    for r in rows:
        stem = r["name"][len("fastvit_"):] if r["name"].startswith("fastvit_") else r["name"]
        spec = f"specs/{stem}.yaml"
        stored = next(p for p in prof["points"] if r["name"] in p["label"].split("="))
        ms = r["iphone12pro_ms"]
        points.append(Point(label=r["name"], spec_path=spec, latency_ms=float(ms),
                            decimals=len(ms.split(".")[1]) if "." in ms else 0,
                            features=stored["features"], arch_key=stored["spec"]))
    assert len(points) == 12 and len(by_spec) == 10
    result = fit(points, tuple(prof["coefficients"]))
    assert result["loo"]["mape_pct"] <= 10.0
    assert result["loo"]["mape_pct"] == pytest.approx(prof["loo"]["mape_pct"], abs=1e-2)
    assert result["loo"]["rows_mape_pct"] <= 10.0
    # the fitted model and its leave-one-out predictions order the distinct published latencies correctly
    assert result["loo"]["inversions"] == 0 and result["loo"]["kendall_tau"] == pytest.approx(1.0)
    assert result["loo"]["fit_inversions"] == 0
    for name, c in result["coefficients"].items():
        assert c >= 0 and c == pytest.approx(prof["coefficients"][name], rel=1e-4)  # stored features: 6 decimals


@pytest.mark.parametrize("spec", ["specs/t8.yaml", "specs/ablation_v3.yaml"])
def test_shipped_profile_features_are_current(spec):
    """The features stored in the profile are what the code computes today (else: regenerate it)."""
    stored = next(p for p in shipped()["points"] if p["spec"] == spec)
    feats, graph = spec_features(load_spec(ROOT / spec))
    assert graph == shipped()["graph"]
    for k, v in stored["features"].items():
        assert feats[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_shipped_profile_orders_published_points():
    prof = shipped()
    pred = [predict_from_features(prof, p["features"]) for p in prof["points"]]
    truth = [p["latency_ms"] for p in prof["points"]]
    assert inversions(pred, truth) == 0
    assert kendall_tau_b(pred, truth) == pytest.approx(1.0)
    assert all(c >= 0 for c in prof["coefficients"].values())


def test_predict_latency_says_it_is_a_prediction():
    spec = load_spec(ROOT / "specs/t8.yaml")
    r = predict_latency(spec, "iphone12pro")
    prof = shipped()
    assert isinstance(r, LatencyResult) and r.kind == "predicted" and r.batch == 1
    assert r.expected_error_pct == pytest.approx(prof["loo"]["mape_pct"])
    assert r.resolution == (256, 256)
    point = next(p for p in prof["points"] if p["spec"] == "specs/t8.yaml")
    assert r.ms == pytest.approx(point["fitted_ms"], abs=1e-3)
    assert "prediction" in r.describe() and "expected error" in r.describe()
    assert sum(r.detail["terms_ms"].values()) == pytest.approx(r.ms, abs=1e-3)
    # the dispatcher routes a profile name to the prediction
    assert latency(spec, "iphone12pro").ms == pytest.approx(r.ms)


def test_prediction_grows_with_resolution_and_flags_extrapolation(tmp_path):
    spec = load_spec(ROOT / "specs/t8.yaml")
    small, full = predict_latency(spec, "iphone12pro", resolution=128), predict_latency(spec, "iphone12pro")
    assert small.resolution == (128, 128) and full.resolution == (256, 256) and small.ms < full.ms
    assert "extrapolation" not in small.detail and "extrapolation" not in full.detail
    doc = shipped()
    doc["feature_ranges"]["macs_dw"] = [0.0, 0.01]  # as if fitted on nets with far less depthwise work
    (tmp_path / "narrow.yaml").write_text(yaml.safe_dump(doc))
    r = predict_latency(spec, str(tmp_path / "narrow.yaml"))
    assert list(r.detail["extrapolation"]) == ["macs_dw"]


def test_available_profiles_builtin_and_user(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHC_PROFILES", str(tmp_path))
    profs = available_profiles()
    assert profs["iphone12pro"].source == "built-in" and profs["iphone12pro"].points == 10
    doc = shipped()
    doc["name"] = "myphone"
    doc["coefficients"] = {"const": 1.0, "macs_dense": 2.0}
    (tmp_path / "myphone.yaml").write_text(yaml.safe_dump(doc))
    profs = available_profiles()
    assert profs["myphone"].source == "user"
    r = predict_latency(load_spec(ROOT / "specs/t8.yaml"), "myphone")
    feats, _ = spec_features(load_spec(ROOT / "specs/t8.yaml"))
    assert r.ms == pytest.approx(1.0 + 2.0 * (feats["macs_conv"] + feats["macs_pointwise"]))


def test_unknown_profile_suggests_a_name():
    with pytest.raises(DeviceError, match=r"unknown latency profile 'iphone12p'.*did you mean 'iphone12pro'"):
        load_profile("iphone12p")
    with pytest.raises(ArchcError, match="did you mean 'iphone12pro'"):
        latency(load_spec(ROOT / "specs/t8.yaml"), "iphone12p")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(kind="other"), "not an archc latency profile"),
    (lambda d: d["coefficients"].update(macs_dens=1.0), r"coefficients.macs_dens: unknown feature .*did you mean 'macs_dense'"),
    (lambda d: d["coefficients"].update(const=-0.1), r"coefficients.const: -0.1 must be a finite non-negative"),
    (lambda d: d.pop("loo"), "loo.mape_pct: missing"),
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


def test_op_kinds_outside_the_calibration_data_are_flagged():
    tiny = {"name": "tinypool", "num_classes": 10, "input_size": 64, "stem": {"type": "mobileone", "kernel": 3},
            "stage_defaults": {"mlp_ratio": 2, "ffn": "convffn", "ffn_kernel": 3,
                               "downsample": {"type": "replk", "kernel": 5, "small_kernel": 3, "stride": 2}},
            "stages": [{"depth": 1, "width": 16, "mixer": "pool"}, {"depth": 1, "width": 32, "mixer": "repmixer"}],
            "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.0625}}
    r = predict_latency(load_spec(tiny), "iphone12pro")
    assert "pool" in r.detail["unseen_op_kinds"] and "likely low" in r.detail["note"]
    assert "unseen_op_kinds" not in predict_latency(load_spec(ROOT / "specs/t8.yaml"), "iphone12pro").detail


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
