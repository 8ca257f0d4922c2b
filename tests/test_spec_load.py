"""The spec language, accepted input: loading, ``base:`` inheritance, index patches, ``stage_defaults``,
overrides, and the dump/load round trip of every shipped spec."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml

from archc.errors import SpecError
from archc.blocks.downsamples import ConvDownsample, RepCPEPosEnc as PosEncSpec, ReplkDownsample as DownsampleSpec
from archc.blocks.metaformer import AttentionParams, PoolParams, RepMixerParams
from archc.spec import (Spec, StageSpec, load_spec, parse_key_path, parse_override,
                        save_spec, spec_to_dict, spec_to_yaml, stage_resolutions)

from conftest import SPECS, shipped_specs

#: (depths, widths, mlp ratio, mixers) from the FastViT paper / timm, for the shipped variants
FASTVIT = {
    "t8": ((2, 2, 4, 2), (48, 96, 192, 384), 3.0, ("repmixer",) * 4),
    "t12": ((2, 2, 6, 2), (64, 128, 256, 512), 3.0, ("repmixer",) * 4),
    "s12": ((2, 2, 6, 2), (64, 128, 256, 512), 4.0, ("repmixer",) * 4),
    "sa12": ((2, 2, 6, 2), (64, 128, 256, 512), 4.0, ("repmixer",) * 3 + ("attention",)),
    "sa24": ((4, 4, 12, 4), (64, 128, 256, 512), 4.0, ("repmixer",) * 3 + ("attention",)),
    "sa36": ((6, 6, 18, 6), (64, 128, 256, 512), 4.0, ("repmixer",) * 3 + ("attention",)),
    "ma36": ((6, 6, 18, 6), (76, 152, 304, 608), 4.0, ("repmixer",) * 3 + ("attention",)),
}

STAGE = "{depth: 1, width: 16, mixer: repmixer}"


def write(directory: Path, name: str, text: str) -> Path:
    p = directory / name
    p.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return p


def tiny(directory: Path, name: str = "tiny.yaml", extra: str = "") -> Path:
    """A two-stage spec small enough to build in milliseconds."""
    return write(directory, name, f"""
        name: tiny
        input_size: 32
        num_classes: 10
        stage_defaults:
          mlp_ratio: 2
          downsample: {{type: replk, kernel: 3, small_kernel: 1}}
        stages:
          - {{depth: 1, width: 16, mixer: repmixer}}
          - {{depth: 1, width: 32, mixer: attention, head_dim: 16}}
        {extra}
        """)


# ------------------------------------------------------------------------------------ shipped specs
@pytest.mark.parametrize("path", shipped_specs(), ids=lambda p: p.stem)
def test_every_shipped_spec_round_trips(path, tmp_path):
    spec = load_spec(path)
    assert isinstance(spec, Spec) and spec.source == str(path)
    # YAML text -> data -> Spec, and YAML file -> Spec, both equal the original
    assert load_spec(yaml.safe_load(spec_to_yaml(spec))) == spec
    out = save_spec(spec, tmp_path / f"{path.stem}.yaml", header="regenerated\nby the test")
    assert out.read_text().startswith("# regenerated\n# by the test\n")
    assert load_spec(out) == spec
    # the dump stands alone: every key explicit, no base
    assert "base" not in spec_to_dict(spec) and "stage_defaults" not in spec_to_dict(spec)


@pytest.mark.parametrize("variant", sorted(FASTVIT))
def test_fastvit_variants_have_the_paper_layout(variant):
    depths, widths, ratio, mixers = FASTVIT[variant]
    spec = load_spec(SPECS / f"{variant}.yaml")
    assert (spec.depths, spec.widths, spec.mixers) == (depths, widths, mixers)
    assert {s.mlp_ratio for s in spec.stages} == {ratio}
    assert spec.input_size == (256, 256) and spec.num_classes == 1000
    assert spec.stages[0].downsample is None
    assert all(s.downsample == DownsampleSpec("replk", 7, 3, 2) for s in spec.stages[1:])
    pos = [s.pos_enc for s in spec.stages]
    assert pos == ([None] * 3 + [PosEncSpec("repcpe", 7)] if "attention" in mixers else [None] * 4)
    assert stage_resolutions(spec) == ((64, 64), (32, 32), (16, 16), (8, 8))
    assert spec.layer_scale_init == (1e-6 if variant in ("sa36", "ma36") else 1e-5)


def test_table4_ablations_and_poolformer_pair():
    s12, sa12 = load_spec(SPECS / "s12.yaml"), load_spec(SPECS / "sa12.yaml")
    v = {i: load_spec(SPECS / f"ablation_v{i}.yaml") for i in range(1, 6)}
    for i, base in ((1, s12), (2, sa12)):  # V1/V2: 3x3 kernels in patch embedding and ConvFFN
        assert [s.ffn_kernel for s in v[i].stages] == [3] * 4
        assert [s.downsample.kernel for s in v[i].stages[1:]] == [3] * 3
        assert v[i].mixers == base.mixers and v[i].depths == base.depths
    assert v[3].mixers == ("repmixer", "repmixer", "attention", "attention")
    assert v[3].stages[2].pos_enc == PosEncSpec("repcpe", 7)
    assert dataclasses.replace(v[3], name=v[2].name, stages=v[2].stages) == v[2]
    assert dataclasses.replace(v[4], name=s12.name) == s12  # V4 = S12, V5 = SA12
    assert dataclasses.replace(v[5], name=sa12.name) == sa12
    pf, pfr = load_spec(SPECS / "poolformer_s12.yaml"), load_spec(SPECS / "poolformer_s12_repmixer.yaml")
    assert pf.depths == (2, 2, 6, 2) and pf.widths == (64, 128, 320, 512) and pf.mixers == ("pool",) * 4
    assert pf.input_size == (224, 224) and pf.norm == "groupnorm"
    assert pfr.mixers == ("repmixer",) * 4
    assert [dataclasses.replace(s, mixer=PoolParams()) for s in pfr.stages] == list(pf.stages)
    for name in ("sa36_384", "ma36_384"):
        hi = load_spec(SPECS / f"{name}.yaml")
        lo = load_spec(SPECS / f"{name[:-4]}.yaml")
        assert hi.input_size == (384, 384) and dataclasses.replace(hi, name=lo.name, input_size=lo.input_size) == lo


# ------------------------------------------------------------------------------------ loading forms
def test_load_from_mapping_path_string_and_spec(tmp_path):
    p = tiny(tmp_path)
    a = load_spec(p)
    b = load_spec(str(p))
    c = load_spec(yaml.safe_load(p.read_text()))
    assert a == b == c
    assert load_spec(a) is a  # a Spec without overrides is returned as is
    assert c.source == "<dict>"
    # Python callers may pass tuples where YAML has lists
    d = load_spec({**yaml.safe_load(p.read_text()), "input_size": (32, 48)})
    assert d.input_size == (32, 48)


def test_defaults_fill_every_optional_key(tmp_path):
    spec = load_spec(write(tmp_path, "min.yaml", f"name: m\nstages: [{STAGE}]\n"))
    assert spec == Spec(name="m", stages=(StageSpec(depth=1, width=16, mixer=RepMixerParams()),))
    assert spec.input_size == (256, 256) and spec.activation == "gelu" and spec.layer_scale_init == 1e-5


def test_scalar_input_size_and_string_shorthands(tmp_path):
    spec = load_spec(write(tmp_path, "s.yaml", """
        name: s
        input_size: [64, 96]
        stages:
          - {depth: 1, width: 16, mixer: repmixer}
          - {depth: 1, width: 32, mixer: repmixer, downsample: conv}
        """))
    assert spec.input_size == (64, 96)
    assert spec.stages[1].downsample == ConvDownsample(type="conv")


# ------------------------------------------------------------------------------------ inheritance
def test_base_chain_merges_mappings_and_replaces_lists(tmp_path):
    tiny(tmp_path, "a.yaml")
    write(tmp_path, "b.yaml", """
        base: a.yaml
        name: b
        stem: {kernel: 5}
        """)
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub, "c.yaml", """
        base: ../b.yaml
        name: c
        stem: {conv_branches: 2}
        stages:
          - {depth: 3, width: 16, mixer: pool}
        """)
    a, b, c = (load_spec(p) for p in (tmp_path / "a.yaml", tmp_path / "b.yaml", sub / "c.yaml"))
    assert (b.name, b.stem.kernel, b.stages) == ("b", 5, a.stages)
    # stem merges key by key through the chain (kernel from b, branches from c) ...
    assert (c.stem.kernel, c.stem.conv_branches) == (5, 2)
    # ... while a list replaces the inherited one entirely
    assert c.depths == (3,) and c.mixers == ("pool",)
    assert c.source == str(sub / "c.yaml")


def test_index_patches_change_only_the_named_stage_keys(tmp_path):
    tiny(tmp_path, "a.yaml")
    p = write(tmp_path, "p.yaml", """
        base: a.yaml
        name: patched
        stages: {0: {depth: 2, mixer: pool}, 1: {downsample: {kernel: 5}}}
        """)
    a, p = load_spec(tmp_path / "a.yaml"), load_spec(p)
    assert p.stages[0] == dataclasses.replace(a.stages[0], depth=2, mixer=PoolParams())
    # a patch of a nested mapping merges: kernel changes, small_kernel and type stay
    assert p.stages[1] == dataclasses.replace(a.stages[1], downsample=dataclasses.replace(a.stages[1].downsample,
                                                                                         kernel=5))


def test_null_in_a_patch_removes_an_inherited_value():
    s12 = load_spec(SPECS / "s12.yaml")  # sa12 with stages: {3: {mixer: repmixer, pos_enc: null}}
    assert s12.stages[3].pos_enc is None and s12.stages[3].mixer.type == "repmixer"


def test_stage_defaults_apply_to_unset_keys_but_never_downsample_stage_0(tmp_path):
    spec = load_spec(tiny(tmp_path))
    assert spec.stages[0].downsample is None  # stage 0 takes the stem's output as is
    assert spec.stages[1].downsample == DownsampleSpec("replk", 3, 1, 2)
    assert [s.mlp_ratio for s in spec.stages] == [2.0, 2.0]
    # a stage's own value wins; a stage 0 that sets a downsample gets it, merged with the default like any stage
    spec = load_spec(write(tmp_path, "d.yaml", """
        name: d
        stem: {width: 8}
        stage_defaults: {mlp_ratio: 2, downsample: {type: replk, kernel: 3, small_kernel: 1}}
        stages:
          - {depth: 1, width: 16, mixer: repmixer, mlp_ratio: 3, downsample: {kernel: 5}}
          - {depth: 1, width: 32, mixer: repmixer}
        """))
    assert spec.stages[0].mlp_ratio == 3.0 and spec.stages[1].mlp_ratio == 2.0
    assert spec.stages[0].downsample == DownsampleSpec("replk", 5, 1, 2)


def test_child_stage_defaults_reach_inherited_stages():
    v1, s12 = load_spec(SPECS / "ablation_v1.yaml"), load_spec(SPECS / "s12.yaml")
    assert [s.ffn_kernel for s in v1.stages] == [3] * 4 and [s.ffn_kernel for s in s12.stages] == [7] * 4
    assert v1.stages[0].downsample is None


# ------------------------------------------------------------------------------------ overrides
def test_override_strings_and_mappings_agree():
    a = load_spec(SPECS / "sa12.yaml", ["stages[2].mixer=attention", "input_size=128", "stem.kernel=5",
                                        "stages[3].pos_enc=null", "layer_scale_init=null"])
    b = load_spec(SPECS / "sa12.yaml", {"stages[2].mixer": "attention", "input_size": 128, "stem.kernel": 5,
                                        "stages[3].pos_enc": None, "layer_scale_init": None})
    assert a == b
    assert a.mixers == ("repmixer", "repmixer", "attention", "attention")
    assert (a.input_size, a.stem.kernel, a.stages[3].pos_enc, a.layer_scale_init) == ((128, 128), 5, None, None)
    # values are read as YAML: flow mappings and lists work
    c = load_spec(SPECS / "sa12.yaml", ["stages[1].downsample={type: conv, kernel: 3}", "input_size=[128, 160]"])
    assert c.stages[1].downsample == ConvDownsample("conv", 3, 2) and c.input_size == (128, 160)
    # overrides apply after inheritance and before stage_defaults, on a Spec too
    d = load_spec(load_spec(SPECS / "t8.yaml"), ["stages[0].depth=3"])
    assert d.depths == (3, 2, 4, 2)


def test_parse_key_path_and_override():
    assert parse_key_path("stages[2].downsample.kernel") == ("stages", 2, "downsample", "kernel")
    assert parse_key_path("input_size[1]") == ("input_size", 1)
    assert parse_override("stages[0].mixer = pool") == (("stages", 0, "mixer"), "pool")
    assert parse_override("layer_scale_init=") == (("layer_scale_init",), None)
    assert parse_override("name=a=b") == (("name",), "a=b")
    for bad in ("", "[0]", "stages..mixer", "stages[x]", "a-b", "stages[0", ".stages", "stages.", "stages[0]mixer",
                "a.0", "stages[-1]"):
        with pytest.raises(SpecError, match="malformed key path"):
            parse_key_path(bad)


# ------------------------------------------------------------------------- plug-in kinds: nested and flat
def _stage(**kw):
    return {"name": "k", "stages": [{"depth": 1, "width": 32, **kw}]}


def test_nested_mixer_mapping_equals_todays_flat_keys():
    nested = load_spec(_stage(mixer={"type": "attention", "head_dim": 16}))
    flat = load_spec(_stage(mixer="attention", head_dim=16))
    assert nested == flat and nested.stages[0].mixer.head_dim == 16
    # a flat key the stage's mixer kind lacks is an error like any unknown key (issue 23: it was dropped)
    with pytest.raises(SpecError, match=r"stages\[0\]\.mixer_kernel: 'mixer_kernel' is a key of the repmixer "
                                        r"mixer, not of 'attention' \(value 5; its flat keys: head_dim\)"):
        load_spec(_stage(mixer="attention", mixer_kernel=5))
    # ... except a base spec's key for the mixer that a child spec or an override replaced
    assert load_spec(SPECS / "sa12.yaml", ["stages[3].mixer=repmixer"]).stages[3].mixer == RepMixerParams()
    with pytest.raises(SpecError, match=r"\(override\) stages\[0\]\.meta3d: 'meta3d' is a key of the meta4d"):
        load_spec(SPECS / "t8.yaml", ["stages[0].meta3d=2"])
    # a stage_defaults key of one mixer applies to that mixer's stages only
    mixed = load_spec({"name": "k", "stage_defaults": {"head_dim": 16},
                       "stages": [{"depth": 1, "width": 32, "mixer": "repmixer"},
                                  {"depth": 1, "width": 32, "mixer": "attention"}]})
    assert mixed.stages[1].mixer.head_dim == 16
    with pytest.raises(SpecError, match=r"stages\[0\]\.pool_size: kernel size 4 must be odd"):
        load_spec(_stage(mixer="attention", pool_size=4))
    # the mixer mapping's own value wins over a flat key (e.g. one from stage_defaults)
    spec = load_spec({"name": "k", "stage_defaults": {"mixer_kernel": 3},
                      "stages": [{"depth": 1, "width": 32, "mixer": {"type": "repmixer", "kernel": 5}}]})
    assert spec.stages[0].mixer.kernel == 5


def test_a_child_file_s_flat_key_of_another_mixer_is_an_error(tmp_path):
    # issue 23: a key an index patch adds to a base stage was dropped when the mixer came from the base
    for body, key, owner in (("base: sa12.yaml\nstages: {0: {meta3d: 1}}", "meta3d", "meta4d"),
                             ("base: efficientformer_l1.yaml\nstages: {0: {mixer_kernel: 5}}", "mixer_kernel", "repmixer"),
                             ("base: mobileone_s0.yaml\nstages: {1: {head_dim: 16}}", "head_dim", "attention")):
        child = write(tmp_path, "child.yaml", f"name: child\n{body.replace('base: ', f'base: {SPECS}/')}\n")
        with pytest.raises(SpecError, match=rf"child\.yaml:3 stages\[\d\]\.{key}: '{key}' is a key of the {owner} "):
            load_spec(child)
    # a middle file's key under the base's mixer is refused too; a base key under a newer mixer goes with it
    write(tmp_path, "mid.yaml", f"base: {SPECS}/sa12.yaml\nname: mid\nstages: {{0: {{head_dim: 16}}}}\n")
    with pytest.raises(SpecError, match=r"mid\.yaml:3 stages\[0\]\.head_dim: 'head_dim' is a key of the attention"):
        load_spec(write(tmp_path, "top.yaml", "base: mid.yaml\nname: top\n"))
    write(tmp_path, "att.yaml", f"base: {SPECS}/sa12.yaml\nname: att\nstages: {{0: {{mixer: attention, head_dim: 16}}}}\n")
    spec = load_spec(write(tmp_path, "rm.yaml", "base: att.yaml\nname: rm\nstages: {0: {mixer: repmixer}}\n"))
    assert spec.stages[0].mixer == RepMixerParams()


def test_keys_a_kind_does_not_read_are_errors_unless_default_or_inherited(tmp_path):
    # issue 23: FFN keys on a mobileone stage (no FFN) and ffn/ffn_kernel on meta4d (a Conv-BN MLP) were ignored
    for key, value in (("ffn", "mlp"), ("ffn_kernel", 3), ("mlp_ratio", 3)):
        with pytest.raises(SpecError, match=rf"stages\[1\]\.{key}: '{key}' is not a key of a 'mobileone' stage "
                                            rf"\(value '?{value}'?; .*valid keys: depth, width, mixer, .*se_blocks$"):
            load_spec(SPECS / "mobileone_s0.yaml", [f"stages[1].{key}={value}"])
    child = write(tmp_path, "c.yaml", f"base: {SPECS}/mobileone_s0.yaml\nname: c\nstages: {{1: {{ffn_kernel: 3}}}}\n")
    with pytest.raises(SpecError, match=r"c\.yaml:3 stages\[1\]\.ffn_kernel: 'ffn_kernel' is not a key"):
        load_spec(child)
    with pytest.raises(SpecError, match=r"stages\[0\]\.ffn: 'ffn' is not a key of a 'meta4d' stage"):
        load_spec(SPECS / "efficientformer_l1.yaml", ["stages[0].ffn=mlp"])
    assert load_spec(SPECS / "efficientformer_l1.yaml", ["stages[0].mlp_ratio=3"]).stages[0].mlp_ratio == 3
    # not refused: a dump (every key explicit, at its default), stage_defaults for the stages that have an
    # FFN, and a base stage's FFN keys under a mixer an inheriting file or an override replaced
    mo = load_spec(SPECS / "mobileone_s0.yaml")
    assert load_spec(spec_to_dict(mo)) == mo
    mixed = load_spec({"name": "m", "stage_defaults": {"mlp_ratio": 2, "ffn_kernel": 3},
                       "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
                                  {"depth": 1, "width": 32, "mixer": {"type": "mobileone", "stride": 1}}]})
    assert (mixed.stages[0].ffn_kernel, mixed.stages[1].ffn_kernel, mixed.stages[1].mlp_ratio) == (3, 7, 4.0)
    t12 = load_spec(SPECS / "t12.yaml", ["stages[0].mixer={type: mobileone, stride: 1}"])
    assert t12.stages[0].mlp_ratio == 4.0 and t12.stages[1].mlp_ratio == 3.0
    sub = write(tmp_path, "sub.yaml", f"base: {SPECS}/t12.yaml\nname: sub\nstages: {{0: {{mixer: {{type: mobileone, "
                                      f"stride: 1}}}}}}\n")
    assert load_spec(sub).stages[0] == t12.stages[0]


def test_save_spec_is_atomic(tmp_path, full_disk):
    """issue 23: a full disk left a truncated spec (train's '.spec.yaml.PID.tmp.yaml' too)."""
    path = tmp_path / "s.yaml"
    path.write_text("name: old\n")
    with pytest.raises(Exception, match=rf"^'{path}': cannot write: No space left on device; nothing was replaced$"):
        save_spec(load_spec(SPECS / "t8.yaml"), path)
    assert path.read_text() == "name: old\n" and [p.name for p in tmp_path.iterdir()] == ["s.yaml"]


def test_override_into_a_mixer_given_by_name():
    spec = load_spec(SPECS / "sa12.yaml", ["stages[3].mixer.head_dim=64"])
    assert spec.stages[3].mixer == AttentionParams(head_dim=64) and spec.stages[2].mixer == RepMixerParams()


def test_a_default_for_another_kind_does_not_merge():
    spec = load_spec({"name": "k", "stage_defaults": {"downsample": {"type": "replk", "kernel": 7, "small_kernel": 3}},
                      "stages": [{"depth": 1, "width": 16, "mixer": "pool"},
                                 {"depth": 1, "width": 24, "mixer": "pool", "downsample": {"type": "conv"}},
                                 {"depth": 1, "width": 48, "mixer": "pool", "downsample": {"kernel": 5}}]})
    assert spec.stages[1].downsample == ConvDownsample()
    assert spec.stages[2].downsample == DownsampleSpec("replk", 5, 3, 2)


def test_an_unknown_kind_names_the_family_choices():
    with pytest.raises(SpecError, match=r"stages\[0\]\.mixer\.type: invalid value 'mobilone' \(did you mean "
                                        r"'mobileone'\?\); valid: repmixer, attention, pool, mobileone"):
        load_spec(_stage(mixer={"type": "mobilone"}))
    with pytest.raises(SpecError, match=r"stages\[0\]\.mixer: missing required key 'type'"):
        load_spec(_stage(mixer={"kernel": 3}))
