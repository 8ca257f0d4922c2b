"""The plug-in registries (archc.blocks): a kind is accepted only whole, and every record is consistent."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from archc.blocks import FAMILIES, Family, Kind
from archc.blocks.kind import opt, type_field


@dataclass(frozen=True)
class _Good:
    type: str = type_field("good")
    size: int = opt(3, "a size", min=1, max=9)


@dataclass(frozen=True)
class _NoType:
    size: int = opt(3, "a size")


def test_register_refuses_a_kind_without_its_type_field_or_twice():
    fam = Family("test", "a test family")
    fam.register(Kind("good", "ok", _Good, build=lambda ctx: None))
    with pytest.raises(ValueError, match="registered twice"):
        fam.register(Kind("good", "ok", _Good, build=lambda ctx: None))
    with pytest.raises(ValueError, match="first field must be type_field"):
        fam.register(Kind("notype", "no", _NoType, build=lambda ctx: None))
    with pytest.raises(ValueError, match="first field must be type_field"):
        fam.register(Kind("other", "mismatched name", _Good, build=lambda ctx: None))
    assert list(fam) == ["good"] and fam.abbrev("good") == "GO"


@pytest.mark.parametrize("key", list(FAMILIES))
def test_every_shipped_kind_is_a_complete_record(key):
    for kind in FAMILIES[key].kinds():
        fields = {f.name: f for f in dataclasses.fields(kind.params)}
        assert kind.help and kind.abbrev and callable(kind.build)
        assert all(f.metadata.get("help") for f in fields.values()), kind.name
        assert all(fname in fields for fname in kind.search_keys.values()), kind.name
        default = kind.params()  # every parameter has a default: a kind's name alone is a valid value
        assert default.type == kind.name
