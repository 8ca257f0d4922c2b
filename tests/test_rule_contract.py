"""The rewrite-rule contract, one parametrized set over every rule of the pass (``archc.passes.rules.RULES``):
each rule matches its minimal instance, rewrites it exactly (randomised BatchNorm statistics, affines and scales),
does not match its counterexample, and its ``match`` has no side effects (the graph and the weights are unchanged
after matching, whether it matched or not). A rule added to RULES without an entry here fails the suite."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from archc.nn import LayerScale2d
from archc.nn.efficientformer import BiasedAttention, ChannelScale
from archc.passes import apply_rules, check_equivalence
from archc.passes.engine import _candidates
from archc.passes.reparam import trace_for_rewrite
from archc.passes.rules import RULES, Context
from archc.testing import randomize_


class Fn(nn.Module):
    """A module from a forward function and named submodules (minimal instances stay one line each)."""

    def __init__(self, forward, **mods):
        super().__init__()
        self._fn = forward
        for k, v in mods.items():
            setattr(self, k, v)

    def forward(self, x):
        return self._fn(self, x)


def conv(cin=4, cout=4, k=3, s=1, pad=None, bias=False):
    return nn.Conv2d(cin, cout, k, s, k // 2 if pad is None else pad, bias=bias)


X4 = (2, 4, 7, 6)  # NCHW
X3 = (2, 9, 16)    # tokens

#: rule name -> (minimal instance, counterexample, input shape); each builds a fresh module
CASES = {
    "drop_identity": (lambda: Fn(lambda m, x: m.drop(m.c(x)), c=conv(), drop=nn.Dropout(0.1)),
                      lambda: Fn(lambda m, x: m.flat(m.c(x)), c=conv(), flat=nn.Flatten()), X4),
    "fold_bn_into_conv": (lambda: Fn(lambda m, x: m.bn(m.c(x)), c=conv(), bn=nn.BatchNorm2d(4)),
                          lambda: Fn(lambda m, x: m.bn(m.c(x)) + m.c(x), c=conv(), bn=nn.BatchNorm2d(4)), X4),
    "merge_parallel_convs": (lambda: Fn(lambda m, x: m.a(x) + m.b(x), a=conv(), b=conv(k=1)),
                             lambda: Fn(lambda m, x: m.a(x)[..., 1:-1, 1:-1] + m.b(x)[..., 2:-2, 2:-2], a=conv(),
                                        b=conv(k=1, pad=1)), X4),  # shifted outputs: not summable as one conv
    "fold_bn_through_pool_mixer": (
        lambda: Fn(lambda m, x: (lambda y: x + m.ls(m.pool(y) - y))(m.bn(x)), bn=nn.BatchNorm2d(4),
                   pool=nn.AvgPool2d(3, 1, 1, count_include_pad=False), ls=LayerScale2d(4, 0.4)),
        lambda: Fn(lambda m, x: (lambda y: m.pool(y) - y)(m.bn(x)), bn=nn.BatchNorm2d(4),
                   pool=nn.AvgPool2d(3, 1, 1, count_include_pad=True)), X4),  # border weights sum to < 1
    "fold_scale": (lambda: Fn(lambda m, x: m.ls(m.c(x)), c=conv(), ls=LayerScale2d(4, 0.3)),
                   lambda: Fn(lambda m, x: m.ls(torch.nn.functional.gelu(m.c(x))), c=conv(), ls=LayerScale2d(4, 0.3)),
                   X4),
    "fold_bn_into_next_linear": (lambda: Fn(lambda m, x: m.c(m.bn(x)), bn=nn.BatchNorm2d(4), c=conv(k=1)),
                                 lambda: Fn(lambda m, x: m.c(m.bn(x)), bn=nn.BatchNorm2d(4), c=conv(k=3)), X4),
    "fold_layernorm_affine": (lambda: Fn(lambda m, x: m.fc(m.ln(x)), ln=nn.LayerNorm(16), fc=nn.Linear(16, 5)),
                              lambda: Fn(lambda m, x: m.fc(torch.nn.functional.gelu(m.ln(x))), ln=nn.LayerNorm(16),
                                         fc=nn.Linear(16, 5)), X3),
    "merge_parallel_linears": (lambda: Fn(lambda m, x: m.a(x) + m.b(x), a=nn.Linear(16, 5), b=nn.Linear(16, 5)),
                               lambda: Fn(lambda m, x: m.a(x) + m.b(x * x), a=nn.Linear(16, 5), b=nn.Linear(16, 5)),
                               X3),
    "fold_scale_into_query": (lambda: Fn(lambda m, x: x + m.ls(m.attn(x)), attn=BiasedAttention(16, (3, 3), 4, 2),
                                         ls=ChannelScale(16, 0.5, nchw=False)),
                              lambda: Fn(lambda m, x: m.fc(x) * 0.5, fc=nn.Linear(16, 16)), X3),
}


def randomized(model: nn.Module) -> nn.Module:
    model = randomize_(model.eval(), seed=11)
    with torch.no_grad():
        for m in model.modules():  # randomize_ may leave LayerNorm affines and channel scales alone
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.5)
                m.bias.normal_(0.0, 0.5)
            if isinstance(m, ChannelScale):
                m.gamma.normal_(0.0, 1.0)
    return model


def matches(rule, gm):
    """Every capture of ``rule`` in ``gm``, checking that matching changes neither the graph nor the weights."""
    code, state = gm.code, copy.deepcopy(gm.state_dict())
    ctx = Context(gm, lambda n: True)
    found = [c for root in rule.roots for n in list(_candidates(gm, rule, root)) if (c := rule.match(ctx, n))]
    assert gm.code == code, f"{rule.name}: match changed the graph"
    after = gm.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state), \
        f"{rule.name}: match changed the weights"
    return found


def test_every_rule_has_a_case():
    assert {r.name for r in RULES} == set(CASES)


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_a_rule_matches_its_instance_exactly_and_not_its_counterexample_without_side_effects(rule):
    make, counter, shape = CASES[rule.name]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    model = randomized(make())
    gm = trace_for_rewrite(model, x)
    assert matches(rule, gm), f"{rule.name} does not match its minimal instance"
    assert apply_rules(gm, rules=[rule]) >= 1
    eq = check_equivalence(model, gm, x)
    assert eq.ok, f"{rule.name}: {eq.describe()}"
    other = randomized(counter())
    assert matches(rule, trace_for_rewrite(other, x)) == [], f"{rule.name} matches its counterexample"
