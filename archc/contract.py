"""The contract every registered kind keeps, checked the same way for each (Optuna-style: one set of checks over
every registered kind, a plug-in's included). ``tests/test_kind_contract.py`` runs it over the registries, and
the walkthrough of docs/ADD_A_BLOCK.md is applied for real and run through it.

For a kind of a family, ``minimal_specs`` places it, with its default parameters, into small host specs (a
FastViT-style and an EfficientFormer-style one, with and without a downsample, under every norm); the contract
then asks of each instance that loads:

- it builds and runs with the promised output shape;
- its deploy graph computes the same function (BatchNorm statistics and layer scales randomised) and keeps
  nothing the pass's invariants forbid outside what the kind declares (``Kind.deploy_leaves``);
- it round-trips through YAML (dump, load: equal ``Spec``) and the JSON schema names it;
- a block kind's search keys round-trip through a search space and Optuna's ``FixedTrial`` (``check_search_keys``).

A kind that refuses a norm (``Kind.norms``) is refused with that norm at load time, with a message naming it.

Defaults are one point of a kind. ``params_strategy`` draws others from the kind's field metadata alone (hypothesis,
in ``tests/test_kind_contract_hypothesis.py``): a drawn placement loads or is refused with a SpecError, and one that
loads round-trips through ``spec_to_yaml`` and its deploy graph folds exactly (``check_exact_deploy``).
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Tuple, Union, get_args, get_origin

import torch

from .blocks import DOWNSAMPLES, HEADS, MIXERS, POS_ENCS, STEMS
from .builder import build
from .errors import SpecError
from .passes import invariant_violations, reparameterize
from .spec import load_spec, spec_json_schema, spec_to_dict, spec_to_yaml
from .spec.registry import NORMS
from .testing import randomize_, reference_check, seeded_input

#: where each family's kind goes in a host spec
FAMILIES = {"mixer": MIXERS, "downsample": DOWNSAMPLES, "pos_enc": POS_ENCS, "stem": STEMS, "head": HEADS}

_FASTVIT = {"name": "contract", "num_classes": 5, "input_size": 32, "layer_scale_init": 0.5,
            "stem": {"type": "mobileone", "kernel": 3},
            "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
                       {"depth": 2, "width": 32, "mixer": "repmixer", "downsample": {"type": "replk", "kernel": 3}}],
            "head": {"type": "mobileone_se"}}
_EFFICIENTFORMER = {"name": "contract", "num_classes": 5, "input_size": 32, "layer_scale_init": 0.5,
                    "stem": {"type": "conv_relu", "kernel": 3},
                    "stages": [{"depth": 1, "width": 16, "mixer": "meta4d"},
                               {"depth": 2, "width": 32, "mixer": "meta4d",
                                "downsample": {"type": "conv_bn", "kernel": 3, "stride": 2}}],
                    "head": {"type": "distilled"}}
HOSTS = (_FASTVIT, _EFFICIENTFORMER)


def _placed(host: dict, family: str, kind: Union[str, Mapping[str, Any]], downsample: bool, norm: str) -> dict:
    """``host`` with ``kind`` (a name, or a parameter mapping with its ``type``) in its place."""
    spec = copy.deepcopy(host)
    spec["norm"] = norm
    entry = dict(kind) if isinstance(kind, Mapping) else {"type": kind}
    last = spec["stages"][-1]
    if family == "mixer":
        last["mixer"] = entry
        if not downsample:
            last.pop("downsample", None)
            last["width"] = spec["stages"][0]["width"]
    elif family in ("downsample", "pos_enc"):
        last[family] = entry
    else:
        spec[family] = entry
    return spec


def place(family: str, params: Mapping[str, Any], host: int = 0, downsample: bool = True,
          norm: str = "batchnorm") -> dict:
    """The spec mapping of host ``host`` (an index of ``HOSTS``) with a kind's parameter mapping in its place."""
    return _placed(HOSTS[host], family, params, downsample, norm)


def minimal_specs(family: str, kind: str) -> Iterator[Tuple[str, dict, Any]]:
    """(label, spec mapping, loaded Spec or the SpecError it raised) for each placement of ``kind``."""
    for h, host in enumerate(HOSTS):
        for downsample in ((True, False) if family == "mixer" else (True,)):
            for norm in NORMS:
                data = _placed(host, family, kind, downsample, norm)
                label = f"{family} {kind} in host {h} ({'with' if downsample else 'no'} downsample, {norm})"
                try:
                    yield label, data, load_spec(data)
                except SpecError as exc:
                    yield label, data, exc


def check_instance(spec, seed: int = 0) -> List[str]:
    """What breaks the contract for one loaded instance (empty: it holds)."""
    problems: List[str] = []
    torch.manual_seed(seed)
    model = randomize_(build(spec).eval(), seed=seed)
    x = torch.randn(2, spec.in_chans, *spec.input_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = model(x)
    if tuple(out.shape) != (2, spec.num_classes):
        problems.append(f"output shape {tuple(out.shape)}, expected {(2, spec.num_classes)}")
    try:
        gm = reparameterize(model, verify=True)  # raises LoweringError if the deploy graph computes otherwise
    except Exception as exc:  # noqa: BLE001  (the contract reports every failure, whatever its kind)
        problems.append(f"does not lower: {exc}")
    else:
        problems += invariant_violations(gm)
    again = load_spec(json.loads(json.dumps(spec_to_dict(spec))))
    if again != spec:
        problems.append("does not round-trip through spec_to_dict / load_spec")
    return problems


def check_kind(family: str, kind: str) -> Dict[str, Any]:
    """Run the contract for one kind: ``{"instances": n, "problems": [...], "refused": [...]}``."""
    k = FAMILIES[family][kind]
    schema = json.dumps(spec_json_schema())
    problems: List[str] = []
    refused: List[str] = []
    if f'"{kind}"' not in schema:
        problems.append(f"the JSON schema does not name {family} kind '{kind}'")
    n = 0
    for label, data, spec in minimal_specs(family, kind):
        if isinstance(spec, SpecError):
            norms = getattr(k, "norms", None)
            if norms is not None and data["norm"] not in norms and data["norm"] not in str(spec):
                problems.append(f"{label}: refused without naming the norm: {spec}")
            refused.append(f"{label}: {spec}")
            continue
        n += 1
        problems += [f"{label}: {p}" for p in check_instance(spec)]
    if n == 0:
        problems.append(f"no host spec takes {family} kind '{kind}' with its default parameters: " +
                        "; ".join(refused[:2]))
    return {"instances": n, "problems": problems, "refused": refused}


# ------------------------------------------------------------------------- drawn parameters (hypothesis)
#: hypothesis draws stay small so each example builds and lowers in well under a second on one core at the
#: hosts' 32 px: a kernel (an ``odd`` field) at most 7, any other integer at most its minimum + 8 (widths, heads,
#: branch and block counts). Larger values fold the same way; they only make the check slower (31x31 kernels on
#: 4x4 maps) or are refused for the host (1024-channel heads of a 16-channel stage). Defaults are always drawable.
DRAW_MAX_KERNEL = 7
DRAW_INT_SPAN = 8


def params_strategy(kind: Any):
    """A hypothesis strategy of parameter mappings (``{"type": ..., field: value}``) for ``kind``, read from its
    params dataclass's field metadata alone, so every kind, a plug-in's included, is fuzzed without a generator
    of its own: ``type`` fixed, ``choices`` sampled, booleans, integers within ``min``..``max`` (odd where
    ``odd``), finite floats within bounds, ``None`` too for Optional fields, another family's kinds for a
    ``family`` field. A field of a type it cannot draw raises TypeError (a new type needs a rule here).

    hypothesis is a test dependency: imported here, never when ``archc`` is."""
    from hypothesis import strategies as st

    from .spec.convert import hints, public_fields

    types = hints(kind.params)
    fields = {}
    for f in public_fields(kind.params):
        tp, meta = _unwrap_optional(types[f.name]), f.metadata
        optional = tp is not types[f.name]
        if "family" in meta:
            draw = st.one_of([params_strategy(k) for k in meta["family"].kinds()])
        elif "choices" in meta:
            draw = st.sampled_from(tuple(meta["choices"]))
        elif tp is bool:
            draw = st.booleans()
        elif tp is int:
            draw = _int_strategy(st, meta)
        elif tp is float:
            draw = st.floats(meta.get("min"), meta.get("max"), allow_nan=False, allow_infinity=False)
        else:
            raise TypeError(f"params_strategy: no rule for {kind.params.__name__}.{f.name}: {tp!r}")
        if f.default is not dataclasses.MISSING:
            draw = st.just(f.default) | draw
        fields[f.name] = st.none() | draw if optional else draw
    return st.fixed_dictionaries(fields)


def _int_strategy(st: Any, meta: Mapping[str, Any]):
    lo = meta.get("min", 0)
    hi = min(meta.get("max", lo + DRAW_INT_SPAN), DRAW_MAX_KERNEL if meta.get("odd") else lo + DRAW_INT_SPAN)
    if not meta.get("odd"):
        return st.integers(lo, max(lo, hi))
    first = lo if lo % 2 else lo + 1
    return st.integers(0, max(0, hi - first) // 2).map(lambda j: first + 2 * j)


def check_yaml_round_trip(spec) -> List[str]:
    """The spec written with ``spec_to_yaml`` to a file loads back (through the YAML reader specs use) equal."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.yaml"
        path.write_text(spec_to_yaml(spec))
        again = load_spec(path)
    return [] if again == spec else [f"does not round-trip through spec_to_yaml / load_spec: {spec_to_yaml(spec)}"]


def check_exact_deploy(spec, seed: int = 0) -> List[str]:
    """What breaks the contract in ``spec``'s build and deploy graph (empty: it holds).

    Built in eval mode with random BatchNorm statistics, layer scales and biases (``archc.testing.randomize_``),
    it runs with the promised output shape, lowers with the invariants holding, and its deploy graph computes the
    train graph's function: both folded in float64, they agree within float64's share of this computation's own
    float32 rounding, measured here (``archc.testing.reference_check``, as the timm parity test checks folds).
    """
    torch.manual_seed(seed)
    model = randomize_(build(spec).eval(), seed=seed)
    x = seeded_input((2, spec.in_chans, *spec.input_size), seed)
    problems: List[str] = []
    with torch.no_grad():
        out = model(x)
        train64 = copy.deepcopy(model).double()(x.double())
    if tuple(out.shape) != (2, spec.num_classes):
        problems.append(f"output shape {tuple(out.shape)}, expected {(2, spec.num_classes)}")
    try:
        gm = reparameterize(model, verify=False, example=x)
        gm64 = reparameterize(copy.deepcopy(model).double(), verify=False, example=x.double())
    except Exception as exc:  # noqa: BLE001  (the contract reports every failure, whatever its kind)
        return problems + [f"does not lower: {type(exc).__name__}: {exc}"]
    problems += invariant_violations(gm)
    check = reference_check(gm, x, train64.float(), train64, gm64)
    if not check.ok:
        problems.append(f"the deploy graph computes another function: {check.describe()}")
    return problems


# --------------------------------------------------------------------- search keys through a search space
def few_values(field: dataclasses.Field, tp: Any) -> list:
    """The values a contract search space tries for a search key, from its field's metadata: the minimum, the
    default and its neighbours (odd steps for odd fields), the maximum; both booleans; every choice."""
    meta, default = field.metadata, field.default
    if "choices" in meta:
        return list(meta["choices"])
    if tp is bool:
        return [False, True]
    lo, hi = meta.get("min"), meta.get("max")
    step = 2 if meta.get("odd") else 1
    near = [default - step, default, default + step] if isinstance(default, int) and tp is int else [default]
    out = []
    for v in [lo, *near, hi]:
        if v is None or v is dataclasses.MISSING or (lo is not None and v < lo) or (hi is not None and v > hi):
            continue
        if meta.get("odd") and int(v) % 2 == 0:
            continue
        v = tp(v)
        if v not in out:
            out.append(v)
    return sorted(out)


def search_kinds() -> List[str]:
    """The mixer kinds that declare search keys, in registration order."""
    return [k.name for k in MIXERS.kinds() if k.search_keys]


def contract_space(kind: str, directory: Path):
    """A search space (written to ``directory``) over the FastViT host without a downsample: its last stage's
    ``mixer`` varies over every kind with search keys, and ``kind``'s search keys over ``few_values``."""
    import yaml

    from .space import load_space
    from .spec.convert import hints

    k = MIXERS[kind]
    fields, types = {f.name: f for f in dataclasses.fields(k.params)}, hints(k.params)
    varied: Dict[str, Any] = {"mixer": search_kinds()}
    varied.update({key: few_values(fields[f], _unwrap_optional(types[f])) for key, f in k.search_keys.items()})
    base = load_spec(_placed(_FASTVIT, "mixer", "repmixer", downsample=False, norm="batchnorm"))
    (directory / "base.yaml").write_text(spec_to_yaml(base))
    stages = [{} for _ in base.stages[:-1]] + [varied]
    text = yaml.safe_dump({"name": f"contract_{kind}", "base": "base.yaml", "stages": stages}, sort_keys=False)
    (directory / "space.yaml").write_text(text)
    return load_space(directory / "space.yaml")


def check_search_keys(kind: str) -> Dict[str, Any]:
    """A mixer kind's search keys round-trip through a search space (``contract_space``) and Optuna's ``FixedTrial``.

    For every point of the space: ``FixedTrial`` suggests it back; ``spec_from_values`` gives a spec whose mixer
    type and mixer fields hold the point's values (or raises InfeasiblePoint, nothing else); ``point_from_spec``
    maps that spec back to the point (a search key of another kind than the stage's is inactive: any value gives
    the spec) and its values give the same spec. Returns ``{"points": n, "feasible": {mixer kind: n},
    "problems": [...]}``.
    """
    from .space import InfeasiblePoint

    with tempfile.TemporaryDirectory() as d:
        space = contract_space(kind, Path(d))
    names = [p.name for p in space.params]
    points = [dict(zip(names, v)) for v in itertools.product(*(p.distribution.choices for p in space.params))]
    problems: List[str] = []
    feasible: Dict[str, int] = {}
    for n, point in enumerate(points):
        shown = ", ".join(f"{a}={b}" for a, b in point.items())
        try:
            spec, found = _point_problems(space, point, f"point{n}")
        except InfeasiblePoint:
            continue
        feasible[spec.stages[-1].mixer.type] = feasible.get(spec.stages[-1].mixer.type, 0) + 1
        problems += [f"{shown}: {p}" for p in found]
    if not feasible.get(kind):
        problems.append(f"no point of the space with mixer {kind} is feasible")
    return {"points": len(points), "feasible": feasible, "problems": problems}


def _point_problems(space, point: Dict[str, Any], name: str) -> Tuple[Any, List[str]]:
    """(the point's spec, what breaks its round trip); InfeasiblePoint where the space's rules refuse it."""
    import optuna

    from .space import point_from_spec, spec_from_values, suggest_values

    problems: List[str] = []
    values = suggest_values(optuna.trial.FixedTrial(point), space)
    if values != point:
        problems.append(f"FixedTrial suggests {values}")
    spec = spec_from_values(space, values, name)
    active = []  # parameters that mean something in this spec: the mixer and the chosen kind's search keys
    for p in space.params:
        for i, key in p.targets:
            mixer = spec.stages[i].mixer
            if key == "mixer":
                got = mixer.type
            elif key in MIXERS[mixer.type].search_keys:
                got = getattr(mixer, MIXERS[mixer.type].search_keys[key])
            else:
                continue
            active.append(p.name)
            if got != point[p.name]:
                problems.append(f"the spec has {key} = {got!r}")
    try:
        match = point_from_spec(spec, space)
    except SpecError as exc:
        return spec, problems + [f"point_from_spec refuses the point's own spec: {exc}"]
    if {a: match.values[a] for a in active} != {a: point[a] for a in active} or match.ignored:
        problems.append(f"point_from_spec gives {match.values} (ignored {match.ignored})")
    if spec_from_values(space, match.values, name) != spec:
        problems.append(f"point_from_spec's values {match.values} give another spec")
    return spec, problems


def _unwrap_optional(tp: Any) -> Any:
    """``X`` for ``Optional[X]``, else ``tp``."""
    if get_origin(tp) is Union and type(None) in get_args(tp):
        return next(a for a in get_args(tp) if a is not type(None))
    return tp
