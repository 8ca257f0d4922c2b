"""Kernel lowerings (archc.passes.kernels): exact rewrites that only change which kernels run."""
from __future__ import annotations

import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from archc import load_spec
from archc.builder import build
from archc.errors import LoweringError
from archc.passes import kernels as K
from archc.passes import reparameterize
from archc.testing import randomize_

from conftest import SPECS

CL = torch.channels_last


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
@pytest.mark.parametrize("repeats", [2, 3])
def test_repeat_channels_is_repeat_interleave_and_keeps_the_layout(fmt, repeats):
    x = torch.randn(2, 5, 7, 6).contiguous(memory_format=fmt)
    y = K.repeat_channels(x, repeats)
    assert torch.equal(y, x.repeat_interleave(repeats, dim=1))
    assert y.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_gelu_nhwc_is_gelu(fmt):
    x = torch.randn(1, 6, 5, 4, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=fmt) * 3
    y = K.gelu_nhwc(x)
    # the same (vectorised) kernel as GELU on a contiguous tensor; torch's strided channels_last GELU
    # differs from it by float rounding in the tails, so the reference is the contiguous call
    assert torch.equal(y, F.gelu(x.contiguous()))
    # float32 GELU against float64: a few ulps of the output (|y| <= ~10 here)
    assert (y.double() - F.gelu(x.double())).abs().max() < 4 * torch.finfo(torch.float32).eps * 10
    assert y.is_contiguous(memory_format=fmt)
    v = torch.randn(3, 10)
    assert torch.equal(K.gelu_nhwc(v), F.gelu(v))


class Mixed(nn.Module):
    """One conv of each kind the lowering must rewrite or leave alone."""

    def __init__(self):
        super().__init__()
        self.mult2 = nn.Conv2d(4, 8, 7, stride=2, padding=3, groups=4)          # rewritten (m = 2)
        self.mult3 = nn.Conv2d(8, 24, 3, padding=1, groups=8, bias=False)       # rewritten (m = 3)
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)                    # already depthwise
        self.grouped = nn.Conv2d(24, 48, 3, padding=1, groups=12)               # groups != in: left alone
        self.dense = nn.Conv2d(48, 16, 1)                                       # dense: left alone
        self.shared = nn.Conv2d(16, 32, 3, padding=1, groups=16)                # called twice: left alone
        self.reflect = nn.Conv2d(32, 64, 3, padding=1, groups=32, padding_mode="reflect")  # not zero padding
        self.act = nn.GELU()
        self.tanh_act = nn.GELU(approximate="tanh")

    def forward(self, x):
        x = self.act(self.mult3(self.mult2(x)))
        x = self.dense(self.grouped(self.dw(x)))
        a = self.shared(x)
        b = self.shared(x * 2)
        return self.tanh_act(self.reflect(a + b))


def _randomized(m: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def test_expand_channel_multiplier_rewrites_exactly_the_multiplier_convs():
    model = _randomized(Mixed())
    gm = fx.symbolic_trace(model)
    assert K.expand_channel_multiplier(gm) == 2
    gm.recompile()
    convs = dict(gm.named_modules())
    assert convs["mult2"].groups == 8 and convs["mult2"].in_channels == 8
    assert convs["mult3"].groups == 24 and convs["mult3"].bias is None
    assert convs["grouped"].groups == 12 and convs["shared"].groups == 16 and convs["reflect"].groups == 32
    reps = [n for n in gm.graph.nodes if n.target is K.repeat_channels]
    assert [n.args[1] for n in reps] == [2, 3]
    x = torch.randn(2, 4, 16, 16)
    for fmt in (torch.contiguous_format, CL):
        with torch.no_grad():
            assert _rel(gm(x.contiguous(memory_format=fmt)), model(x)) < 1e-6


def test_gelu_channels_last_replaces_only_the_exact_gelu():
    gm = fx.symbolic_trace(_randomized(Mixed()))
    assert K.gelu_channels_last(gm) == 1
    gm.recompile()
    assert [n.target for n in gm.graph.nodes if n.target is K.gelu_nhwc] == [K.gelu_nhwc]
    assert any(n.op == "call_module" and n.target == "tanh_act" for n in gm.graph.nodes)


@pytest.fixture(scope="module")
def t8_deploy():
    spec = load_spec(SPECS / "t8.yaml", overrides={"input_size": 64})
    train = randomize_(build(spec), seed=1).eval()
    return spec, train, reparameterize(train)


def test_fastvit_deploy_graph_lowers_its_four_multiplier_convs(t8_deploy):
    spec, train, deploy = t8_deploy
    gm = K.lower_for_kernels(deploy)
    # three stride-2 large-kernel downsampling convs and the final 3x3 conv (C -> 2C, groups C)
    assert gm.kernel_lowerings == {"expand_channel_multiplier": 4, "gelu_channels_last": 17}
    assert gm.equivalence.ok and gm.spec is spec and gm.reparam_level == "full"
    for m in gm.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels  # every grouped conv is now depthwise
    x = torch.randn(2, 3, 70, 58, generator=torch.Generator().manual_seed(2))  # not the traced size
    with torch.no_grad():
        ref = train(x)
        assert _rel(gm(x), ref) < 1e-5
        assert _rel(gm.to(memory_format=CL)(x.contiguous(memory_format=CL)), ref) < 1e-5
    assert not any(n.target is K.repeat_channels for n in deploy.graph.nodes)  # input untouched


def test_a_lowering_that_changes_the_function_fails_the_build(t8_deploy, monkeypatch):
    _, _, deploy = t8_deploy

    def wrong(x, repeats):  # tiles instead of interleaving: wrong channel order
        return x.repeat(1, repeats, 1, 1)
    monkeypatch.setattr(K, "repeat_channels", wrong)
    with pytest.raises(LoweringError, match="kernel lowering changed the function"):
        K.lower_for_kernels(deploy, ["expand_channel_multiplier"])


def test_unknown_lowering_names_the_valid_ones(t8_deploy):
    with pytest.raises(LoweringError, match="valid: expand_channel_multiplier, gelu_channels_last"):
        K.lower_for_kernels(t8_deploy[2], ["fuse_everything"])
