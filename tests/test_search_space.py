"""Search spaces: YAML -> static Optuna space, rules, errors with key paths, paper variants as points."""
from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import FixedTrial

from archc import load_spec
from archc.errors import SpecError
from archc.space import (InfeasiblePoint, load_space, point_from_spec, spec_from_trial, spec_from_values,
                                start_points)
from archc.spec import spec_to_dict

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
DEFAULT = ROOT / "search" / "fastvit.yaml"

optuna.logging.set_verbosity(optuna.logging.ERROR)


def write_space(tmp_path: Path, body: str, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body).replace("BASE", str(SPECS / "t8.yaml")))
    return p


@pytest.fixture(scope="module")
def default_space():
    return load_space(DEFAULT)


def test_default_space_is_rich_and_static(default_space):
    names = {p.name for p in default_space.params}
    # mixers, depths, widths, MLP ratio, all three kernels and positional encoding are searched
    for n in ("stages[0].width", "stages[3].width_mult", "stages[2].depth", "stages[3].mixer", "mlp_ratio",
              "mixer_kernel", "ffn_kernel", "downsample_kernel", "stages[3].pos_enc"):
        assert n in names, n
    assert default_space.param("stages[2].depth").distribution == IntDistribution(2, 18)
    # rules shape the choices: attention only in the last two stages
    assert default_space.param("stages[0].mixer").distribution == CategoricalDistribution(("repmixer", "pool"))
    assert "attention" in default_space.param("stages[2].mixer").distribution.choices
    # static: every trial of a study suggests the same parameters with the same distributions
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        try:
            spec_from_trial(trial, default_space)
        except InfeasiblePoint:
            pass
        study.tell(trial, [0.0, 0.0])
    dists = [t.distributions for t in study.trials]
    assert all(d == default_space.distributions() for d in dists)


PAPER = ["t8", "t12", "s12", "sa12", "sa24", "sa36", "ma36", "ablation_v1", "ablation_v2", "ablation_v3",
         "ablation_v4", "ablation_v5"]


@pytest.mark.parametrize("name", PAPER)
def test_paper_variants_are_points_of_the_default_space(default_space, name):
    spec = load_spec(SPECS / f"{name}.yaml")
    match = point_from_spec(spec, default_space)
    replay = spec_from_trial(FixedTrial(match.values), default_space)
    a, b = spec_to_dict(spec), spec_to_dict(replay)
    a.pop("name"), b.pop("name")
    # the only tolerated difference is a training setting (SA36/MA36 train with layer scale 1e-6)
    assert set(match.ignored) <= {"layer_scale_init"}
    if match.ignored:
        a.pop("layer_scale_init"), b.pop("layer_scale_init")
    assert a == b


def test_start_points_merge_identical_variants(default_space):
    points = start_points(default_space)
    names = [tuple(n) for n, _ in points]
    assert ("fastvit_s12", "ablation_v4") in names and ("fastvit_sa12", "ablation_v5") in names
    assert len(points) == 10  # 12 files, two of them duplicates
    assert len({tuple(sorted(m.values.items())) for _, m in points}) == 10


def test_spec_outside_space_is_reported_with_the_key(default_space):
    spec = load_spec(SPECS / "sa12.yaml", overrides=["stages[0].depth=9"])
    with pytest.raises(SpecError, match=r"stages\[0\]\.depth: 9 is not in 1\.\.6"):
        point_from_spec(spec, default_space)


def test_fixed_trial_replays_a_point_deterministically(default_space):
    values = point_from_spec(load_spec(SPECS / "t8.yaml"), default_space).values
    values = dict(values, **{"stages[3].mixer": "attention", "stages[3].pos_enc": "repcpe"})
    s1 = spec_from_trial(FixedTrial(values), default_space)
    s2 = spec_from_trial(FixedTrial(values), default_space)
    assert s1 == s2
    assert s1.mixers == ("repmixer", "repmixer", "repmixer", "attention")
    assert s1.stages[3].pos_enc is not None and s1.stages[3].pos_enc.kernel == 7


def test_infeasible_points_name_the_rule(default_space):
    values = point_from_spec(load_spec(SPECS / "ma36.yaml"), default_space).values
    # MA36 widths: stage 2 is 304 channels, not a whole number of 32-channel heads
    values = dict(values, **{"stages[2].mixer": "attention"})
    with pytest.raises(InfeasiblePoint, match=r"stages\[2\]\.width: width 304 is not divisible by head_dim 32"):
        spec_from_values(default_space, values)


def test_width_rules_checked_per_point(tmp_path):
    p = write_space(tmp_path, """
        name: w
        base: BASE
        stage_defaults: {width_mult: [0.5, 1, 2]}
        stages: [{width: [32]}, {downsample_kernel: 3}, {}, {}]
        rules: {widths_non_decreasing: true}
        """)
    with pytest.raises(SpecError) as err:  # replk patch embeddings need whole multiples: shaped at load
        load_space(p)
    assert "width_mult 0.5 can never be valid in stages[1]" in str(err.value)
    assert f"{p}:4 stage_defaults.width_mult[0]" in str(err.value)


def test_non_decreasing_widths_rule(tmp_path):
    p = write_space(tmp_path, """
        name: w
        base: BASE
        stages: [{width: [32, 64]}, {width: [32, 64]}, {width: [128]}, {width: [256]}]
        rules: {widths_non_decreasing: true}
        """)
    space = load_space(p)
    with pytest.raises(InfeasiblePoint, match=r"widths_non_decreasing: stages\[1\]\.width 32 < stages\[0\]\.width 64"):
        spec_from_values(space, {"stages[0].width": 64, "stages[1].width": 32})
    assert spec_from_values(space, {"stages[0].width": 32, "stages[1].width": 64}).widths == (32, 64, 128, 256)


def test_replk_multiples_checked_per_point_for_absolute_widths(tmp_path):
    space = load_space(write_space(tmp_path, """
        name: w2
        base: BASE
        stages: [{width: [48]}, {width: [64, 96]}, {width: [192]}, {width: [384]}]
        """))
    with pytest.raises(InfeasiblePoint, match=r"stages\[1\]\.width: width 64 must be a multiple of the incoming width 48"):
        spec_from_values(space, {"stages[1].width": 64})
    assert spec_from_values(space, {"stages[1].width": 96}).widths == (48, 96, 192, 384)


@pytest.mark.parametrize("body, where, message", [
    ("name: x\nbase: BASE\nstages: [{mixer: [repmixer, repmix]}, {}, {}, {}]\n", "3 stages[0].mixer[1]",
     "invalid value 'repmix' (did you mean 'repmixer'?); valid: repmixer, attention, pool"),
    ("name: x\nbase: BASE\nstages: [{}, {}, {}, {depht: 3}]\n", "3 stages[3].depht",
     "unknown stage key 'depht' (did you mean 'depth'?)"),
    ("name: x\nbase: BASE\nstages: [{}, {}, {ffn_kernel: [3, 4]}, {}]\n", "3 stages[2].ffn_kernel[1]",
     "kernel size 4 must be odd"),
    ("name: x\nbase: BASE\nstages: [{depth: {low: 4, high: 2}}, {}, {}, {}]\n", "3 stages[0].depth",
     "low 4 is greater than high 2"),
    ("name: x\nbase: BASE\nstages: [{}, {}, {}]\n", "3 stages", "the space has 3 stages but its base"),
    ("name: x\nbase: BASE\nstages: [{width_mult: [1, 2]}, {}, {}, {}]\n", "3 stages[0].width_mult",
     "does not apply here: stage 0 has no previous stage"),
    ("name: x\nbase: BASE\nshared: {mlp_ratio: [3, 4]}\nstages: [{}, {mlp_ratio: 2}, {}, {}]\n",
     "4 stages[1].mlp_ratio", "is shared by all stages"),
    ("name: x\nbase: BASE\nstages: [{mixer: attention}, {}, {}, {}]\nrules: {attention_in_last: 1}\n",
     "4 rules.attention_in_last", "stages[0].mixer is fixed to attention"),
    ("name: x\nbase: BASE\nrules: {attention_last: 2}\n", "3 rules.attention_last",
     "unknown rule 'attention_last' (did you mean 'attention_in_last'?)"),
    ("name: x\nbase: nope.yaml\n", "2 base", "base spec 'nope.yaml' not found"),
    ("name: x\nbase: BASE\nspec: {input_size: [4, 8000]}\n", "3 spec.input_size[0]", "value 4 out of range"),
    ("name: x\nbase: BASE\nstart_from: [BASE]\nstages: [{depth: {low: 1, high: 1}}, {}, {}, {}]\n", "",
     "not a point of the space: stages[0].depth: 2 is not in 1..1"),
])
def test_bad_spaces_name_file_line_key_and_choices(tmp_path, body, where, message):
    p = write_space(tmp_path, body)
    with pytest.raises(SpecError) as err:
        space = load_space(p)
        start_points(space)
    text = str(err.value)
    assert message in text
    if where:
        line, key = where.split(" ", 1)
        assert text.startswith(f"{p}:{line} {key}:"), text


def test_shipped_spaces_load():
    for path in sorted((ROOT / "search").glob("*.yaml")):
        space = load_space(path)
        start_points(space)  # every start point is a point of its space
        assert space.params, path


def test_default_space_resolves_from_any_directory(tmp_path, monkeypatch):
    """`archc search` run outside the checkout still finds the shipped search/fastvit.yaml."""
    from archc.space import load_space as _load
    monkeypatch.chdir(tmp_path)
    space = _load("search/fastvit.yaml")
    assert space.start_from  # its start points (specs/...) resolve relative to the space file too


def test_a_space_varies_the_keys_of_the_new_block_kinds(tmp_path):
    """The mixer keys come from each kind's search keys: MobileOne's kernel and SE blocks vary in a MobileOne
    space, and a mixer switch to repmixer in stage 2 takes RepMixer's kernel; the start point is a point."""
    p = tmp_path / "mobileone.yaml"
    p.write_text(textwrap.dedent(f"""
        name: mo
        base: {SPECS / "mobileone_s0.yaml"}
        shared: {{conv_branches: [1, 4]}}
        stage_defaults: {{depth: {{low: 1, high: 10}}, mobileone_kernel: [3, 5], se_blocks: [0, 1]}}
        stages: [{{}}, {{}}, {{mixer: [mobileone, repmixer], mixer_kernel: [3, 5]}}, {{}}]
        start_from: [{SPECS / "mobileone_s0.yaml"}]
        """))
    space = load_space(p)
    assert {"stages[0].mobileone_kernel", "stages[3].se_blocks", "stages[2].mixer", "stages[2].mixer_kernel",
            "conv_branches"} <= {q.name for q in space.params}
    values = {q.name: q.distribution.choices[-1] if isinstance(q.distribution, CategoricalDistribution)
              else q.distribution.low for q in space.params}
    values["stages[2].mixer"] = "mobileone"
    spec = spec_from_trial(FixedTrial(values), space)
    assert spec.stages[0].mixer.kernel == 5 and spec.stages[3].mixer.se_blocks == 1
    assert spec.stages[0].conv_branches == 4 and spec.stages[2].mixer.type == "mobileone"
    values["stages[2].mixer"] = "repmixer"
    with pytest.raises(InfeasiblePoint, match="downsample"):  # RepMixer cannot change width without a downsample
        spec_from_trial(FixedTrial(values), space)
    match = point_from_spec(load_spec(SPECS / "mobileone_s0.yaml"), space)
    assert spec_to_dict(spec_from_values(space, match.values, "mobileone_s0")) == spec_to_dict(
        load_spec(SPECS / "mobileone_s0.yaml"))


def test_the_space_language_names_no_kind_and_lists_keys_from_one_table():
    """Every stage key comes from archc/space/keys.py's table (plain stage fields, width_mult, and each part's
    chooser and its kinds' search keys); no module of archc/space names a registered kind in a string, so a new
    block kind joins search spaces through its registration alone (docs/ADD_A_BLOCK.md)."""
    import ast
    from pathlib import Path

    import archc.space as space_pkg
    from archc.blocks import FAMILIES, MIXERS
    from archc.space.keys import STAGE_KEY_TABLE
    from archc.space.model import STAGE_KEYS
    assert STAGE_KEYS == tuple(k.name for k in STAGE_KEY_TABLE)
    assert set(MIXERS.search_keys()) <= set(STAGE_KEYS)
    kinds = {name for family in FAMILIES.values() for name in family}
    named = []
    for path in Path(space_pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in kinds:
                named.append(f"{path.name}:{node.lineno} {node.value!r}")
    assert named == [], named
