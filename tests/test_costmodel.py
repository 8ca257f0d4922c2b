"""The latency cost model and its held-out selection, on hand-made op tables with a known answer
(no graphs built: these run in well under a second)."""
from __future__ import annotations

import numpy as np
import pytest

from archc.latency.costmodel import CostModel, Stack, aggregate, predict
from archc.latency.features import GROUPS, NodeTable
from archc.latency.fit import Point, fit, fit_prices, group_folds, weights_of

ADD = GROUPS.index("elementwise")
CONV = GROUPS.index("conv")
POOL = GROUPS.index("pool")


def table(rows):
    """rows: (dense GMAC, dw GMAC, MB, group)."""
    return NodeTable(macs=np.array([[r[0], r[1], 0.0] for r in rows]), mbytes=np.array([r[2] for r in rows]),
                     group=np.array([r[3] for r in rows]))


def test_roofline_prices_a_memory_bound_op_by_its_bytes_and_sum_adds_both():
    t = table([(1.0, 0.0, 2.0, CONV),      # compute-bound: 1 GMAC x 1.0 > 2 MB x 0.1
               (0.0, 0.0, 30.0, ADD)])     # a skip add: no MACs, 30 MB
    coef = [1.0, 0.1]
    terms = ("macs_dense", "mbytes")
    st = Stack.of([t], [0.0])
    assert predict(CostModel("max", terms), coef, st)[0] == pytest.approx(1.0 + 3.0)
    assert predict(CostModel("sum", terms), coef, st)[0] == pytest.approx(1.0 + 0.2 + 3.0)
    # op overhead by kind is added per op of that kind
    m = CostModel("max", terms + ("ops_elementwise",))
    assert predict(m, coef + [0.5], st)[0] == pytest.approx(4.5)


def random_tables(n, rng, pool_share=0.0):
    out = []
    for _ in range(n):
        k = rng.integers(8, 30)
        rows = []
        for _ in range(k):
            kind = rng.choice([CONV, ADD, POOL], p=[0.6, 0.4 - pool_share, pool_share])
            if kind == CONV:
                rows.append((rng.uniform(0.005, 0.2), rng.uniform(0, 0.01), rng.uniform(0.2, 6), CONV))
            else:
                rows.append((0.0, 0.0, rng.uniform(0.5, 12), kind))
        out.append(table(rows))
    return out


TRUTH_TERMS = ("const", "macs_dense", "macs_dw", "attn_elems", "mbytes")
TRUTH = np.array([0.3, 20.0, 60.0, 0.0, 0.4])


def synthetic_points(truth_model, rng, n=24, families=("a", "b")):
    tables = random_tables(n, rng)
    y = predict(truth_model, TRUTH, Stack.of(tables, [0.0] * n))
    return [Point(label=f"p{i}", spec_path="", latency_ms=float(v), resolution=None, arch_key=f"k{i}",
                  arch_id=f"arch{i // 2}", family=families[i % len(families)], table=t,
                  features={"attn_elems": 0.0}) for i, (t, v) in enumerate(zip(tables, y))]


def test_least_squares_recovers_roofline_prices_and_pins_unseen_terms_to_zero():
    rng = np.random.default_rng(1)
    m = CostModel("max", TRUTH_TERMS + ("ops_pool",))
    pts = synthetic_points(CostModel("max", TRUTH_TERMS), rng)
    st = Stack.of([p.table for p in pts], [0.0] * len(pts))
    y = np.array([p.latency_ms for p in pts])
    coef = fit_prices(m, st, y, weights_of(pts))
    assert np.all(coef >= 0)
    assert coef[-1] == 0.0  # no pooling op in the data: its price is not free to wander
    assert np.max(np.abs(predict(m, coef, st) / y - 1)) < 0.01


def test_selection_by_held_out_error_picks_the_roofline_on_a_roofline_device():
    rng = np.random.default_rng(0)
    pts = synthetic_points(CostModel("max", TRUTH_TERMS), rng)
    cands = [CostModel("sum", TRUTH_TERMS), CostModel("max", TRUTH_TERMS)]
    r = fit(pts, candidates=cands, folds=4)
    assert r["combine"] == "max"
    assert r["heldout"]["kfold"]["mape_pct"] < 1.0 and r["heldout"]["lofo"]["mape_pct"] < 1.0
    by = {c["model"]: c for c in r["candidates"]}
    assert by[cands[0].name]["kfold_mape_pct"] > 3 * by[cands[1].name]["kfold_mape_pct"]
    # and a linear device gets the linear model
    pts = synthetic_points(CostModel("sum", TRUTH_TERMS), np.random.default_rng(3))
    assert fit(pts, candidates=cands, folds=4)["combine"] == "sum"


def test_k_fold_never_splits_an_architecture():
    groups = ["a", "a", "b", "b", "c", "d", "d", "e"]
    folds = group_folds(groups, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(groups)))
    for f in folds:
        members = {groups[i] for i in f}
        assert all(groups.count(g) == sum(1 for i in f if groups[i] == g) for g in members)
    assert len(group_folds(groups, 0)) == 5  # one fold per architecture


def test_held_out_points_are_never_fitted_on_themselves():
    """An outlier predicted in-sample pulls the fit towards itself; held out, it cannot."""
    rng = np.random.default_rng(2)
    pts = synthetic_points(CostModel("sum", TRUTH_TERMS), rng, n=12, families=("a",))
    pts[0].latency_ms *= 3.0
    r = fit(pts, model=CostModel("sum", TRUTH_TERMS), folds=0)
    p0 = next(p for p in r["points"] if p["label"] == "p0")
    assert abs(p0["heldout_error_pct"]) > abs((p0["fitted_ms"] - p0["latency_ms"]) / p0["latency_ms"] * 100)
    assert "lofo" not in r["heldout"]  # one family: nothing to leave out


def test_uncertain_points_weigh_less():
    rng = np.random.default_rng(4)
    pts = synthetic_points(CostModel("sum", TRUTH_TERMS), rng, n=12, families=("a",))
    pts[0].latency_ms *= 1.5
    m = CostModel("sum", TRUTH_TERMS)
    sure = fit(pts, model=m, folds=0)["points"][0]["fitted_ms"]
    pts[0].uncertainty_ms = pts[0].latency_ms * 0.5
    vague = fit(pts, model=m, folds=0)["points"][0]["fitted_ms"]
    assert abs(vague - pts[0].latency_ms) > abs(sure - pts[0].latency_ms)


def test_aggregate_counts_ops_by_kind():
    st = Stack.of([table([(0.1, 0, 1, CONV), (0, 0, 2, ADD), (0, 0, 3, ADD)])], [0.0])
    agg = aggregate(st, ("const", "macs_dense", "mbytes", "ops_elementwise", "ops_conv"))
    assert agg[0].tolist() == pytest.approx([1.0, 0.1, 6.0, 2.0, 1.0])


@pytest.mark.parametrize("name, resolution", [("specs/sa12.yaml", 160), ("specs/poolformer_s12.yaml", 288)])
def test_features_from_the_meta_device_equal_a_real_forward(name, resolution):
    """Latency features count work on one meta-device deploy graph per architecture; they must equal what a
    real forward of the graph built at that resolution reports (attention and pooling depend on the size)."""
    import dataclasses

    from archc.analysis.profile import example_input, profile_graph
    from archc.latency.features import deploy_graph, profile_features, spec_features
    from archc.spec import load_spec

    spec = load_spec(name)
    got, _ = spec_features(spec, resolution)
    sized = dataclasses.replace(spec, input_size=(resolution, resolution))
    model, _ = deploy_graph(sized)
    want = profile_features(profile_graph(model, example_input(sized.input_size, sized.in_chans)))
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


DW = GROUPS.index("depthwise")
GELU = GROUPS.index("transcendental")


def test_traffic_priced_per_op_group_and_misaligned_channel_wise_ops_surcharged():
    """A GELU streams bytes at its own price, apart from an add; a depthwise conv whose channel count misses
    the vector block pays a surcharge on its bytes, one on an aligned count does not; block 4 aligns 76."""
    t = NodeTable(macs=np.array([[0.0, 0.01, 0.0], [0.0, 0.01, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
                  mbytes=np.array([2.0, 2.0, 3.0, 5.0]), group=np.array([DW, DW, ADD, GELU]),
                  channels=np.array([64, 76, 0, 0]))
    st = Stack.of([t], [0.0])
    terms = ("macs_dw", "mbytes_depthwise", "mbytes_elementwise", "mbytes_transcendental", "mbytes_misaligned_dw")
    agg = aggregate(st, terms, channel_block=16)
    assert agg[0].tolist() == pytest.approx([0.02, 4.0, 3.0, 5.0, 2.0])
    assert aggregate(st, terms, channel_block=4)[0, -1] == 0.0
    coef = [100.0, 0.1, 0.01, 0.05, 1.0]
    want = 2.0 + 0.4 + 0.03 + 0.25 + 2.0
    for combine in ("sum", "max"):  # group prices add in either combination
        assert predict(CostModel(combine, terms), coef, st)[0] == pytest.approx(want)
    assert predict(CostModel("sum", terms, channel_block=4), coef, st)[0] == pytest.approx(want - 2.0)
    # the breakdown accounts for every millisecond
    from archc.latency.costmodel import breakdown
    parts = breakdown(CostModel("sum", terms), dict(zip(terms, coef)), t, 0.0)
    assert sum(parts.values()) == pytest.approx(want, abs=1e-3)
    assert parts["misaligned"] == pytest.approx(2.0)


def test_misaligned_dense_conv_surcharge_is_on_its_macs():
    t = NodeTable(macs=np.array([[0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]), mbytes=np.array([1.0, 1.0]),
                  group=np.array([CONV, CONV]), channels=np.array([3, 48]))  # an RGB stem and an aligned conv
    st = Stack.of([t], [0.0])
    assert aggregate(st, ("macs_dense", "macs_misaligned"))[0].tolist() == pytest.approx([1.0, 0.5])


def test_least_squares_recovers_group_traffic_prices():
    """Synthetic graphs priced by a known per-group model: the fit finds the prices and predicts held-out graphs."""
    rng = np.random.default_rng(7)
    terms = ("const", "macs_dense", "macs_dw", "mbytes_depthwise", "mbytes_elementwise", "mbytes_transcendental",
             "mbytes_misaligned_dw")
    truth = np.array([0.2, 20.0, 30.0, 0.08, 0.03, 0.09, 0.5])
    tables = []
    for _ in range(30):
        k = int(rng.integers(6, 20))
        g = rng.choice([CONV, DW, ADD, GELU], size=k)
        macs = np.zeros((k, 3))
        macs[g == CONV, 0] = rng.uniform(0.005, 0.2, (g == CONV).sum())
        macs[g == DW, 1] = rng.uniform(0.001, 0.01, (g == DW).sum())
        ch = np.where(g == DW, rng.choice([64, 76, 96], size=k), 0)
        tables.append(NodeTable(macs=macs, mbytes=rng.uniform(0.2, 8.0, k), group=g, channels=ch))
    m = CostModel("sum", terms)
    y = predict(m, truth, Stack.of(tables, [0.0] * len(tables)))
    pts = [Point(label=f"p{i}", spec_path="", latency_ms=float(v), arch_key=f"k{i}", arch_id=f"a{i}",
                 family="ab"[i % 2], table=t, features={"attn_elems": 0.0}) for i, (t, v) in enumerate(zip(tables, y))]
    r = fit(pts, model=m, folds=5)
    assert [r["coefficients"][t] for t in terms] == pytest.approx(truth.tolist(), rel=1e-4)
    assert r["heldout"]["kfold"]["mape_pct"] < 0.01


def test_gelu_is_transcendental_relu_is_elementwise_and_channel_counts_are_recorded():
    """The deploy graph's op groups: FastViT's GELU apart from MobileOne's ReLU (which runtimes fuse), and the
    channel count of each depthwise conv (so a 76-wide stage is seen as off the 16-lane block)."""
    from archc.latency.features import GROUPS as G, spec_features, spec_node_table
    from archc.spec import load_spec

    sa12 = spec_node_table(load_spec("specs/sa12.yaml"), 160)
    assert (sa12.group == G.index("transcendental")).sum() > 0
    assert set(sa12.channels[sa12.group == G.index("depthwise")]) == {64, 128, 256, 512, 1024}  # 1024: the head
    s0 = load_spec("specs/mobileone_s0.yaml")
    feats, _ = spec_features(s0, 160)
    assert feats["ops_transcendental"] == 0 and feats["mbytes_transcendental"] == 0
    ma36 = spec_features(load_spec("specs/ma36.yaml"), 160)[0]  # widths 76, 152, 304, 608
    assert ma36["mbytes_misaligned_dw"] > 0 and spec_features(load_spec("specs/sa12.yaml"), 160)[0][
        "mbytes_misaligned_dw"] == 0


def test_spill_prices_the_bytes_of_ops_that_outgrow_the_cache():
    t = NodeTable(macs=np.zeros((3, 3)), mbytes=np.array([1.0, 5.0, 3.0]), group=np.array([ADD, ADD, POOL]))
    st = Stack.of([t], [0.0])
    assert aggregate(st, ("mbytes_spill",), cache_mb=2.0)[0, 0] == pytest.approx(8.0)
    assert aggregate(st, ("mbytes_spill",), cache_mb=4.0)[0, 0] == pytest.approx(5.0)
    for combine in ("sum", "max"):
        m = CostModel(combine, ("mbytes", "mbytes_spill"), cache_mb=4.0)
        assert predict(m, [0.1, 1.0], st)[0] == pytest.approx(0.9 + 5.0)
    assert "cache 4 MB" in CostModel("sum", ("mbytes_spill",), cache_mb=4.0).name
