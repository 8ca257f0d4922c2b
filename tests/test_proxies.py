"""Zero-cost proxies: exact values on hand-checkable nets, determinism and finiteness on a tiny
FastViT spec, sensitivity to the architecture, the rank statistics, the evaluation and errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from archc.builder import build
from archc.cli import main
from archc.errors import ArchcError
from archc.proxies import PROXIES, PROXY_SETTINGS, DEFAULT, score
from archc.proxies.evaluate import evaluate, read_published
from archc.proxies.gradnorm import grad_norm
from archc.proxies.jacobcov import K_EPS, jacob_cov
from archc.proxies.naswot import naswot
from archc.proxies.rank import inversions, kendall_tau_b, rankdata, spearman_rho
from archc.proxies.synflow import synflow
from archc.proxies.zico import zico
from archc.spec import load_spec

TINY = {"name": "tiny", "num_classes": 10, "input_size": 32, "stem": {"type": "mobileone", "kernel": 3},
        "stage_defaults": {"mlp_ratio": 2, "ffn": "convffn", "ffn_kernel": 3,
                           "downsample": {"type": "replk", "kernel": 5, "small_kernel": 3, "stride": 2}},
        "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
                   {"depth": 1, "width": 32, "mixer": "attention", "head_dim": 16}],
        "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.0625}}
BIGGER = {**TINY, "name": "bigger", "stages": [{"depth": 3, "width": 32, "mixer": "repmixer"},
                                               {"depth": 2, "width": 64, "mixer": "attention", "head_dim": 16}]}
SMALL = dict(batch=8, resolution=32)  # keep the tests fast: every proxy on 32x32 inputs


def small(name):
    return dict(batch=max(2, min(8, PROXY_SETTINGS[name].batch)), resolution=32)


@pytest.mark.parametrize("name", list(PROXIES))
def test_proxy_on_tiny_spec_is_finite_deterministic_and_leaves_model_alone(name):
    spec = load_spec(TINY)
    a = score(spec, name, **small(name))
    assert math.isfinite(a)
    assert score(spec, name, **small(name)) == a
    torch.manual_seed(123)
    model = build(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    score(model, name, **small(name))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and BN stats


@pytest.mark.parametrize("name", list(PROXIES))
def test_proxy_tells_clearly_different_nets_apart(name):
    a, b = score(load_spec(TINY), name, **small(name)), score(load_spec(BIGGER), name, **small(name))
    assert a != b
    if name in ("params", "synflow", "zico"):  # these grow with depth and width by construction
        assert b > a


def test_seed_changes_weights_and_inputs():
    spec = load_spec(TINY)
    assert score(spec, "grad_norm", seed=0, **SMALL) != score(spec, "grad_norm", seed=1, **SMALL)


def test_synflow_exact_on_a_linear_chain():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    w1, w2 = net[0].weight.detach().abs().double(), net[1].weight.detach().abs().double()
    r = float(torch.ones(2, dtype=torch.float64) @ w2 @ w1 @ torch.ones(3, dtype=torch.float64))
    # for a chain of linear maps each layer's sum |theta * dR/dtheta| equals R: two layers give 2R
    assert synflow(net, torch.randn(5, 3), torch.zeros(5, dtype=torch.long)) == pytest.approx(math.log(2 * r), rel=1e-12)


def test_synflow_removes_batchnorm():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    with_bn = nn.Sequential(plain[0], nn.BatchNorm1d(4), plain[1])
    with torch.no_grad():
        with_bn[1].running_mean.fill_(3.0)
        with_bn[1].weight.fill_(5.0)
    x, t = torch.randn(5, 3), torch.zeros(5, dtype=torch.long)
    assert synflow(with_bn, x, t) == pytest.approx(synflow(plain, x, t), rel=1e-12)


def test_naswot_matches_hand_computed_kernel():
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 1.0], [1.0, -2.0], [-1.0, -1.0], [-1.0, 3.0]])
    codes = (x @ net[0].weight.detach().t() > 0).double().numpy()
    K = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert naswot(net, x, torch.zeros(4, dtype=torch.long)) == pytest.approx(np.linalg.slogdet(K)[1], rel=1e-12)


def test_naswot_counts_gelu_units_active_above_zero():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.GELU())
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
    x = torch.tensor([[0.5, -0.5], [-0.5, 0.5]])  # codes [1,0] and [0,1]: K = [[2,0],[0,2]]
    assert naswot(net, x, torch.zeros(2, dtype=torch.long)) == pytest.approx(math.log(4.0))


def test_grad_norm_matches_manual_gradients():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    x, t = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    ref = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    ref.load_state_dict(net.state_dict())
    nn.functional.cross_entropy(ref(x), t).backward()
    expected = float(ref[0].weight.grad.norm() + ref[2].weight.grad.norm())
    assert grad_norm(net, x, t) == pytest.approx(expected, rel=1e-6)
    assert net[0].weight.grad is None  # computed on a private copy


def test_zico_matches_the_formula_on_two_minibatches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3))
    x, t = torch.randn(4, 4), torch.tensor([0, 1, 2, 0])
    grads = []
    for xs, ts in ((x[:2], t[:2]), (x[2:], t[2:])):
        ref = nn.Sequential(nn.Linear(4, 3))
        ref.load_state_dict(net.state_dict())
        nn.functional.cross_entropy(ref(xs), ts).backward()
        grads.append(ref[0].weight.grad.reshape(-1).double())
    g = torch.stack(grads)
    std, mean_abs = g.std(0, unbiased=False), g.abs().mean(0)
    assert zico(net, x, t) == pytest.approx(math.log(float((mean_abs[std > 0] / std[std > 0]).sum())), rel=1e-9)


def test_jacob_cov_of_a_linear_net_is_its_worst_case():
    net = nn.Sequential(nn.Linear(6, 3))
    x = torch.randn(4, 6)
    # a linear map has the same input-gradient for every input: correlation all ones, eigenvalues (4, 0, 0, 0)
    v = np.array([4.0, 0.0, 0.0, 0.0])
    expected = -np.sum(np.log(v + K_EPS) + 1.0 / (v + K_EPS))
    assert jacob_cov(net, x, torch.zeros(4, dtype=torch.long)) == pytest.approx(expected, rel=1e-6)
    relu = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    assert jacob_cov(relu, x, torch.zeros(4, dtype=torch.long)) > expected


def test_rank_statistics_on_known_rankings():
    # published values of these examples (scipy's documentation): tau-b with ties, Spearman rho with a tie
    assert kendall_tau_b([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) == pytest.approx(-0.47140452079103173, rel=1e-12)
    assert spearman_rho([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233, rel=1e-12)
    assert kendall_tau_b([1, 2, 3], [1, 2, 3]) == 1.0 and kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    assert list(rankdata([10, 20, 10, 30])) == [1.5, 3.0, 1.5, 4.0]
    assert math.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))
    assert inversions([1, 3, 2], [1, 2, 3]) == 1 and inversions([1, 1, 2], [1, 2, 3]) == 1


def test_evaluate_reproduces_tau_and_rho(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    for name, depth in (("a", 1), ("b", 2), ("c", 3)):  # params grow with depth: a < b < c
        (specs / f"{name}.yaml").write_text(json.dumps({**TINY, "name": name, "stages": [
            {"depth": depth, "width": 16, "mixer": "repmixer"}, {"depth": 1, "width": 32, "mixer": "repmixer"}]}))
    (specs / "dup.yaml").write_text((specs / "b.yaml").read_text().replace("\"b\"", "\"dup\""))
    csv = tmp_path / "pub.csv"
    csv.write_text("# toy\nname,top1,iphone12pro_ms\nfastvit_a,70.0,1\nb,75.0,2\nfastvit_c,72.0,3\ndup,74.0,2\n")
    points = read_published(csv, specs)
    assert [p.name for p in points] == ["fastvit_a", "b", "fastvit_c", "dup"]
    [res] = evaluate(points, ["params"])
    # params: a < b = dup < c; top-1: a 70 < c 72 < dup 74 < b 75. Pairs: (a,b) (a,c) (a,dup) concordant,
    # (b,c) (c,dup) discordant, (b,dup) tied in params: tau-b = (3 - 2) / sqrt(5 * 6)
    assert res.scores["b"] == res.scores["dup"]
    assert res.kendall_tau == pytest.approx(1 / math.sqrt(30))
    # ranks (1, 2.5, 4, 2.5) vs (1, 4, 2, 3): covariance 1.5, variances 4.5 and 5
    assert res.spearman_rho == pytest.approx(1.5 / math.sqrt(4.5 * 5))


def test_unknown_proxy_suggests_a_name(tmp_path, capsys):
    with pytest.raises(ArchcError, match=r"unknown proxy 'synflw' \(did you mean 'synflow'\?\); valid: params"):
        score(load_spec(TINY), "synflw")
    (tmp_path / "t.yaml").write_text(json.dumps(TINY))
    assert main(["proxies", str(tmp_path / "t.yaml"), "--proxy", "zicoo"]) == 2
    assert "did you mean 'zico'" in capsys.readouterr().err


def test_cli_scores_specs(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text(json.dumps(TINY))
    assert main(["proxies", str(tmp_path / "t.yaml"), "--proxy", "params", "--proxy", "synflow", "--json",
                 "--input-size", "32"]) == 0
    out = json.loads(capsys.readouterr().out)
    scores = out["results"][0]["scores"]
    assert scores["params"] == pytest.approx(sum(p.numel() for p in build(load_spec(TINY)).parameters()) / 1e6)
    assert set(scores) == {"params", "synflow"}
    assert DEFAULT in PROXIES


def test_synflow_attention_has_constant_probabilities():
    from archc.proxies.synflow import _ConstantAttentionProbs
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ref = nn.functional.scaled_dot_product_attention(q, k, v)
    with _ConstantAttentionProbs():
        out = nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(out, ref, atol=1e-12)  # same forward at moderate logits
    g = torch.randn_like(out)
    (out * g).sum().backward()
    probs = torch.softmax(q.detach() @ k.detach().transpose(-2, -1) / 2.0, dim=-1)
    assert torch.allclose(v.grad, probs.transpose(-2, -1) @ g, atol=1e-12)
    assert q.grad is None and k.grad is None
    # all-positive logits of ~1e17 (synflow's regime): the value gradient stays bounded by the token count
    big = torch.full((1, 1, 5, 4), 3e8, dtype=torch.float64) + torch.arange(20, dtype=torch.float64).reshape(1, 1, 5, 4)
    v2 = torch.rand(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    with _ConstantAttentionProbs():
        nn.functional.scaled_dot_product_attention(big, big, v2).sum().backward()
    assert float(v2.grad.abs().max()) <= 5.0 + 1e-9


def test_eval_keeps_finished_proxies_when_interrupted(tmp_path, monkeypatch, capsys):
    """Ctrl-C during the second proxy: the first one's result is printed, saved with --save, and exit is 130."""
    import json

    import archc.proxies.evaluate as ev
    from archc.cli import main

    def fake(points, proxies, **kw):
        if proxies == ["synflow"]:
            raise KeyboardInterrupt
        return [ev.ProxyEval(proxies[0], 0.5, 0.6, 0.1, {p.name: 1.0 for p in points})]

    monkeypatch.setattr(ev, "evaluate", fake)
    save = tmp_path / "eval.json"
    code = main(["proxies", "--eval", "--proxy", "params", "--proxy", "synflow", "--save", str(save)])
    captured = capsys.readouterr()
    assert code == 130
    assert "interrupted: 1 of 2 proxies finished" in captured.err and "params" in captured.out
    doc = json.loads(save.read_text())
    assert doc["finished"] == ["params"] and doc["complete"] is False and doc["results"][0]["kendall_tau"] == 0.5
    assert main(["proxies", "--proxy", "params", "--save", str(save), "fastvit_t8"]) == 2
    assert "--save goes with --eval" in capsys.readouterr().err
