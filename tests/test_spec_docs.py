"""The key reference in ``docs/SPEC.md`` is generated from the spec dataclasses' field metadata (the same
metadata the validator and ``archc schema`` read), so the documentation cannot drift from the code.

After changing a key in ``archc/spec/model.py`` regenerate the reference with

    ARCHC_UPDATE_DOCS=1 python -m pytest tests/test_spec_docs.py

which rewrites the text between the ``<!-- keys:begin -->`` and ``<!-- keys:end -->`` markers (and the
README's compact table between ``<!-- spec-keys:begin -->`` and ``<!-- spec-keys:end -->``).
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from typing import Any, Literal, Tuple, Union, get_args, get_origin

import pytest

from archc.blocks import FAMILIES
from archc.spec import Spec, StageSpec, load_spec
from archc.spec.convert import hints, public_fields

from conftest import ROOT

DOC = ROOT / "docs" / "SPEC.md"
BEGIN, END = "<!-- keys:begin -->", "<!-- keys:end -->"
_WHERE = {"mixer": "stages[i].mixer", "downsample": "stages[i].downsample", "pos_enc": "stages[i].pos_enc",
          "stem": "stem", "head": "head"}
#: (dataclass, title, key prefix, key suffix): the spec, a stage, then every kind of every plug-in family
SECTIONS = [(Spec, "Top level", "", ""), (StageSpec, "`stages[i]` (and `stage_defaults`)", "stages[i].", "")] + [
    (kind.params, f"`{_WHERE[key]}` = `{kind.name}`", f"{key}.", f" ({kind.name})")
    for key, family in FAMILIES.items() for kind in family.kinds()]
_NONE = type(None)


def _type(tp: Any, meta: dict) -> str:
    origin = get_origin(tp)
    if origin is Union:
        inner = [a for a in get_args(tp) if a is not _NONE]
        return _type(inner[0], meta) + " or null"
    if "family" in meta:
        return "a kind's name or a mapping `{type: NAME, ...}`"
    if dataclasses.is_dataclass(tp):
        short = " (or its `type` as a string)" if "type" in hints(tp) else ""
        return f"mapping{short}"
    if origin is Literal or "choices" in meta:
        return "one of " + ", ".join(f"`{c}`" for c in (meta.get("choices") or get_args(tp)))
    if origin in (tuple, Tuple):
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return "list of stages"
        return f"{_type(args[0], meta)} or [h, w]"
    return {int: "integer", float: "number", bool: "boolean", str: "string"}[tp]


def _range(meta: dict) -> str:
    parts = []
    if "family" in meta:
        parts.append(", ".join(meta["family"]))
    if "min" in meta:
        parts.append(f"{meta['min']} to {meta['max']}")
    if meta.get("odd"):
        parts.append("odd")
    return ", ".join(parts)


def _default(f: dataclasses.Field) -> str:
    if f.metadata.get("required"):
        return "**required**"
    d = f.default
    if dataclasses.is_dataclass(d):
        return f"`{d.type}`"
    if d is None:
        return "`null`"
    if isinstance(d, tuple):
        return f"`{list(d)}`"
    if isinstance(d, bool):
        return f"`{str(d).lower()}`"
    return f"`{d}`"


def key_reference() -> str:
    out = []
    for cls, title, prefix, suffix in SECTIONS:
        out.append(f"### {title}\n\n{(cls.__doc__ or '').strip()}\n")
        out.append("| key | type | default | valid | meaning |\n|---|---|---|---|---|")
        for f in public_fields(cls):
            meta = dict(f.metadata)
            text = meta.get("help", "").replace("|", "\\|")
            out.append(f"| `{prefix}{f.name}`{suffix} | {_type(hints(cls)[f.name], meta)} | {_default(f)} | "
                       f"{_range(meta)} | {text} |")
        if cls is StageSpec:
            for key, owners in StageSpec.flat_keys().items():
                kind, fname = owners[0]
                out.append(f"| `stages[i].{key}` | | | | today's flat form of `mixer.{fname}` ({kind.name}): "
                           "used where the stage's mixer has it, unless the mixer mapping sets it |")
        if cls is Spec:
            out.append("| `base` | string | — | | a spec file to inherit from, relative to this file, or a shipped model name |")
            out.append("| `stage_defaults` | mapping | — | | keys of `stages[i]` every stage gets unless it sets "
                       "them (`downsample`: not stage 0 unless it sets one) |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def compact_reference() -> str:
    """Every key with its default, in one table (the README's overview; docs/SPEC.md has the details)."""
    out = ["| key | default | valid |", "|---|---|---|"]
    for cls, _, prefix, suffix in SECTIONS:
        for f in public_fields(cls):
            meta = dict(f.metadata)
            tp = hints(cls)[f.name]
            valid = _range(meta)
            if get_origin(tp) is Literal or "choices" in meta:
                valid = ", ".join(meta.get("choices") or get_args(tp))
            elif not valid:
                valid = _type(tp, meta)
            out.append(f"| `{prefix}{f.name}`{suffix} | {_default(f)} | {valid} |")
        if cls is Spec:
            out.append("| `base` | — | a spec file to inherit from, or a shipped model name |")
            out.append("| `stage_defaults` | — | keys of `stages[i]` for every stage |")
    return "\n".join(out) + "\n"


def _regenerate(doc, begin: str, end: str, body: str) -> None:
    text = doc.read_text(encoding="utf-8")
    assert begin in text and end in text, f"{doc} lacks the {begin} ... {end} markers"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{begin}\n{body}{end}{tail}"
    if os.environ.get("ARCHC_UPDATE_DOCS") == "1":
        doc.write_text(new, encoding="utf-8")
        return
    assert new == text, f"{doc.name}'s key reference is stale: ARCHC_UPDATE_DOCS=1 python -m pytest tests/test_spec_docs.py"


def test_spec_md_key_reference_is_current():
    _regenerate(DOC, BEGIN, END, key_reference())


def test_readme_key_table_is_current():
    _regenerate(ROOT / "README.md", "<!-- spec-keys:begin -->", "<!-- spec-keys:end -->", compact_reference())


def test_every_key_is_documented():
    text = DOC.read_text(encoding="utf-8")
    for cls, _, prefix, suffix in SECTIONS:
        for f in public_fields(cls):
            assert f"`{prefix}{f.name}`{suffix}" in text
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


def _yaml_blocks(path):
    return re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("doc", ["docs/SPEC.md", "README.md"])
def test_yaml_examples_in_the_docs_load(doc, tmp_path):
    """Every complete YAML example in the docs (one with ``name:`` or ``base:``) loads; ``base:`` examples are
    resolved against specs/ and those marked ``# error`` must fail as they say."""
    import shutil

    from archc.errors import SpecError
    for spec in (ROOT / "specs").glob("*.yaml"):
        shutil.copy(spec, tmp_path / spec.name)
    blocks = _yaml_blocks(ROOT / doc)
    checked = 0
    for i, block in enumerate(blocks):
        if not re.search(r"^(name|base):", block, flags=re.M):
            continue
        path = tmp_path / f"example{i}.yaml"
        path.write_text(block, encoding="utf-8")
        expect = re.search(r"# error: (.*)", block)
        if expect:
            with pytest.raises(SpecError, match=re.escape(expect.group(1).strip())):
                load_spec(path)
        else:
            load_spec(path)
        checked += 1
    assert checked, f"{doc} has no complete YAML example"


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python API example runs as written (in a scratch directory holding specs/)."""
    import shutil
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README's Python API section has no python example"
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("archc name: fastvit_t8")
