"""``archc.testing.reference_check``: the tolerance for stored references comes from float32's rounding of the
computation measured on this machine, so it holds on any CPU, and it still fails on an error that float32
could resolve (a test of the check itself: it must be able to fail)."""
from __future__ import annotations

import copy

import torch

import archc
from archc.testing import OTHER_CPU_ROUNDING, float32_error, randomize_, reference_check, seeded_input


def _model():
    spec = archc.load_spec("specs/t8.yaml", overrides={"input_size": 64, "num_classes": 10})
    return randomize_(archc.build(spec).eval(), seed=3)


def test_float32_error_is_rounding_sized():
    model, x = _model(), seeded_input((2, 3, 64, 64), 1)
    out32, out64, e32 = float32_error(model, x)
    scale = float(out64.abs().max())
    assert out64.dtype == torch.float64 and out32.dtype == torch.float32
    assert 0 < e32 < 1e-4 * scale  # rounding, not an error in the copy
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched


def test_a_float64_reference_passes_and_a_slightly_wrong_weight_fails():
    model, x = _model(), seeded_input((2, 3, 64, 64), 1)
    with torch.no_grad():
        ref64 = copy.deepcopy(model).double()(x.double())
    check = reference_check(model, x, ref64.float(), ref64)
    assert check.ok and check.precision == "float64" and check.tolerance < 1e-5 * check.float32_error
    # one BatchNorm variance off by 0.1%: a mapping or fold bug of the smallest kind
    wrong = copy.deepcopy(model)
    bn = next(m for m in wrong.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        bn.running_var.mul_(1.001)
    bad = reference_check(wrong, x, ref64.float(), ref64)
    assert not bad.ok, bad.describe()


def test_a_float32_reference_gets_the_other_cpu_factor():
    model, x = _model(), seeded_input((2, 3, 64, 64), 1)
    with torch.no_grad():
        ref32 = model(x)
    check = reference_check(model, x, ref32)
    assert check.precision == "float32" and check.ok
    assert check.tolerance >= OTHER_CPU_ROUNDING * check.float32_error
