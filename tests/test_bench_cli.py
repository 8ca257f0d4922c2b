"""``archc bench``: JSON output, train vs deploy, a resolution sweep with its plot, one-line errors."""
from __future__ import annotations

import json

import pytest
import yaml

from archc.cli import main

TINY = {
    "name": "tiny_cli", "num_classes": 10, "input_size": 32,
    "stage_defaults": {"mlp_ratio": 2, "ffn_kernel": 3,
                       "downsample": {"type": "replk", "kernel": 3, "small_kernel": None, "stride": 2}},
    "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"}, {"depth": 1, "width": 32, "mixer": "repmixer"}],
    "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.25},
}


@pytest.fixture
def specs(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text(yaml.safe_dump(TINY))
    b = tmp_path / "b.yaml"
    b.write_text(yaml.safe_dump({**TINY, "name": "tiny_cli_wide",
                                 "stages": [{"depth": 1, "width": 32, "mixer": "repmixer"},
                                            {"depth": 1, "width": 64, "mixer": "repmixer"}]}))
    return a, b


def test_bench_json_train_vs_deploy(specs, capsys):
    a, _ = specs
    assert main(["bench", str(a), "--runs", "3", "--warmup", "1", "--train", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    graphs = [(r["name"], r["graph"]) for r in out["results"]]
    assert graphs == [("tiny_cli", "deploy"), ("tiny_cli", "train")]
    for r in out["results"]:
        assert r["kind"] == "measured" and r["runs"] == 3 and r["batch"] == 1 and r["resolution"] == [32, 32]
        assert r["ms"] > 0 and r["iqr_ms"] >= 0 and r["cv"] >= 0


def test_bench_sweep_writes_a_plot(specs, tmp_path, capsys):
    a, b = specs
    plot = tmp_path / "sweep.png"
    assert main(["bench", str(a), str(b), "--resolutions", "32,48", "--runs", "2", "--warmup", "0",
                 "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "tiny_cli_wide" in text and "48x48" in text and "plot written" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000


def test_runs_auto_sizes_the_count_to_the_time_budget(specs, capsys):
    from archc.cli.bench import AUTO_MAX_RUNS, AUTO_MIN_RUNS, auto_runs
    assert auto_runs(4700.0, 10.0) == AUTO_MIN_RUNS     # a 1024 px point: 10 runs, not 100
    assert auto_runs(0.5, 10.0) == AUTO_MAX_RUNS        # a fast one: capped
    assert auto_runs(200.0, 10.0) == 50
    a, _ = specs
    assert main(["bench", str(a), "--time-budget", "0.1", "--json"]) == 0  # --runs auto is the default
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert AUTO_MIN_RUNS <= r["runs"] <= AUTO_MAX_RUNS
    assert main(["bench", str(a), "--time-budget", "0"]) == 2
    assert "--time-budget 0: must be 0.1 to 3600" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["bench", str(a), "--runs", "many"])
    assert exit_.value.code == 2 and "expected a whole number or 'auto', got 'many'" in capsys.readouterr().err


def test_an_interrupted_bench_keeps_what_finished(specs, capsys, monkeypatch):
    """Ctrl-C during the second point: the first is printed (JSON marked incomplete) and the exit code is 130."""
    import archc.latency as lat
    a, b = specs
    real, calls = lat.latency, []

    def latency(spec, target, **kw):
        calls.append(spec.name)
        if spec.name == "tiny_cli_wide":
            raise KeyboardInterrupt
        return real(spec, target, **kw)
    monkeypatch.setattr(lat, "latency", latency)
    assert main(["bench", str(a), str(b), "--runs", "2", "--warmup", "0", "--json"]) == 130
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert [r["name"] for r in doc["results"]] == ["tiny_cli"] and doc["complete"] is False
    assert "1 of 2 points finished" in out.err


def test_bench_errors_are_one_line(specs, capsys):
    a, _ = specs
    assert main(["bench", str(a), "--target", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("archc: error: unknown latency target 'gpu'") and "\n" not in err
    assert main(["bench", str(a), "--resolutions", "32,abc"]) == 2
    assert "expected comma-separated integers" in capsys.readouterr().err
    assert main(["bench", str(a), "--runs", "0"]) == 2
    assert "--runs must be >= 1" in capsys.readouterr().err


def test_bench_profile_target_is_a_prediction(specs, capsys):
    from archc.latency import latency  # noqa: F401  (the dispatcher the CLI goes through)
    from archc.latency.predict import available_profiles
    if "iphone12pro" not in available_profiles():
        pytest.skip("no iphone12pro profile in this checkout")
    a, _ = specs
    assert main(["bench", str(a), "--target", "iphone12pro", "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)["results"]
    assert r["kind"] == "predicted" and r["target"] == "iphone12pro" and r["ms"] > 0
    assert r["expected_error_pct"] is not None and r["runs"] is None
    assert main(["bench", str(a), "--target", "iphone12pro"]) == 0
    assert "predicted" in capsys.readouterr().out


def test_bench_prediction_outside_the_data_shows_why_in_table_json_and_plot(specs, tmp_path, capsys):
    """A 32x32 toy is far below every calibration point: the stated error widens, and the table, --json
    and the plot say so; predicted figures are never labelled a median."""
    from archc.latency.predict import available_profiles, load_profile
    if "iphone12pro" not in available_profiles():
        pytest.skip("no iphone12pro profile in this checkout")
    a, _ = specs
    err = load_profile("iphone12pro")["error"]
    assert main(["bench", str(a), "--target", "iphone12pro", "--resolutions", "32,48", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    for r in results:
        assert r["caveats"] and "extrapolates" in r["caveats"][0]
        assert r["expected_error_pct"] == pytest.approx(err["outside_pct"])
        assert r["error_bound_pct"] == pytest.approx(err["outside_bound_pct"])
    png = tmp_path / "p.png"
    assert main(["bench", str(a), "--target", "iphone12pro", "--resolutions", "32,48", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "predicted ms" in out and "median" not in out and "outside the calibration data: extrapolates" in out
    assert png.stat().st_size > 0


def test_a_checkpoint_works_where_a_spec_does(specs, tmp_path, capsys):
    """`archc build X --save F.pt`, then F.pt as the SPEC of bench, export and proxies: its stored spec, with its
    weights (export verifies the file against the model it loaded)."""
    a, _ = specs
    ckpt = tmp_path / "tiny.pt"
    assert main(["build", str(a), "--save", str(ckpt)]) == 0
    capsys.readouterr()
    assert main(["bench", str(ckpt), "--runs", "2", "--warmup", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["name"] == "tiny_cli"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "x"), "--json"]) == 0
    assert (tmp_path / "x" / "tiny_cli.onnx").exists()
    capsys.readouterr()
    assert main(["export", str(ckpt), "--weights", str(ckpt.with_name("other.pt")), "--format", "onnx"]) == 2
    assert "either as SPEC or with --weights, not both" in capsys.readouterr().err
    not_archc = tmp_path / "plain.pt"
    import torch
    torch.save({"stem.0.weight": torch.zeros(1)}, not_archc)
    assert main(["bench", str(not_archc)]) == 2
    assert "stores no spec; name the model and pass the file as weights" in capsys.readouterr().err


def test_a_predicted_pair_gets_a_ratio_panel(specs, tmp_path, monkeypatch):
    """Two specs over the same sizes: a second panel shows their latency ratio with its bands."""
    import matplotlib.figure
    panels = []
    real = matplotlib.figure.Figure.savefig

    def savefig(fig, *a, **kw):
        panels.append([ax.get_ylabel() for ax in fig.axes])
        return real(fig, *a, **kw)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    a, b = specs
    plot = tmp_path / "pair.png"
    assert main(["bench", str(a), str(b), "--target", "iphone12pro", "--resolutions", "32,48", "--plot", str(plot)]) == 0
    assert panels == [["latency, predicted (ms)", "latency ratio"]] and plot.stat().st_size > 5000
    assert main(["bench", str(a), "--target", "iphone12pro", "--resolutions", "32,48", "--plot", str(plot)]) == 0
    assert panels[-1] == ["latency, predicted (ms)"]  # one spec: no ratio


def test_ablate_and_calibration_rows_take_a_checkpoint(specs, tmp_path, capsys):
    """A checkpoint stands for its spec in an ablation table and in a measurements CSV's spec column."""
    a, b = specs
    ckpt = tmp_path / "tiny.pt"
    assert main(["build", str(a), "--save", str(ckpt)]) == 0
    capsys.readouterr()
    assert main(["ablate", str(ckpt), str(b), "--target", "none", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["name"] for r in rows] == ["tiny_cli", "tiny_cli_wide"] and rows[0]["variant"] == "tiny"
    from archc.latency.fit import read_measurements, spec_of
    csv = tmp_path / "m.csv"
    csv.write_text(f"spec,latency_ms\n{ckpt},1.0\n{a},1.1\n")
    points = read_measurements(str(csv))
    assert spec_of(points[0].spec_path).name == "tiny_cli"


def test_bench_times_the_int8_graph_archc_exports(specs, tmp_path, capsys):
    """--precision int8 times the deploy graph quantized with archc's recipe (QDQ ops read back from the graph it
    ran), once per point (the auto-run probe reuses it), calibrated on real images where given."""
    import onnx

    from archc.runtime import runners
    a, _ = specs
    runners._INT8_GRAPHS.clear()
    data = "tests/data/fashion-mnist-slice"
    spec = tmp_path / "grey.yaml"
    spec.write_text(yaml.safe_dump({**TINY, "in_chans": 1}))
    assert main(["bench", str(spec), "--target", "onnxruntime", "--precision", "int8", "--calibrate-data", data,
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (r,) = out["results"]
    assert r["detail"]["precision"] == "int8" and r["detail"]["runtime"] == "onnxruntime" and r["ms"] > 0
    assert len(runners._INT8_GRAPHS) == 1  # the probe and the timed runs share one quantization
    (model, graph), = runners._INT8_GRAPHS.values()
    ops = [n.op_type for n in onnx.load_model_from_string(graph).graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0


@pytest.mark.parametrize("argv, fragment", [
    (["--precision", "int8"], "--precision int8 is measured in ONNX Runtime: add --target onnxruntime"),
    (["--precision", "int8", "--target", "onnxruntime", "--train"], "drop --train"),
    (["--calibrate-data", "fashion-mnist"], "--calibrate-data goes with --precision int8"),
])
def test_bench_precision_errors_are_one_line(specs, capsys, argv, fragment):
    a, _ = specs
    assert main(["bench", str(a), *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err
