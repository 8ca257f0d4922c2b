"""The spec language's data model: frozen dataclasses whose field metadata *is* the schema.

Field metadata keys (read by the validator and the JSON Schema writer, so they cannot drift apart):
``help`` (one line for editors), ``min``/``max`` (inclusive bounds), ``odd`` (kernel sizes),
``choices`` (closed set of names, usually a registry), ``family`` (a plug-in family of ``archc.blocks``:
the value is a kind's name or a mapping ``{type: NAME, ...}`` converted with that kind's parameters).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Optional, Tuple

from ..blocks import DOWNSAMPLES, HEADS, MIXERS, POS_ENCS, STEMS
from ..blocks.kind import MAX_DEPTH, MAX_KERNEL, MAX_RES, MAX_WIDTH, opt, req  # noqa: F401  (re-exported)
from ..blocks.stems import MobileOneStem
from ..blocks.heads import MobileOneSEHead
from ..errors import SpecErrorList
from .registry import ACTIVATIONS, NORMS


@dataclass(frozen=True)
class StageSpec:
    """One stage: optional downsample, optional positional encoding, then ``depth`` blocks."""

    depth: int = req("number of blocks", min=1, max=MAX_DEPTH)
    width: int = req("channels in this stage", min=1, max=MAX_WIDTH)
    mixer: Any = req("token mixer / block kind: its name, or a mapping {type: NAME, ...its keys}", family=MIXERS)
    mlp_ratio: float = opt(4.0, "FFN hidden width / stage width", min=0.0625, max=16.0)
    ffn: Literal["convffn", "mlp"] = opt(
        "convffn", "convffn: depthwise conv + BN, fc1, act, fc2 (FastViT); mlp: norm, fc1, act, fc2 (MetaFormer)",
        choices=("convffn", "mlp"))
    ffn_kernel: int = opt(7, "convffn: depthwise kernel size", min=1, max=MAX_KERNEL, odd=True)
    conv_branches: int = opt(1, "train-time kxk conv branches of the stage's MobileOne blocks (RepMixer, replk "
                             "downsample, mobileone)", min=0, max=16)
    scale_branch: bool = opt(True, "train-time 1x1 scale branch of the stage's MobileOne blocks")
    downsample: Optional[Any] = opt(
        None, "patch embedding at the stage start (null: none; stage 0 has none unless set)", family=DOWNSAMPLES)
    pos_enc: Optional[Any] = opt(None, "positional encoding after the downsample (null: none)", family=POS_ENCS)

    @classmethod
    def flat_keys(cls) -> Dict[str, Any]:
        """Today's flat mixer keys (``head_dim: 32`` beside ``mixer: attention``): the mixers' search keys."""
        return MIXERS.search_keys()

    @classmethod
    def accepted_keys(cls) -> Tuple[str, ...]:
        from .convert import public_fields
        return tuple(f.name for f in public_fields(cls)) + tuple(cls.flat_keys())

    @classmethod
    def pre_convert(cls, data: dict, path, loc) -> dict:
        """Move flat mixer keys into the mixer mapping where the stage's mixer kind has them (a key the
        mapping sets itself wins); each flat value is still checked where it stands. A flat key of another
        mixer, or a key the kind does not read (``unused_keys``) set off its default, is an error, unless an
        older layer (a base file) set it for a mixer that a newer one replaced: then it goes with that mixer."""
        from .convert import _show, convert_value, hints
        flat = cls.flat_keys()
        found = {k: data[k] for k in data if k in flat}
        data = {k: v for k, v in data.items() if k not in flat}
        errors = SpecErrorList()
        for key, value in found.items():
            owner, fname = flat[key][0]
            f = {f.name: f for f in dataclasses.fields(owner.params)}[fname]
            with errors.collect():
                found[key] = convert_value(hints(owner.params)[fname], value, dict(f.metadata), path + (key,), loc)
        errors.raise_any()
        raw_mixer = data.get("mixer")
        mixer = {"type": raw_mixer} if isinstance(raw_mixer, str) else raw_mixer
        if not isinstance(mixer, dict) or not isinstance(mixer.get("type"), str) or mixer["type"] not in MIXERS:
            return data  # the converter reports the mixer itself
        kind = MIXERS[mixer["type"]]
        older = _older_than_mixer(loc, path, isinstance(raw_mixer, dict) and "type" in raw_mixer)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for key in kind.unused_keys:
            if key in data and data[key] != defaults[key]:
                if older(key):
                    del data[key]
                    continue
                valid = [k for k in cls.accepted_keys() if k not in kind.unused_keys
                         and (k not in flat or k in kind.search_keys)]
                raise loc.error(path + (key,), f"'{key}' is not a key of a '{kind.name}' stage (value "
                                               f"{_show(data[key])}; its blocks do not read it); valid keys: "
                                               f"{', '.join(valid)}")
        if not found:
            return data
        mixer = dict(mixer)
        for key, value in found.items():
            fname = kind.search_keys.get(key)
            if fname is None:
                if older(key):
                    continue
                takes = ", ".join(kind.search_keys) or "none"
                owners = ", ".join(o.name for o, _ in flat[key])
                raise loc.error(path + (key,), f"'{key}' is a key of the {owners} mixer, not of '{mixer['type']}' "
                                               f"(value {_show(value)}; its flat keys: {takes})")
            if fname not in mixer:
                mixer[fname] = value
        data["mixer"] = mixer
        return data


def _older_than_mixer(loc, path, typed: bool):
    """``older(key)``: whether the stage's ``key`` came from an older layer than its mixer (a base file's key
    under an inheriting file's or an override's mixer). Layers count from the deepest base; overrides are
    newest; a key without an origin (Python data) belongs to the top layer."""
    origins = getattr(loc, "origins", {})
    layers = tuple(getattr(loc, "layers", ()))

    def age(p) -> int:
        file = str(origins[p][0]) if p in origins else ""
        if file.endswith("(override)"):
            return len(layers)
        return layers.index(file) if file in layers else len(layers) - 1

    mixer_age = age(path + ("mixer", "type") if typed else path + ("mixer",))
    return lambda key: age(path + (key,)) < mixer_age


@dataclass(frozen=True)
class Spec:
    """A whole architecture. ``source`` records where it was loaded from (for messages only)."""

    name: str = req("model name", printable=True, max_len=200)
    stages: Tuple[StageSpec, ...] = req("the stages, first to last")
    num_classes: int = opt(1000, "classifier outputs", min=1, max=100_000)
    in_chans: int = opt(3, "input channels", min=1, max=64)
    input_size: Tuple[int, int] = opt((256, 256), "input resolution: an int or [height, width]",
                                      min=8, max=MAX_RES)
    activation: str = opt("gelu", "activation in blocks, stem and head", choices=tuple(ACTIVATIONS))
    norm: str = opt("batchnorm", "norm before attention, pooling and mlp FFNs (MobileOne and RepMixer "
                    "branches always use BatchNorm)", choices=tuple(NORMS))
    layer_scale_init: Optional[float] = opt(1e-5, "initial layer scale (null: no layer scale)",
                                            min=0.0, max=10.0)
    drop_path_rate: float = opt(0.0, "stochastic depth at the last block, linear from 0", min=0.0, max=1.0)
    drop_rate: float = opt(0.0, "dropout before the classifier", min=0.0, max=1.0)
    stem: Any = opt(MobileOneStem(), "the input stem", family=STEMS)
    head: Any = opt(MobileOneSEHead(), "the classifier head", family=HEADS)
    source: Optional[str] = field(default=None, compare=False, metadata={"internal": True})

    @property
    def stem_width(self) -> int:
        return self.stem.width if self.stem.width is not None else self.stages[0].width

    @property
    def depths(self) -> Tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def widths(self) -> Tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def mixers(self) -> Tuple[str, ...]:
        return tuple(s.mixer.type for s in self.stages)
