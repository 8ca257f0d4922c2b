"""A *kind* is one plug-in of the spec language: a token mixer / block, a stem, a downsample, a head or a
positional encoding, defined in one place. The spec schema, validator, JSON Schema, docs, builder,
search space and reparameterization scope all read these records, so adding a kind is adding a record.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

MAX_KERNEL = 31
MAX_WIDTH = 8192
MAX_DEPTH = 128
MAX_RES = 4096


def opt(default, help: str, **constraints):
    """A dataclass field with a default, a help line and validation constraints."""
    return field(default=default, metadata={"help": help, **constraints})


def req(help: str, **constraints):
    """A required dataclass field with a help line and validation constraints."""
    return field(metadata={"help": help, "required": True, **constraints})


def type_field(name: str):
    """The ``type`` field of a kind's parameters: fixed to the kind's name (it selects the kind)."""
    return field(default=name, metadata={"help": f"`{name}`", "choices": (name,)})


@dataclass
class CheckContext:
    """What a kind's ``check`` sees: the spec, where the kind sits, and ``fail(key_path, message)``
    (key path relative to the owning stage for block kinds, to the spec for the others)."""

    spec: Any
    params: Any
    fail: Callable[[Tuple, str], Exception]
    stage: Any = None
    index: Optional[int] = None
    in_chs: int = 0


@dataclass
class BuildContext:
    """What a kind's ``build`` gets: the spec, the stage (block, downsample and pos_enc kinds), input
    width, the spec's activation/norm factories and the stage's stochastic-depth rates."""

    spec: Any
    params: Any
    act: Callable
    norm: Callable
    in_chs: int
    stage: Any = None
    index: Optional[int] = None
    drop_rates: Tuple[float, ...] = ()


@dataclass(frozen=True)
class Kind:
    """One kind of a family.

    - ``params``: a frozen dataclass (fields with ``opt``/``req`` metadata, first field ``type_field``);
    - ``build(ctx) -> nn.Module`` (heads: ``(final_conv or None, head)``; block kinds: the whole stage);
    - ``check(ctx)``: raise through ``ctx.fail`` for combinations that cannot be built;
    - ``search_keys``: search-space key -> params field (block kinds also accept them as flat stage keys,
      today's form ``head_dim: 32`` next to ``mixer: attention``);
    - ``out_size(params, size)``: spatial size after it (stems, downsamples, block stages);
    - ``abbrev``: short name for tables and search reports.
    """

    name: str
    help: str
    params: type
    build: Callable[[BuildContext], Any]
    check: Optional[Callable[[CheckContext], None]] = None
    search_keys: Mapping[str, str] = field(default_factory=dict)
    abbrev: str = ""
    out_size: Callable[[Any, int], int] = lambda params, size: size
    #: block kinds: the blocks change width and resolution themselves (the stage takes no downsample)
    own_downsample: bool = False
    #: block kinds: module classes that timm's/Apple's hand-written reparameterize() also folds
    reference_modules: Tuple[type, ...] = ()
    #: block kinds: rough parameter count of one block (refuses absurd specs before building)
    estimate: Optional[Callable[[Any, int], int]] = None
    #: heads: how the model applies the head, ``forward(model, features)`` (None: ``model.head(features)``);
    #: such a head's build may return a third item, top-level modules by name (timm's ``norm``, ``head_dist``)
    forward: Optional[Callable[[Any, Any], Any]] = None
    #: block kinds: True when the stage's modules are sized to the spec's input (EfficientFormer's learned
    #: attention bias per token pair), so its graph runs at that resolution only and is rebuilt for another
    sized_to_input: Callable[[Any], bool] = lambda params: False
    #: block kinds: module types the deploy graph keeps in this kind's stages (the norm before a nonlinear mixer,
    #: max pooling say, has nothing to fold into); the pass's invariants allow them there and nowhere else
    deploy_leaves: Tuple[type, ...] = ()
    #: block kinds: the spec norms (``norm:``) the kind accepts (None: every norm); a spec with another is refused
    norms: Optional[Tuple[str, ...]] = None
    #: block kinds: stage keys its blocks never read (a stage without an FFN: ``mlp_ratio``, ``ffn``, ``ffn_kernel``);
    #: set to anything but the default (which every dumped spec holds) they are refused like an unknown key
    unused_keys: Tuple[str, ...] = ()
    #: block kinds: a global token mixer (self-attention), which a search space's ``rules.attention_in_last`` keeps
    #: to the last stages
    attention: bool = False
    #: downsample kinds: the output width must be a whole multiple of the input width (a conv grouped by the input
    #: width), so a search space's non-integer ``width_mult`` can never fit a stage that has one
    whole_width_multiple: bool = False


class Family:
    """A closed, ordered registry of kinds (e.g. all token mixers). YAML names kinds, never Python code."""

    def __init__(self, name: str, help: str, default: Optional[str] = None):
        self.name = name
        self.help = help
        self.default = default  # the kind a mapping without ``type`` gets (None: ``type`` is required)
        self._kinds: Dict[str, Kind] = {}

    def register(self, kind: Kind) -> Kind:
        if kind.name in self._kinds:
            raise ValueError(f"{self.name}: kind {kind.name!r} registered twice")
        f = dataclasses.fields(kind.params)
        if not f or f[0].name != "type" or f[0].default != kind.name:
            raise ValueError(f"{kind.params.__name__}: first field must be type_field({kind.name!r})")
        self._kinds[kind.name] = kind
        return kind

    def __getitem__(self, name: str) -> Kind:
        return self._kinds[name]

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def kinds(self) -> List[Kind]:
        return list(self._kinds.values())

    def help_of(self) -> Dict[str, str]:
        return {k.name: k.help for k in self._kinds.values()}

    def search_keys(self) -> Dict[str, List[Tuple[Kind, str]]]:
        """search key -> [(kind, params field)] over all kinds, in registration order."""
        out: Dict[str, List[Tuple[Kind, str]]] = {}
        for kind in self._kinds.values():
            for key, fname in kind.search_keys.items():
                out.setdefault(key, []).append((kind, fname))
        return out

    def abbrev(self, name: str) -> str:
        kind = self._kinds.get(name)
        return (kind.abbrev if kind and kind.abbrev else name[:2].upper())

    def params_field(self, key: str) -> Tuple[type, dataclasses.Field]:
        """(params class, field) that search key ``key`` sets in the first kind declaring it."""
        kind, fname = self.search_keys()[key][0]
        return kind.params, {f.name: f for f in dataclasses.fields(kind.params)}[fname]
