"""``archc proxies --eval --groundtruth``: signals ranked against a trained ground truth, overall and per
latency band, with bootstrap intervals, regret and the seed-to-seed noise ceiling."""
from __future__ import annotations

import json
import os

import pytest

import archc
from archc.cli import main
from archc.errors import ArchcError
from archc.latency.fit import arch_key
from archc.proxies.groundtruth import noise_ceiling, rank_signal, read_groundtruth
from archc.spec import spec_to_dict

BASE = {"name": "g", "num_classes": 10, "input_size": 32, "in_chans": 1, "stem": {"type": "mobileone", "kernel": 3},
        "stage_defaults": {"mlp_ratio": 2, "ffn": "convffn", "ffn_kernel": 3,
                           "downsample": {"type": "replk", "kernel": 5, "small_kernel": 3, "stride": 2}},
        "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.0625}}


def ground_truth(tmp_path, truth_of=lambda params: params):
    """Six architectures in two bands; each seed's accuracy is ``truth_of(params)`` (+0.1 on seed 1)."""
    rows = []
    for i, (w, d) in enumerate([(8, 1), (16, 1), (16, 2), (24, 1), (24, 2), (32, 2)]):
        spec = archc.load_spec({**BASE, "name": f"g{i}", "stages": [{"depth": d, "width": w, "mixer": "repmixer"},
                                                                     {"depth": 1, "width": 2 * w, "mixer": "repmixer"}]})
        params = sum(p.numel() for p in archc.build(spec).parameters())
        for seed in (0, 1):
            acc = truth_of(params) + 0.1 * seed
            rows.append({"id": f"g{i}", "arch": arch_key(spec, None), "spec": spec_to_dict(spec), "family": "fastvit",
                         "band": "low" if i < 3 else "high", "seed": seed, "val_top1": acc, "test_top1": acc,
                         "latency_ms": 1.0 + i, "params": params, "train_seconds": 1.0})
    path = tmp_path / "groundtruth.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_signal_equal_to_the_truth_ranks_perfectly_and_regrets_nothing(tmp_path):
    archs = read_groundtruth(ground_truth(tmp_path))
    assert len(archs) == 6 and all(len(a.by_seed) == 2 for a in archs)
    perfect = rank_signal("params", archs, {a.arch: a.params for a in archs})
    assert perfect.kendall_tau == 1.0 and perfect.spearman == 1.0
    assert [b["regret"] for b in perfect.bands] == [0.0, 0.0] and [b["kendall_tau"] for b in perfect.bands] == [1.0, 1.0]
    reverse = rank_signal("neg", archs, {a.arch: -a.params for a in archs})
    assert reverse.kendall_tau == -1.0 and all(b["regret"] > 0 for b in reverse.bands)
    lo, hi = perfect.kendall_tau_ci
    assert lo <= perfect.kendall_tau <= hi
    ceiling = noise_ceiling(archs)
    assert ceiling["n"] == 6 and ceiling["kendall_tau"] == 1.0 and ceiling["mean_abs_diff"] == pytest.approx(0.1)


def test_cli_json_has_every_signal_with_intervals_bands_and_regret(tmp_path, capsys):
    path = ground_truth(tmp_path, truth_of=lambda params: -params)  # smaller is better here
    assert main(["proxies", "--eval", "--groundtruth", str(path), "--proxy", "params", "--proxy", "synflow",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["architectures"] == 6 and out["noise_ceiling"]["n"] == 6
    by = {r["signal"]: r for r in out["results"]}
    assert by["params"]["kendall_tau"] == -1.0 and by["params"]["spearman"] == -1.0
    for r in by.values():
        assert len(r["kendall_tau_ci"]) == 2 and len(r["spearman_ci"]) == 2
        assert {b["band"] for b in r["bands"]} == {"low", "high"}
        assert all("kendall_tau" in b and "regret" in b for b in r["bands"])


@pytest.mark.parametrize("content, message", [
    ("not json\n", "not a JSON row"),
    ('{"arch": "x"}\n', "row lacks spec, family"),
])
def test_bad_ground_truth_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ArchcError, match=message):
        read_groundtruth(path)


def test_ground_truth_must_be_a_regular_file(tmp_path, capsys):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    assert main(["proxies", "--eval", "--groundtruth", str(fifo)]) == 2
    assert "not a regular file" in capsys.readouterr().err
