"""Each rewrite rule on small graphs: it fires where folding is exact (numerically equal, folded ops gone)
and does not fire where it would not be exact. BN statistics and layer scales are randomised."""
from __future__ import annotations

import torch
import torch.nn as nn
import pytest

from archc.passes import apply_rules, check_equivalence
from archc.passes import algebra as alg
from archc.passes.reparam import trace_for_rewrite
from archc.testing import randomize_
from archc.nn import LayerScale2d


def lower(model: nn.Module, x: torch.Tensor):
    model = randomize_(model.eval(), seed=3)
    gm = trace_for_rewrite(model, x)
    rewrites = apply_rules(gm)
    eq = check_equivalence(model, gm, x)
    return gm, rewrites, eq


def kinds(gm):
    mods = dict(gm.named_modules())
    out = []
    for n in gm.graph.nodes:
        if n.op == "call_module":
            out.append(type(mods[n.target]).__name__)
        elif n.op in ("call_function", "call_method"):
            out.append(getattr(n.target, "__name__", str(n.target)))
    return out


class ConvBN(nn.Module):
    def __init__(self, cin=4, cout=6, k=3, s=1, groups=1, pad=None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2 if pad is None else pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


def test_bn_after_conv_folds():
    gm, n, eq = lower(ConvBN(), torch.randn(2, 4, 9, 9))
    assert eq.max_rel_error < 1e-6, eq.describe()
    assert "BatchNorm2d" not in kinds(gm) and kinds(gm).count("Conv2d") == 1 and n == 1


def test_bn_after_conv_used_twice_does_not_fold():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) * y  # the conv output is needed unnormalised too

    gm, n, eq = lower(M(), torch.randn(1, 4, 8, 8))
    assert "BatchNorm2d" in kinds(gm) and eq.ok


@pytest.mark.parametrize("k_small,groups,stride", [(1, 1, 1), (3, 4, 2), (1, 4, 2), (5, 2, 1)])
def test_parallel_branches_merge_into_one_conv(k_small, groups, stride):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = ConvBN(4, 8, 7, stride, groups, pad=(stride - 1 + 6) // 2)
            self.b = ConvBN(4, 8, k_small, stride, groups, pad=(stride - 1 + k_small - 1) // 2)

        def forward(self, x):
            return self.a(x) + self.b(x)

    gm, _, eq = lower(M(), torch.randn(2, 4, 13, 11))
    assert eq.max_rel_error < 1e-6, eq.describe()
    assert kinds(gm) == ["Conv2d"]


def test_misaligned_branches_do_not_merge():
    class M(nn.Module):  # same kernel, different padding: the outputs are shifted, not summable
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, padding=1)
            self.c = nn.Conv2d(4, 4, 1, padding=1)

        def forward(self, x):
            return self.a(x)[..., 1:-1, 1:-1] + self.c(x)[..., 2:-2, 2:-2]

    gm, _, eq = lower(M(), torch.randn(1, 4, 8, 8))
    assert kinds(gm).count("Conv2d") == 2 and eq.ok


def test_identity_bn_branch_and_residual_fold_into_depthwise_conv():
    """RepMixer: x + ls * (mixer(x) - norm(x)) -> one depthwise conv."""
    class RepMixerLike(nn.Module):
        def __init__(self, c=6):
            super().__init__()
            self.mixer = ConvBN(c, c, 3, groups=c)
            self.scale = ConvBN(c, c, 1, groups=c)
            self.skip = nn.BatchNorm2d(c)
            self.norm = nn.BatchNorm2d(c)
            self.ls = LayerScale2d(c, 0.5)

        def forward(self, x):
            return x + self.ls(self.mixer(x) + self.scale(x) + self.skip(x) - self.norm(x))

    gm, _, eq = lower(RepMixerLike(), torch.randn(2, 6, 10, 7))
    assert eq.max_rel_error < 1e-6, eq.describe()
    assert kinds(gm) == ["Conv2d"] and next(m for m in gm.modules() if isinstance(m, nn.Conv2d)).groups == 6


def test_residual_does_not_fold_into_strided_conv():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return y + y.mean()  # no skip to fold; nothing may change

    gm, n, eq = lower(M(), torch.randn(1, 4, 8, 8))
    assert n == 0 and eq.ok


def test_layer_scale_folds_into_conv_and_linear_through_layout_ops():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc2 = nn.Conv2d(8, 4, 1)
            self.ls1 = LayerScale2d(4, 0.3)
            self.proj = nn.Linear(4, 4)
            self.ls2 = LayerScale2d(4, 0.7)

        def forward(self, x):
            x = x + self.ls1(self.fc2(torch.cat([x, x], 1)))
            t = self.proj(x.flatten(2).transpose(1, 2))
            return x + self.ls2(t.transpose(1, 2).reshape(x.shape))

    gm, _, eq = lower(M(), torch.randn(2, 4, 5, 3))
    assert eq.max_rel_error < 1e-6, eq.describe()
    assert "mul" not in kinds(gm)


def test_layer_scale_on_wrong_axis_does_not_fold_into_linear():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.gamma = nn.Parameter(torch.rand(5, 1))  # varies along tokens, not channels

        def forward(self, x):
            return self.proj(x) * self.gamma

    gm, n, eq = lower(M(), torch.randn(2, 5, 4))
    assert "mul" in kinds(gm) and eq.ok


def test_bn_before_unpadded_linear_folds_but_not_before_padded_conv():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(4)
            self.qkv = nn.Linear(4, 12, bias=False)

        def forward(self, x):
            y = self.norm(x)
            return self.qkv(y.flatten(2).transpose(1, 2)).reshape(y.shape[0], -1)

    gm, _, eq = lower(Attn(), torch.randn(2, 4, 3, 5))
    assert eq.max_rel_error < 1e-6 and "BatchNorm2d" not in kinds(gm)

    class PreNormPadded(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(4)
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(self.norm(x))

    gm, n, eq = lower(PreNormPadded(), torch.randn(2, 4, 6, 6))
    assert "BatchNorm2d" in kinds(gm) and n == 0 and eq.ok


def test_bn_folds_through_pooling_mixer():
    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(4)
            self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
            self.ls = LayerScale2d(4, 0.4)

        def forward(self, x):
            y = self.norm(x)
            return x + self.ls(self.pool(y) - y)

    gm, _, eq = lower(Pool(), torch.randn(2, 4, 7, 6))
    assert eq.max_rel_error < 1e-6 and "BatchNorm2d" not in kinds(gm)
    assert kinds(gm).count("mul") == 1  # BN scale and layer scale combined into one constant


def test_bn_does_not_fold_through_pool_that_counts_padding():
    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(4)
            self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=True)  # border weights sum to < 1

        def forward(self, x):
            y = self.norm(x)
            return self.pool(y) - y

    gm, n, eq = lower(Pool(), torch.randn(2, 4, 7, 6))
    assert "BatchNorm2d" in kinds(gm) and eq.ok


def test_algebra_regroup_and_pad_are_exact():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 9, 9, dtype=torch.float64)
    c = alg.ConvW(torch.randn(8, 2, 3, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64), 1, 1, 4)
    ref = torch.nn.functional.conv2d(x, c.weight, c.bias, 1, 1, 1, 4)
    for groups in (4, 2, 1):
        r = alg.regroup(alg.pad_kernel(c, 5), groups)
        out = torch.nn.functional.conv2d(x, r.weight, r.bias, 1, r.padding, 1, r.groups)
        assert torch.allclose(out, ref, atol=1e-12)


def test_bn_folds_through_global_pool_into_classifier():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.norm(x).mean((2, 3)))

    gm, _, eq = lower(Head(), torch.randn(2, 4, 5, 5))
    assert eq.max_rel_error < 1e-6 and "BatchNorm2d" not in kinds(gm)


def test_a_wrong_fold_fails_the_build_loudly(monkeypatch):
    """Break the BN-fold algebra (forget BN's shift): the equivalence check must refuse the graph."""
    import archc
    from archc.errors import LoweringError
    from archc.passes import algebra, reparameterize

    real = algebra.fold_affine_after_conv
    monkeypatch.setattr(algebra, "fold_affine_after_conv",
                        lambda conv, scale, shift: real(conv, scale, shift * 0))
    model = randomize_(archc.build("specs/t8.yaml").eval(), seed=1)
    with pytest.raises(LoweringError, match="not equivalent"):
        reparameterize(model, example=torch.randn(1, 3, 64, 64))


def test_equivalence_report_rechecks_in_float64_only_when_float32_exceeds():
    model = ConvBN()
    gm, _, eq = lower(model, torch.randn(2, 4, 9, 9))
    assert eq.float64_rel_error is None
    strict = check_equivalence(model, gm, torch.randn(2, 4, 9, 9), tolerance=1e-30)
    assert strict.float64_rel_error is not None and not strict.ok  # weights are float32: not exact to 1e-30


def test_an_ill_conditioned_net_is_told_apart_from_a_wrong_fold(monkeypatch):
    """A tolerance below float32 rounding stands in for a network that amplifies rounding (seen on a Xeon with
    a random MobileOne layout at 5e-5): the float64 re-lowering proves the folds exact and the float32 deploy
    graph no worse than the train graph, so the build passes and says why; a broken fold still fails."""
    import archc
    from archc.errors import LoweringError
    from archc.passes import algebra, reparameterize

    model = randomize_(archc.build("specs/mobileone_s0.yaml").eval(), seed=1)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    gm = reparameterize(model, example=x, tolerance=1e-9)
    eq = gm.equivalence
    assert eq.max_rel_error > 1e-9 and eq.float64_rel_error > 1e-9  # float32 rounding alone exceeds it
    assert eq.ok and eq.ill_conditioned_but_exact and eq.relowered_float64_rel_error < 1e-12
    assert "exact folds" in eq.describe()
    real = algebra.fold_affine_after_conv
    monkeypatch.setattr(algebra, "fold_affine_after_conv",
                        lambda conv, scale, shift: real(conv, scale * (1 + 1e-6), shift))
    with pytest.raises(LoweringError, match="lowered in float64"):
        reparameterize(model, example=x, tolerance=1e-9)
