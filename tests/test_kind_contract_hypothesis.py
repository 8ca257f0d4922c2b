"""The kind contract, Optuna-style: one set of checks run over every registered kind, with parameters drawn by
hypothesis from each kind's own field metadata (``archc.contract.params_strategy``, no generator per kind) and
block kinds' search keys taken through a search space and Optuna's ``FixedTrial`` and back. Each check is also
shown to fail on a kind broken on purpose (registered here, removed in a ``finally``)."""
from __future__ import annotations

import dataclasses
import os
from typing import Tuple

import pytest
import torch.nn as nn
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from archc.blocks import MIXERS
from archc.blocks.kind import Kind, opt, type_field
from archc.contract import (FAMILIES, HOSTS, check_exact_deploy, check_search_keys, check_yaml_round_trip,
                            params_strategy, place, search_kinds)
from archc.errors import SpecError
from archc.spec import load_spec
from archc.spec.convert import convert
from archc.spec.registry import NORMS
from archc.spec.yamlsrc import Located

KINDS = [(family, kind) for family, registry in FAMILIES.items() for kind in registry]

#: ARCHC_FUZZ_EXAMPLES=200 explores harder (the default keeps this file to seconds per kind on one core)
SETTINGS = settings(max_examples=int(os.environ.get("ARCHC_FUZZ_EXAMPLES", 6)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


#: found by the property test below: a ``quant_friendly`` MobileOneBlock's bare 1x1 branch padded 0 where its
#: ConvBN twin pads ``conv_padding(1, stride)``, so at stride >= 3 the branch sizes differed and the build failed
FOUND_CASES = [("mixer", {"type": "mobileone", "stride": 3, "quant_friendly": True}, False),
               ("stem", {"type": "mobileone_block", "stride": 3, "quant_friendly": True}, True)]


@pytest.mark.parametrize("family, params, downsample", FOUND_CASES, ids=["mixer-mobileone", "stem-mobileone_block"])
def test_cases_the_fuzzing_found_build_and_lower_exactly(family, params, downsample):
    assert check_exact_deploy(load_spec(place(family, params, downsample=downsample))) == []


@pytest.mark.parametrize("family, kind", KINDS, ids=[f"{f}-{k}" for f, k in KINDS])
@SETTINGS
@given(data=st.data())
def test_drawn_parameters_load_or_are_refused_and_loaded_ones_round_trip_and_lower_exactly(family, kind, data):
    k = FAMILIES[family][kind]
    params = data.draw(params_strategy(k), label="params")
    # the strategy draws only what the fields allow: refusals below come from the spec's rules, not the draw
    assert dataclasses.asdict(convert(k.params, params, (), Located(params, {}, "<drawn>"))) == params
    host = data.draw(st.integers(0, len(HOSTS) - 1), label="host")
    downsample = data.draw(st.booleans(), label="downsample") if family == "mixer" else True
    norm = data.draw(st.sampled_from(sorted(NORMS)), label="norm")
    try:
        spec = load_spec(place(family, params, host, downsample, norm))
    except SpecError:  # any other exception fails the test
        event("refused")
        return
    event("loaded")
    assert check_yaml_round_trip(spec) == []
    assert check_exact_deploy(spec) == []


@pytest.mark.parametrize("kind", search_kinds())
def test_search_keys_round_trip_through_a_space_and_fixed_trial(kind):
    result = check_search_keys(kind)
    assert result["problems"] == []
    assert result["feasible"].get(kind), result  # the kind's own points are reached, not just other kinds'


def test_the_drawn_contract_fails_a_kind_whose_deploy_graph_computes_another_function():
    """RepMixer blocks whose first BatchNorm shifts its output in a forward hook: torch.fx does not trace hooks,
    so the pass folds that BatchNorm into its conv and the shift is gone from the deploy graph."""
    from archc.blocks.stage import build_ffn, check_ffn, metaformer_estimate, metaformer_stage
    from archc.nn import RepMixerBlock

    @dataclasses.dataclass(frozen=True)
    class Params:
        type: str = type_field("hooked_bn")
        kernel: int = opt(3, "depthwise kernel", min=1, max=7, odd=True)
        shift: float = opt(1.0, "what the hook adds", min=0.5, max=2.0)

    def block(ctx, drop_path):
        s, p = ctx.stage, ctx.params
        blk = RepMixerBlock(s.width, p.kernel, build_ffn(ctx), ctx.spec.layer_scale_init, drop_path,
                            s.conv_branches, s.scale_branch)
        bn = next(m for m in blk.modules() if isinstance(m, nn.BatchNorm2d))
        bn.register_forward_hook(lambda module, inputs, out: out + p.shift)
        return blk

    kind = Kind("hooked_bn", "test only", Params, metaformer_stage(block), check_ffn, estimate=metaformer_estimate)
    reports = []

    @settings(max_examples=3, deadline=None, database=None)
    @given(params=params_strategy(kind))
    def run(params):
        problems = check_exact_deploy(load_spec(place("mixer", params)))
        reports.append(problems)
        assert any("computes another function" in p for p in problems), problems

    MIXERS.register(kind)
    try:
        run()
    finally:
        MIXERS._kinds.pop("hooked_bn")
    assert reports


def test_the_search_check_fails_a_kind_that_rewrites_a_searched_value():
    """A pool mixer whose parameters silently cap ``pool_size`` at 3: points with 5 give specs with 3."""
    @dataclasses.dataclass(frozen=True)
    class Params:
        type: str = type_field("capped_pool")
        pool_size: int = opt(3, "window", min=1, max=7, odd=True)

        @classmethod
        def pre_convert(cls, data, path, loc):
            return {**data, "pool_size": min(data.get("pool_size", 3), 3)}

    MIXERS.register(dataclasses.replace(MIXERS["pool"], name="capped_pool", params=Params))
    try:
        problems = check_search_keys("capped_pool")["problems"]
    finally:
        MIXERS._kinds.pop("capped_pool")
    assert any("the spec has pool_size = 3" in p for p in problems), problems


def test_params_strategy_refuses_a_field_type_it_has_no_rule_for():
    @dataclasses.dataclass(frozen=True)
    class Params:
        type: str = type_field("tupled")
        sizes: Tuple[int, ...] = opt((3,), "kernels", min=1, max=7)

    with pytest.raises(TypeError, match="sizes"):
        params_strategy(Kind("tupled", "test only", Params, lambda ctx: None))
