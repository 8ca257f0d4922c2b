"""Property tests: whatever data or text reaches ``load_spec``, only ``SpecError`` escapes.

Strategies mutate the raw data of the shipped specs (replace a value anywhere by random data, delete a
key, add one) and feed random YAML text. An accepted spec must survive a dump/load round trip and, when
small, build. Every error is a one-line ``SpecError``.
"""
from __future__ import annotations

import copy
import math
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc.errors import SpecError
from archc.spec import load_spec, spec_to_dict, spec_to_yaml
from archc.spec.rules import estimate_params
from archc.spec.yamlsrc import parse_yaml

from conftest import shipped_specs

#: ARCHC_FUZZ_EXAMPLES=5000 explores harder (the default keeps the suite fast)
FUZZ = settings(max_examples=int(os.environ.get("ARCHC_FUZZ_EXAMPLES", 150)), deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: raw data of each shipped spec, every key explicit (no base:)
RAW = {p.stem: spec_to_dict(load_spec(p)) for p in shipped_specs()}

names = st.sampled_from(["depth", "width", "mixer", "kernel", "type", "stages", "name", "repmixer", "attention",
                         "pool", "conv", "replk", "head_dim", "base", "stage_defaults", "x", "", "0", "2"])
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-5, max_value=40), st.integers(), st.sampled_from([0, 1, 2, 3, 7, 32, 64, 8192, 10 ** 12]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1e-6, 2.0, 2.5]),
    names, st.text(max_size=8),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(names, inner, max_size=4)), max_leaves=12)


def _paths(node, prefix=()):
    """Every key path inside raw spec data (mapping keys and list indexes)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(node, path):
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated_specs(draw):
    data = copy.deepcopy(RAW[draw(st.sampled_from(sorted(RAW)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if not path:
            continue
        parent = _get(data, path[:-1])
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "delete" and isinstance(parent, list) and len(parent) > 1:
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(names)] = draw(values)
    return data


TEXTS = {p.name: p.read_text(encoding="utf-8") for p in shipped_specs()}


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory):
    """The shipped specs, as bases a mutated file may still name."""
    d = tmp_path_factory.mktemp("specs")
    for name, original in TEXTS.items():
        (d / name).write_text(original, encoding="utf-8")
    return d


def _check_accepted_or_spec_error(load):
    try:
        spec = load()
    except SpecError as exc:
        text = str(exc)
        lines = [str(e) for e in getattr(exc, "errors", [exc])]  # SpecErrors: one line per mistake
        assert text and all(line and "\n" not in line for line in lines), f"each SpecError is one line: {text!r}"
        return None
    # accepted: must round-trip, and small ones must build
    assert load_spec(yaml.safe_load(spec_to_yaml(spec))) == spec
    if estimate_params(spec) < 3_000_000 and math.prod(spec.input_size) <= 512 * 512:
        archc.build(spec)
    return spec


@FUZZ
@given(mutated_specs())
def test_mutated_spec_data_raises_only_spec_error(data):
    _check_accepted_or_spec_error(lambda: load_spec(data))


@FUZZ
@given(mutated_specs())
def test_mutated_spec_yaml_raises_only_spec_error(spec_dir, data):
    try:
        text = yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
    except yaml.YAMLError:
        return
    p = spec_dir / "dumped.yaml"
    p.write_text(text, encoding="utf-8")
    _check_accepted_or_spec_error(lambda: load_spec(p))


yaml_alphabet = st.sampled_from(list("ab01:-[]{},&*!|>'\"#?%@`\n\t <=.~") + ["name: ", "stages:", "  - ", "depth: 2",
                                "!!python/object:os.system", "&a ", "*a", "<<: ", "!!binary", "2020-13-45", "base: "])


@FUZZ
@given(st.one_of(st.text(max_size=60), st.lists(yaml_alphabet, max_size=30).map("".join)))
def test_random_yaml_text_raises_only_spec_error(spec_dir, text):
    p = spec_dir / "random.yaml"
    p.write_bytes(text.encode("utf-8", errors="surrogatepass"))  # lone surrogates: invalid UTF-8 on purpose
    _check_accepted_or_spec_error(lambda: load_spec(p))


@st.composite
def mutated_texts(draw):
    """A shipped spec's text with a few characters deleted, replaced or inserted (indentation, brackets, ...)."""
    name = draw(st.sampled_from(sorted(TEXTS)))
    text = TEXTS[name]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["delete", "replace", "insert"]))
        ch = draw(yaml_alphabet)
        if op == "delete":
            text = text[:i] + text[i + 1:]
        elif op == "replace":
            text = text[:i] + ch + text[i + 1:]
        else:
            text = text[:i] + ch + text[i:]
    return name, text


@FUZZ
@given(mutated_texts())
def test_mutated_spec_text_raises_only_spec_error(spec_dir, case):
    name, text = case
    p = spec_dir / f"mutated_{name}"
    p.write_text(text, encoding="utf-8")
    _check_accepted_or_spec_error(lambda: load_spec(p))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["stages[0].mixer", "stages[2].width", "input_size", "stem.kernel",
                                           "stages[9].depth", "head", "stages", "x.y", "stages[1].downsample",
                                           "name", "stage_defaults.mixer", "stages[0][0]", "base"]),
                          st.one_of(st.text(max_size=12), st.sampled_from(["attention", "7", "[1, 2]", "{a: 1}",
                                                                            "null", "2020-13-45", "!!binary x"]))),
                min_size=1, max_size=3))
def test_random_overrides_raise_only_spec_error(pairs):
    overrides = [f"{k}={v}" for k, v in pairs]
    _check_accepted_or_spec_error(lambda: load_spec(RAW["t8"], overrides))
