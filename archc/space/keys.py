"""The space language's stage keys, one record each: the values a key takes (checked with the spec field's own
metadata), where it applies, how a point writes it into a stage and how a spec's value is read back.

``compile.py`` (checking and distributions), ``points.py`` (point -> spec) and ``match.py`` (spec -> point) all
loop over ``STAGE_KEY_TABLE``. A stage's plug-in parts (its mixer, downsample and positional encoding) join the
table through their families: a part's chooser key picks the kind (``mixer``, ``pos_enc``), and each kind's
``search_keys`` set its parameters (``head_dim``, ``downsample_kernel``, ...). No kind is named here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..blocks import DOWNSAMPLES, MIXERS, POS_ENCS, Family
from ..spec.convert import hints, public_fields
from ..spec.model import Spec, StageSpec

#: a key that means nothing in this stage of this spec (a mixer key of another kind, no positional encoding)
INACTIVE = object()
#: the choice of an optional part that removes it
NONE = "none"


@dataclass(frozen=True)
class Part:
    """A stage field holding a kind of ``family``; ``chooser``: the space key that picks the kind (None: the base
    spec's kind stays); ``optional``: ``none`` is a choice (the stage then has no such part)."""

    field: str
    family: Family
    chooser: Optional[str] = None
    optional: bool = False

    def choices(self) -> Tuple[str, ...]:
        return ((NONE,) if self.optional else ()) + tuple(self.family)


#: the stage's parts, in the order their keys are listed and written
PARTS = (Part("mixer", MIXERS, chooser="mixer"), Part("downsample", DOWNSAMPLES),
         Part("pos_enc", POS_ENCS, chooser="pos_enc", optional=True))


@dataclass(frozen=True)
class StageKey:
    """One stage key. ``value_type() -> (type, field metadata)`` its values are checked with; ``applies(base,
    stage) -> None or why not``; ``read(spec, stage)`` its value in a spec (``INACTIVE`` where it means nothing);
    ``part`` for a part's chooser or parameter keys (written by ``write_part``), else ``write(stage_data, value,
    previous_stage_data) -> None or why the point is infeasible``. ``whole_numbers``: a float key whose integer
    ranges are integer distributions (``width_mult: {low: 1, high: 4}``); ``yields_to``: keys that win over this
    one where a point sets both (a shared ``width`` over a stage's ``width_mult``)."""

    name: str
    help: str
    value_type: Callable[[], Tuple[Any, Dict[str, Any]]]
    read: Callable[[Spec, int], Any]
    write: Optional[Callable[[dict, Any, Optional[dict]], Optional[str]]] = None
    applies: Callable[[dict, int], Optional[str]] = lambda base, stage: None
    part: Optional[Part] = None
    whole_numbers: bool = False
    yields_to: Tuple[str, ...] = ()


def _stage_field(name: str) -> StageKey:
    f = {f.name: f for f in public_fields(StageSpec)}[name]

    def write(stage: dict, value: Any, previous: Optional[dict]) -> None:
        stage[name] = value

    return StageKey(name, f.metadata.get("help", ""), lambda: (hints(StageSpec)[name], dict(f.metadata)),
                    lambda spec, i: getattr(spec.stages[i], name), write)


def _write_width_mult(stage: dict, value: Any, previous: Optional[dict]) -> Optional[str]:
    width = previous["width"] * value
    stage["width"] = int(round(width))
    if abs(width - round(width)) > 1e-9:
        return f"width = {previous['width']} x {value} is not a whole number of channels"
    return None


WIDTH_MULT = StageKey(
    "width_mult", "width as a multiple of the previous stage's width (stages after the first)",
    lambda: (float, {"min": 0.0625, "max": 64.0}),
    lambda spec, i: spec.stages[i].width / spec.stages[i - 1].width,
    _write_width_mult, applies=lambda base, i: None if i > 0 else "stage 0 has no previous stage",
    whole_numbers=True, yields_to=("width",))


def _chooser(part: Part) -> StageKey:
    def read(spec: Spec, i: int) -> Any:
        params = getattr(spec.stages[i], part.field)
        return params.type if params is not None else NONE

    return StageKey(part.chooser, f"{part.family.help}: " + ("none or " if part.optional else "") + "a kind",
                    lambda: (str, {"choices": part.choices()}), read, part=part)


def _part_key(part: Part, key: str) -> StageKey:
    def read(spec: Spec, i: int) -> Any:
        params = getattr(spec.stages[i], part.field)
        fname = part.family[params.type].search_keys.get(key) if params is not None else None
        return getattr(params, fname) if fname is not None else INACTIVE

    def value_type() -> Tuple[Any, Dict[str, Any]]:
        cls, f = part.family.params_field(key)
        return hints(cls)[f.name], dict(f.metadata)

    def applies(base: dict, i: int) -> Optional[str]:
        if part.chooser is None and base["stages"][i].get(part.field) is None:
            return f"stages[{i}] of the base has no {part.field}"
        return None

    help_ = "; ".join(f"{kind.name}: {fname}" for kind, fname in part.family.search_keys()[key])
    return StageKey(key, f"a {part.family.name} parameter ({help_})", value_type, read, applies=applies, part=part)


def _table() -> Tuple[StageKey, ...]:
    """The order keys are listed in, suggested in (an Optuna trial's parameter order) and written in."""
    mixer, downsample, pos_enc = PARTS
    keys: List[StageKey] = [_stage_field("depth"), _stage_field("width"), WIDTH_MULT, _chooser(mixer),
                            _stage_field("mlp_ratio")]
    keys += [_part_key(mixer, k) for k in mixer.family.search_keys()]
    keys += [_stage_field("ffn"), _stage_field("ffn_kernel"), _stage_field("conv_branches")]
    keys += [_part_key(downsample, k) for k in downsample.family.search_keys()]
    keys += [_chooser(pos_enc)] + [_part_key(pos_enc, k) for k in pos_enc.family.search_keys()]
    return tuple(keys)


STAGE_KEY_TABLE: Tuple[StageKey, ...] = _table()
STAGE_KEY_RECORDS: Dict[str, StageKey] = {k.name: k for k in STAGE_KEY_TABLE}


def write_part(stage: dict, part: Part, values: Dict[str, Any]) -> None:
    """Set a stage's ``part`` from a point's values of that stage: the chooser's kind (another kind starts from its
    own defaults; ``none`` removes the part), then the kind's search keys; a block kind's ``unused_keys`` leave the
    stage (a shared ``mlp_ratio`` means nothing to a stage without an FFN)."""
    raw = stage.get(part.field)
    current = {"type": raw} if isinstance(raw, str) else (dict(raw) if raw else None)
    if part.chooser is not None and part.chooser in values:
        choice = values[part.chooser]
        if choice == NONE:
            current = None
        elif current is None or current.get("type") != choice:
            current = {"type": choice}
    if current is not None:
        kind = part.family[current["type"]]
        for key, fname in kind.search_keys.items():
            if key in values:
                current[fname] = values[key]
        for key in kind.unused_keys:
            stage.pop(key, None)
    stage[part.field] = current
