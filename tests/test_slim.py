"""Latency-driven slimming: the supernet trains its path preferences; the greedy slimmer gives up the
least importance per millisecond first, stops at the budget with a point of the space, refuses an
unreachable budget; ``archc slim`` writes a spec ``archc build`` takes, the trace and the plot."""
from __future__ import annotations

import json

import pytest
import torch

import archc
from archc.errors import SearchError
from archc.search.slim import build_supernet, slim, stage_choices, train_supernet
from archc.space import load_space, point_from_spec
from archc.search.supernet import PATH_3D, PATH_4D, PATH_SKIP
from archc.train import TrainConfig
from archc.train.synthetic import SyntheticImages

from conftest import SPECS

SPACE = f"""
name: tiny_ef
base: {SPECS / 'efficientformer_l1.yaml'}
spec: {{input_size: 64, num_classes: 10}}
stage_defaults:
  mixer: meta4d
stages:
  - {{depth: {{low: 1, high: 2}}, width: [16, 24]}}
  - {{depth: {{low: 1, high: 2}}, width: [24, 32]}}
  - {{depth: {{low: 1, high: 3}}, width: [32, 48]}}
  - {{depth: {{low: 1, high: 3}}, width: [48, 64], meta3d: {{low: 0, high: 3}}}}
rules:
  widths_non_decreasing: true
"""


@pytest.fixture
def space(tmp_path):
    p = tmp_path / "tiny_ef.yaml"
    p.write_text(SPACE)
    return load_space(p)


def toy_latency(spec) -> float:
    """A stand-in cost (ms) with the right monotonicity: blocks x width, Meta3D dearer than Meta4D."""
    return sum(s.depth * s.width * 1e-3 + s.mixer.meta3d * s.width * 2e-3 for s in spec.stages)


def uniform_importances(choices, low_block=None):
    imp = {"blocks": [], "widths": []}
    for i, c in enumerate(choices):
        blocks = []
        for j in range(c.depth[1]):
            p = {PATH_4D: 0.5, PATH_SKIP: 0.2}
            if PATH_3D in c.paths:
                p[PATH_3D] = 0.3
            if low_block == (i, j):
                p = {k: (0.01 if k != PATH_SKIP else 0.98) for k in p}
            blocks.append(p)
        imp["blocks"].append(blocks)
        imp["widths"].append({w: 1.0 / len(c.widths) for w in c.widths})
    return imp


def test_slimming_meets_the_budget_with_a_point_of_the_space(space):
    choices = stage_choices(space)
    spec, ms, steps, start_values, start = slim(space, choices, uniform_importances(choices), 0.25, toy_latency)
    assert ms <= 0.25 < start and ms == pytest.approx(toy_latency(spec))
    lat = [start] + [s.latency_after_ms for s in steps]
    assert all(a > b for a, b in zip(lat, lat[1:])) and lat[-2] > 0.25  # stops as soon as the budget holds
    assert point_from_spec(spec, space).values == steps[-1].values
    archc.build(spec)  # buildable


def test_the_least_important_block_goes_first(space):
    choices = stage_choices(space)
    imp = uniform_importances(choices, low_block=(2, 1))
    _, _, steps, _, _ = slim(space, choices, imp, 0.3, toy_latency)
    assert (steps[0].action, steps[0].stage, steps[0].block) == ("drop meta4d block", 2, 1)


def test_unreachable_budget_is_one_clear_error(space):
    choices = stage_choices(space)
    with pytest.raises(SearchError, match="cannot reach 0.001 ms"):
        slim(space, choices, uniform_importances(choices), 0.001, toy_latency)


def test_space_varying_other_keys_is_refused(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(SPACE.replace("  - {depth: {low: 1, high: 2}, width: [16, 24]}",
                               "  - {depth: {low: 1, high: 2}, width: [16, 24], pool_size: [3, 5]}"))
    with pytest.raises(SearchError, match="also varies pool_size"):
        stage_choices(load_space(p))


def test_supernet_trains_weights_and_path_preferences(space):
    choices = stage_choices(space)
    net = build_supernet(space, choices, 10, 32)
    before = {n: p.detach().clone() for n, p in net.named_parameters() if n.endswith("alpha")}
    data = SyntheticImages(64, num_classes=10, resolution=32)
    first, last, steps, _ = train_supernet(net, data, TrainConfig(steps=3, batch=8, resolution=32))
    assert steps == 3 and all(map(lambda v: v == v, (first, last)))
    moved = [n for n, p in net.named_parameters() if n.endswith("alpha") and not torch.equal(p, before[n])]
    assert len(moved) == len(before)  # every path and width weight received a gradient
    imp = net.importances()
    assert set(imp["blocks"][3][0]) == {PATH_4D, PATH_3D, PATH_SKIP} and set(imp["blocks"][0][0]) == {PATH_4D, PATH_SKIP}
    assert abs(sum(imp["widths"][2].values()) - 1) < 1e-6


def test_cli_writes_a_buildable_spec_trace_and_plot(space, tmp_path, monkeypatch):
    import archc.latency as lat
    from archc.cli import main

    class R:
        def __init__(self, ms):
            self.ms = ms
    monkeypatch.setattr(lat, "latency", lambda spec, target, **kw: R(toy_latency(spec)))
    out = tmp_path / "out"
    rc = main(["slim", space.file, "--latency-ms", "0.25", "--train-steps", "2", "--train-batch", "4",
               "--train-resolution", "32", "--train-val-images", "8", "--out", str(out)])
    assert rc == 0
    trace = json.loads((out / "trace.json").read_text())
    assert trace["latency_ms"] <= 0.25 and trace["steps"] and (out / "trace.png").stat().st_size > 0
    spec = archc.load_spec(trace["spec"])
    assert toy_latency(spec) == pytest.approx(trace["latency_ms"])
    assert main(["slim", space.file, "--latency-ms", "-1", "--out", str(out)]) == 2


def test_an_unreachable_budget_is_refused_before_training_and_leaves_no_folder(space, tmp_path, monkeypatch, capsys):
    import archc.latency as lat
    import archc.search.slim as slim_mod
    from archc.cli import main

    class R:
        def __init__(self, ms):
            self.ms = ms
    monkeypatch.setattr(lat, "latency", lambda spec, target, **kw: R(toy_latency(spec)))
    monkeypatch.setattr(slim_mod, "train_supernet", lambda *a, **k: pytest.fail("trained although unreachable"))
    out = tmp_path / "never"
    assert main(["slim", space.file, "--latency-ms", "0.001", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach 0.001 ms: the smallest point of the space takes" in err and not out.exists()
