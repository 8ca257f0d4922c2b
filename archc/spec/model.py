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
        mapping sets itself wins); each flat value is still checked where it stands."""
        from .convert import convert_value, hints
        flat = cls.flat_keys()
        found = {k: data[k] for k in data if k in flat}
        if not found:
            return data
        data = {k: v for k, v in data.items() if k not in flat}
        for key, value in found.items():
            owner, fname = flat[key][0]
            f = {f.name: f for f in dataclasses.fields(owner.params)}[fname]
            found[key] = convert_value(hints(owner.params)[fname], value, dict(f.metadata), path + (key,), loc)
        mixer = data.get("mixer")
        mixer = {"type": mixer} if isinstance(mixer, str) else mixer
        if not isinstance(mixer, dict) or mixer.get("type") not in MIXERS:
            return data  # the converter reports the mixer itself
        kind = MIXERS[mixer["type"]]
        mixer = dict(mixer)
        for key, value in found.items():
            fname = kind.search_keys.get(key)
            if fname is None:
                origins = getattr(loc, "origins", {})
                key_from = str(origins.get(path + (key,), ("", None))[0])
                mixer_from = str(origins.get(path + ("mixer",), ("", None))[0])
                if key_from and not key_from.endswith("(override)") and key_from != mixer_from:
                    continue  # a base spec's key for the mixer a child spec or an override replaced: it goes too
                takes = ", ".join(kind.search_keys) or "none"
                owners = ", ".join(o.name for o, _ in flat[key])
                raise loc.error(path + (key,), f"'{key}' is a key of the {owners} mixer, not of "
                                               f"'{mixer['type']}' (its flat keys: {takes})")
            if fname not in mixer:
                mixer[fname] = value
        data["mixer"] = mixer
        return data


@dataclass(frozen=True)
class Spec:
    """A whole architecture. ``source`` records where it was loaded from (for messages only)."""

    name: str = req("model name")
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
