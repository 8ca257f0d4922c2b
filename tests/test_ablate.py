"""``archc ablate``: grids of overrides and lists of specs -> a Table-4-style markdown table and CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from archc import build
from archc.cli import main as archc_main
from archc.errors import SpecError
from archc.latency import LatencyResult
from archc.search.ablate import evaluate, grid, markdown, parse_vary, split_values, write_csv
from archc.search.objective import is_predicted

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SMALL = ["input_size=64", "num_classes=10"]  # keeps MAC profiling and latency cheap


def test_parse_vary_and_values():
    assert parse_vary("stages[2].mixer=repmixer,attention") == ("stages[2].mixer", ["repmixer", "attention"])
    assert split_values("[224,224],[256,256]") == ["[224,224]", "[256,256]"]
    with pytest.raises(SpecError, match="must look like key.path=value1,value2"):
        parse_vary("stages[2].mixer")
    with pytest.raises(SpecError, match="malformed key path"):
        parse_vary("stages[x].mixer=a,b")
    with pytest.raises(SpecError, match="listed twice"):
        parse_vary("stages[2].mixer=pool,pool")


def test_grid_is_the_cartesian_product_of_the_axes():
    rows = grid([str(SPECS / "sa12.yaml")], ["stages[2].mixer=repmixer,attention", "stages[3].mixer=repmixer,attention"],
                SMALL)
    assert len(rows) == 4
    assert [(r.spec.mixers[2], r.spec.mixers[3]) for r in rows] == [
        ("repmixer", "repmixer"), ("repmixer", "attention"), ("attention", "repmixer"), ("attention", "attention")]
    assert rows[3].label == "stages[2].mixer=attention stages[3].mixer=attention"
    two = grid([str(SPECS / "t8.yaml"), str(SPECS / "t12.yaml")], ["stages[3].mixer=pool"], SMALL)
    assert [r.label for r in two] == ["t8: stages[3].mixer=pool", "t12: stages[3].mixer=pool"]


def test_bad_override_in_a_grid_names_the_key_and_choices():
    with pytest.raises(SpecError, match=r"stages\[2\]\.mixer: invalid value 'atention' \(did you mean 'attention'\?\)"):
        grid([str(SPECS / "sa12.yaml")], ["stages[2].mixer=repmixer,atention"])


def test_evaluate_fills_params_macs_latency_and_score(tmp_path):
    rows = grid([str(SPECS / "ablation_v1.yaml"), str(SPECS / "ablation_v4.yaml")], [], SMALL)
    seen = []

    def lat(spec, target, **kw):
        seen.append(kw)
        return LatencyResult(target=target, ms=0.1 * spec.stages[2].ffn_kernel, kind="measured", batch=1,
                             resolution=spec.input_size, runs=kw["runs"])

    evaluate(rows, target="cpu", objective="params", lock_dir=tmp_path / "locks", runs=7, latency_fn=lat)
    v1, v4 = rows
    assert v1.params == sum(p.numel() for p in build(v1.spec).parameters())
    assert v1.params < v4.params and v1.macs < v4.macs        # 3x3 kernels are cheaper than 7x7
    assert v1.macs_graph == "deploy"
    assert (v1.latency_ms, v4.latency_ms) == pytest.approx((0.3, 0.7))
    assert seen == [{"runs": 7, "warmup": 10}] * 2               # measured targets get the runs asked for
    assert v1.score == pytest.approx(v1.params / 1e6)
    md = markdown(rows, "cpu", "params")
    assert md.splitlines()[0] == "| variant | params (M) | MACs (G) | latency cpu (ms, measured) | score (params, M) |"
    assert f"| ablation_v1 | {v1.params / 1e6:.2f} | {v1.macs / 1e9:.3f} | 0.300 |" in md
    out = write_csv(rows, tmp_path / "t4.csv", "cpu", "params")
    got = list(csv.DictReader(out.open()))
    assert [int(r["macs"]) for r in got] == [v1.macs, v4.macs] and float(got[0]["latency_ms"]) == pytest.approx(0.3)


def test_cli_prints_markdown_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "abl.csv"
    code = archc_main(["ablate", str(SPECS / "t8.yaml"), "--set", "input_size=64", "--vary", "stages[3].mixer=repmixer,pool",
                       "--target", "none", "--objective", "params", "--out", str(out), "--markdown-only"])
    assert code == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(lines) == 4 and lines[3].startswith("| stages[3].mixer=pool |")
    rows = list(csv.DictReader(out.open()))
    assert [r["overrides"] for r in rows] == ["stages[3].mixer=repmixer", "stages[3].mixer=pool"]
    assert rows[1]["score"] and float(rows[1]["score"]) < float(rows[0]["score"])  # pooling has no mixer weights


def test_cli_user_errors_are_one_line(capsys):
    assert archc_main(["ablate", str(SPECS / "t8.yaml"), "--vary", "stages[9].mixer=pool", "--target", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archc: error:") and "no index 9" in err and len(err.strip().splitlines()) == 1
    assert archc_main(["ablate", str(SPECS / "t8.yaml"), "--target", "iphone13"]) == 2
    assert "unknown latency target 'iphone13'" in capsys.readouterr().err


@pytest.mark.skipif(not is_predicted("iphone12pro"), reason="needs the predicted latency target iphone12pro")
def test_table4_with_predicted_latency_and_published_reference(tmp_path, capsys, reference_dir):
    ref = reference_dir / "published_fastvit.csv"
    specs = [str(SPECS / f"ablation_v{i}.yaml") for i in (1, 4)]
    assert archc_main(["ablate", *specs, "--set", "input_size=64", "--objective", "params", "--reference", str(ref), "--markdown-only",
                       "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "latency iphone12pro (ms, predicted)" in text and "published top-1" in text
    # 64x64 is below every calibration point: each prediction states the widened (family-out) error, marked *
    from archc.latency.predict import load_profile
    outside = load_profile("iphone12pro")["error"]["outside_pct"]
    assert "± held-out" in text and text.count(f"±{outside:.1f}%*") == 2
    rows = list(csv.DictReader((tmp_path / "ablation.csv").open()))
    assert all(float(r["latency_error_pct"]) == pytest.approx(outside) for r in rows)
    assert [r["published_top1"] for r in rows] == ["78.9", "79.8"]
    assert all(float(r["latency_ms"]) > 0 for r in rows)


def test_a_full_disk_is_one_line_naming_the_csv_and_leaves_nothing(tmp_path, capsys, full_disk):
    """issue 23: the CSV was opened in place: '[Errno 28] No space left on device' with no file named, and a
    0-byte file left behind."""
    from archc.errors import ArchcError
    out = tmp_path / "abl.csv"
    with pytest.raises(ArchcError, match=rf"^--out '{out}': cannot write: No space left on device$"):
        write_csv([], out, "cpu", "params")
    assert archc_main(["ablate", "fastvit_t8", "--target", "none", "--objective", "params", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"archc: error: --out '{out}': folder '{tmp_path}': cannot write there: No space left") \
        and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
