"""Property test over the builder: any small spec that ``load_spec`` accepts builds, runs, and has the shapes
the spec promises (``stage_resolutions``, widths, classes). Random specs vary channels, depths, mixers,
kernels, strides, branches, stems, heads and resolutions; a spec the loader refuses must be a SpecError.
"""
from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc.blocks import HEADS, MIXERS
from archc.errors import SpecError
from archc.spec import load_spec, stage_resolutions

from conftest import own_flat_keys

#: ARCHC_FUZZ_EXAMPLES=2000 explores harder (the default keeps the suite fast)
SETTINGS = settings(max_examples=int(os.environ.get("ARCHC_FUZZ_EXAMPLES", 40)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

odd = st.sampled_from([1, 3, 5, 7])


@st.composite
def small_specs(draw):
    n = draw(st.integers(1, 4))
    widths, w = [], draw(st.sampled_from([8, 16, 24]))
    for i in range(n):
        if i:
            w = draw(st.sampled_from([w, w * 2, w * 3, w + 8]))
        widths.append(w)
    stages = []
    for i, w in enumerate(widths):
        s = {"depth": draw(st.integers(1, 2)), "width": w, "mixer": draw(st.sampled_from(list(MIXERS))),
             "mlp_ratio": draw(st.sampled_from([0.5, 1, 2, 3])),
             "mixer_kernel": draw(odd), "pool_size": draw(odd), "ffn": draw(st.sampled_from(["convffn", "mlp"])),
             "ffn_kernel": draw(odd), "head_dim": draw(st.sampled_from([4, 8, 16])),
             "conv_branches": draw(st.integers(0, 2)), "scale_branch": draw(st.booleans())}
        if s["mixer"] == "mobileone":  # a plain MobileOne stage: strides itself, no downsample / pos_enc
            s["mixer"] = {"type": "mobileone", "kernel": draw(odd), "stride": draw(st.integers(1, 2)),
                          "se_blocks": draw(st.integers(0, s["depth"]))}
            stages.append(own_flat_keys(s))
            continue
        if i or draw(st.booleans()):
            s["downsample"] = draw(st.one_of(
                st.none(),
                st.fixed_dictionaries({"type": st.just("replk"), "kernel": odd, "small_kernel": st.one_of(st.none(), odd),
                                       "stride": st.integers(1, 3), "se_ratio": st.sampled_from([None, 0.25]),
                                       "act": st.booleans()}),
                st.fixed_dictionaries({"type": st.just("conv"), "kernel": odd, "stride": st.integers(1, 3)})))
        if draw(st.booleans()):
            s["pos_enc"] = {"kernel": draw(odd)}
        stages.append(own_flat_keys(s))
    stem = draw(st.one_of(
        st.fixed_dictionaries({"type": st.just("mobileone"), "kernel": odd, "conv_branches": st.integers(1, 2),
                               "scale_branch": st.booleans()}),
        st.fixed_dictionaries({"type": st.just("conv"), "kernel": odd, "stride": st.integers(1, 4),
                               "padding": st.one_of(st.none(), st.integers(0, 3))}),
        st.fixed_dictionaries({"type": st.just("mobileone_block"), "kernel": odd, "stride": st.integers(1, 2),
                               "conv_branches": st.integers(1, 2)})))
    if draw(st.booleans()):
        stem["width"] = widths[0]
    head = draw(st.one_of(
        st.fixed_dictionaries({"type": st.just("mobileone_se"), "expansion": st.sampled_from([1, 2, 3]),
                               "kernel": odd, "conv_branches": st.integers(1, 2)}),
        st.sampled_from([{"type": t} for t in HEADS if t != "mobileone_se"])))
    return {"name": "fuzz", "num_classes": draw(st.integers(1, 12)), "in_chans": draw(st.sampled_from([1, 3])),
            "input_size": [draw(st.integers(8, 40)), draw(st.integers(8, 40))],
            "activation": draw(st.sampled_from(["gelu", "relu", "silu", "hardswish"])),
            "norm": draw(st.sampled_from(["batchnorm", "groupnorm"])),
            "layer_scale_init": draw(st.sampled_from([None, 1e-5, 0.5])),
            "stem": stem, "head": head, "stages": stages}


@SETTINGS
@given(small_specs())
def test_accepted_small_specs_build_and_run_with_the_promised_shapes(data):
    try:
        spec = load_spec(data)
    except SpecError as exc:  # one line per mistake (SpecErrors holds several)
        assert all("\n" not in str(e) for e in getattr(exc, "errors", [exc]))
        return
    model = archc.build(spec).eval()
    shapes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
    x = torch.randn((2, spec.in_chans) + spec.input_size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()
    assert shapes == [(w,) + hw for w, hw in zip(spec.widths, stage_resolutions(spec))]


