"""The 3D (token) rules: LayerNorm affine into the next Linear, two heads into one Linear, a numeric scale
into the linear before it, the attention scale into q's rows of qkv; each fires where exact (randomised
affines and scales, numerically equal, the folded op gone) and not where it would not be exact. Also the
pass's debug mode: a broken rule is named at the rewrite that broke the graph."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from archc.errors import LoweringError
from archc.nn.efficientformer import BiasedAttention, ChannelScale
from archc.passes import apply_rules, check_equivalence
from archc.passes.reparam import trace_for_rewrite
from archc.passes.verify import debug_check
from archc.testing import randomize_


def lower(model: nn.Module, x: torch.Tensor, **kw):
    model = randomize_(model.eval(), seed=5)
    with torch.no_grad():
        for m in model.modules():  # randomize_ may leave LayerNorm affines and attention biases alone
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.5)
                m.bias.normal_(0.0, 0.5)
            if isinstance(m, ChannelScale):
                m.gamma.normal_(0.0, 1.0)
    gm = trace_for_rewrite(model, x)
    n = apply_rules(gm, **kw)
    return gm, n, check_equivalence(model, gm, x)


def modules_of(gm, cls):
    return [m for m in gm.modules() if isinstance(m, cls)]


def scalar_ops(gm):
    return [n for n in gm.graph.nodes if n.op in ("call_function", "call_method")
            and getattr(n.target, "__name__", str(n.target)) in ("mul", "truediv")
            and any(isinstance(a, (int, float)) for a in n.args)]


class NormLinear(nn.Module):
    def __init__(self, mean_tokens: bool = False, act: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.act = nn.GELU() if act else nn.Identity()
        self.fc = nn.Linear(8, 5)
        self.mean_tokens = mean_tokens

    def forward(self, x):
        y = self.act(self.norm(x))
        return self.fc(y.mean(dim=1) if self.mean_tokens else y)


@pytest.mark.parametrize("mean_tokens", [False, True])
def test_layernorm_affine_folds_into_next_linear(mean_tokens):
    gm, n, eq = lower(NormLinear(mean_tokens), torch.randn(2, 6, 8))
    assert eq.max_rel_error < 1e-6, eq.describe()
    (ln,) = modules_of(gm, nn.LayerNorm)
    assert not ln.elementwise_affine and n >= 1


def test_layernorm_affine_does_not_fold_through_an_activation_or_into_two_users():
    gm, _, eq = lower(NormLinear(act=True), torch.randn(2, 6, 8))
    assert eq.max_rel_error < 1e-6 and modules_of(gm, nn.LayerNorm)[0].elementwise_affine

    class TwoUsers(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.a, self.b = nn.LayerNorm(8), nn.Linear(8, 4), nn.Linear(8, 3)

        def forward(self, x):
            y = self.norm(x)
            return self.a(y).sum(-1) * self.b(y).sum(-1)
    gm, _, eq = lower(TwoUsers(), torch.randn(2, 6, 8))
    assert eq.max_rel_error < 1e-6 and modules_of(gm, nn.LayerNorm)[0].elementwise_affine


class Heads(nn.Module):
    def __init__(self, same_input: bool = True):
        super().__init__()
        self.head, self.head_dist = nn.Linear(8, 5), nn.Linear(8, 5)
        self.same_input = same_input

    def forward(self, x):
        return (self.head(x) + self.head_dist(x if self.same_input else x * x)) / 2


def test_averaged_heads_become_one_linear():
    gm, _, eq = lower(Heads(), torch.randn(3, 8))
    assert eq.max_rel_error < 1e-6, eq.describe()
    assert len(modules_of(gm, nn.Linear)) == 1 and scalar_ops(gm) == []


def test_heads_on_different_inputs_do_not_merge():
    gm, _, eq = lower(Heads(same_input=False), torch.randn(3, 8))
    assert eq.max_rel_error < 1e-6 and len(modules_of(gm, nn.Linear)) == 2


def test_attention_scale_and_layer_scale_fold_into_qkv_and_proj():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = BiasedAttention(16, (3, 3), key_dim=4, num_heads=2)
            self.ls = ChannelScale(16, 0.5, nchw=False)

        def forward(self, x):
            return x + self.ls(self.attn(x))
    gm, _, eq = lower(Block(), torch.randn(2, 9, 16))
    assert eq.max_rel_error < 1e-6, eq.describe()
    assert scalar_ops(gm) == [] and not any(n.endswith("gamma") for n, _ in gm.named_parameters())


def test_attention_scale_does_not_fold_when_q_rows_are_read_elsewhere():
    class Leaky(nn.Module):
        """q and k are also added to the output: scaling either's rows would change that use too (with only
        q leaking the scale goes into k's rows, which is exact)."""

        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)

        def forward(self, x):
            q, k, v = self.qkv(x).split([8, 8, 8], dim=-1)
            return ((q @ k.transpose(-2, -1)) * 0.3).softmax(-1) @ v + q + k
    gm, _, eq = lower(Leaky(), torch.randn(2, 5, 8))
    assert eq.max_rel_error < 1e-6 and len(scalar_ops(gm)) == 1


def test_scale_after_a_nonlinearity_does_not_fold():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return torch.relu(self.fc(x)) / 3
    gm, _, eq = lower(M(), torch.randn(2, 8))
    assert eq.max_rel_error < 1e-6 and len(scalar_ops(gm)) == 1


def test_debug_mode_names_the_rule_that_broke_the_graph(monkeypatch):
    from archc.passes import rules as R

    real = R.apply_layernorm_affine

    def broken(ctx, c):  # fold the affine but forget the bias
        c["norm"].graph.owning_module.get_submodule(str(c["norm"].target)).bias.data.zero_()
        real(ctx, c)
    rules = tuple(r if r.name != "fold_layernorm_affine" else R._rule(r.name, r.roots, r.match, broken)
                  for r in R.RULES)
    model = randomize_(NormLinear().eval(), seed=1)
    with torch.no_grad():
        model.norm.bias.normal_(0, 1)
    x = torch.randn(2, 6, 8)
    gm = trace_for_rewrite(model, x)
    with pytest.raises(LoweringError, match="rule fold_layernorm_affine .* node norm"):
        apply_rules(gm, rules=rules, check=debug_check(model, x))
    gm = trace_for_rewrite(model, x)  # the real rules pass the same check
    apply_rules(gm, check=debug_check(model, x))
