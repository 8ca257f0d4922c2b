"""Predicted latency from a calibrated device profile (no device needed).

A profile is a YAML file: non-negative prices of compute, memory traffic and per-op overhead (see
``costmodel.py``, ``fit.py``) over the deploy graph (``features.py``), the points it was fitted on and
its held-out error (k-fold over architectures, leave-one-family-out). Built-in
profiles ship in ``archc/data/profiles/`` (``iphone12pro``: fitted to the published ModelBench figures);
``archc calibrate`` writes user profiles to ``$ARCHC_PROFILES`` or ``~/.config/archc/profiles``.
A user profile with a built-in's name takes precedence (``archc devices`` shows which one is used).
Every prediction carries an expected error: the k-fold error inside the calibration data, widened to
the leave-one-family-out error when the graph has op kinds or feature values the data never had
(``caveats`` says which).
"""
from __future__ import annotations

import copy
import math
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import yaml

from ..errors import DeviceError, did_you_mean
from ..spec import Spec, load_spec
from .result import LatencyResult
from .costmodel import DEFAULT_CACHE_MB, TERMS, CostModel, Stack, aggregate, breakdown, memory_bound_ops, predict
from .features import (DEFAULT_CHANNEL_BLOCK, FEATURES, spec_features, spec_node_table, spec_op_kinds,
                       spec_op_patterns)
from .fit import DERIVED, expand

BUILTIN_DIR = Path(__file__).resolve().parents[1] / "data" / "profiles"
PROFILE_KIND = "archc-latency-profile"
#: a feature this many times beyond the largest fitted value makes the prediction say it extrapolates
EXTRAPOLATION_FACTOR = 1.5


def user_profile_dir() -> Path:
    """Where ``archc calibrate`` stores profiles: ``$ARCHC_PROFILES`` or ``~/.config/archc/profiles``."""
    env = os.environ.get("ARCHC_PROFILES")
    return Path(env).expanduser() if env else Path.home() / ".config" / "archc" / "profiles"


@dataclass
class ProfileInfo:
    """What ``archc devices`` lists about one profile."""

    name: str
    source: str              # "built-in" or "user"
    path: str
    device: str
    points: int
    heldout_mape_pct: float
    created: str


#: parsed profiles by (path, mtime, size): a calibrated profile keeps every point (hundreds of KB of YAML), and
#: ``available_profiles`` would otherwise parse every one of them again at each prediction of a search
_PARSED: Dict[tuple, Dict[str, Any]] = {}
#: LibYAML's safe loader where PyYAML has it (the same safe subset as ``yaml.safe_load``, ~10x faster)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: a profile holds a few hundred points; a file beyond this is not one (read whole, so it is bounded first)
MAX_PROFILE_BYTES = 32 * 2 ** 20


def _read_shared(path: Path) -> Dict[str, Any]:
    """The validated profile at ``path``, parsed once per file version; callers must not modify it."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block every command that lists targets
            raise DeviceError(f"{path}: not a regular file")
        if st.st_size > MAX_PROFILE_BYTES:
            raise DeviceError(f"{path}: {st.st_size:,} bytes, over the limit of {MAX_PROFILE_BYTES:,} for a profile")
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key not in _PARSED:
            loader = _SAFE_LOADER(path.read_text())
            try:
                doc = loader.get_single_data()
            finally:
                loader.dispose()
            _PARSED[key] = validate_profile(doc, str(path))
    except (OSError, yaml.YAMLError) as exc:
        raise DeviceError(f"{path}: cannot read latency profile: {exc}") from None
    return _PARSED[key]


def _read(path: Path) -> Dict[str, Any]:
    """A private copy of the validated profile at ``path`` (callers may add keys to it)."""
    return copy.deepcopy(_read_shared(path))


def validate_profile(doc: Any, where: str) -> Dict[str, Any]:
    """Check a profile document; errors name the file and key."""
    if not isinstance(doc, dict) or doc.get("kind") != PROFILE_KIND:
        raise DeviceError(f"{where}: not an archc latency profile (expected 'kind: {PROFILE_KIND}')")
    if not isinstance(doc.get("name"), str) or not doc["name"]:
        raise DeviceError(f"{where} name: missing profile name")
    coefs = doc.get("coefficients")
    if not isinstance(coefs, dict) or not coefs:
        raise DeviceError(f"{where} coefficients: missing or empty mapping")
    version2 = doc.get("version", 1) >= 2
    valid = list(TERMS) if version2 else ["const"] + list(FEATURES) + list(DERIVED)
    if doc.get("combine", "sum") not in ("sum", "max"):
        raise DeviceError(f"{where} combine: {doc.get('combine')!r} is not a valid choice; valid: sum, max")
    for k, v in coefs.items():
        if k not in valid:
            raise DeviceError(f"{where} coefficients.{k}: unknown feature '{k}'{did_you_mean(k, valid)}; "
                              f"valid: {', '.join(valid)}")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise DeviceError(f"{where} coefficients.{k}: {v!r} must be a finite non-negative number")
    if heldout_mape(doc) is None:
        raise DeviceError(f"{where} heldout.kfold.mape_pct: missing held-out error")
    return doc


def heldout_mape(doc: Dict[str, Any]) -> Optional[float]:
    """The profile's k-fold held-out MAPE (version 1 profiles: their leave-one-out MAPE)."""
    k = (doc.get("heldout") or {}).get("kfold") if isinstance(doc.get("heldout"), dict) else None
    if isinstance(k, dict) and isinstance(k.get("mape_pct"), (int, float)):
        return float(k["mape_pct"])
    loo = doc.get("loo")
    if isinstance(loo, dict) and isinstance(loo.get("mape_pct"), (int, float)):
        return float(loo["mape_pct"])
    return None


def _profile_files() -> Dict[str, tuple]:
    found: Dict[str, tuple] = {}
    for source, folder in (("built-in", BUILTIN_DIR), ("user", user_profile_dir())):
        if folder.is_dir():
            for f in sorted(folder.glob("*.yaml")):
                found[f.stem] = (source, f)
    return found


def available_profiles() -> Dict[str, ProfileInfo]:
    """Every usable profile by name: built-in ones, then user ones (a user profile shadows a built-in).

    A malformed profile file is left out with a warning (``invalid_profiles`` lists it), so one bad
    file in the user folder does not break every other latency target.
    """
    out: Dict[str, ProfileInfo] = {}
    for name, (source, path) in _profile_files().items():
        try:
            doc = _read_shared(path)
        except DeviceError as exc:
            warnings.warn(f"skipping latency profile: {exc}", stacklevel=2)
            continue
        out[name] = ProfileInfo(name=name, source=source, path=str(path), device=str(doc.get("device", "")),
                                points=len(doc.get("points", [])),
                                heldout_mape_pct=heldout_mape(doc), created=str(doc.get("created", "")))
    return out


def invalid_profiles() -> Dict[str, str]:
    """Profile files that do not load, by path, with the reason."""
    bad: Dict[str, str] = {}
    folder = user_profile_dir()
    if os.environ.get("ARCHC_PROFILES") and folder.exists() and not folder.is_dir():  # a file or a FIFO there
        bad[str(folder)] = (f"ARCHC_PROFILES={str(folder)!r} is not a folder: no user profile is read from it "
                            "and `archc calibrate` cannot write one there")
    for _, (_, path) in _profile_files().items():
        try:
            _read_shared(path)
        except DeviceError as exc:
            bad[str(path)] = str(exc)
    return bad


def load_profile(name: str) -> Dict[str, Any]:
    """The profile document called ``name`` (a name from ``available_profiles`` or a YAML path)."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return _read(Path(name))
    files = _profile_files()
    if name not in files:
        choices = sorted(files)
        raise DeviceError(f"unknown latency profile '{name}'{did_you_mean(name, choices)}; valid: "
                          f"{', '.join(choices) or 'none'} (user profiles live in {user_profile_dir()}; "
                          f"make one with `archc calibrate`)")
    return _read(files[name][1])


def predict_from_features(profile: Dict[str, Any], features: Dict[str, float]) -> float:
    coefs = profile["coefficients"]
    names = list(coefs)
    return float(sum(c * x for c, x in zip(coefs.values(), expand(features, names))))


def _error(profile: Dict[str, Any], outside: bool) -> tuple:
    """(expected %, bound %, basis) a prediction states, inside or outside the calibration data."""
    err = profile.get("error")
    if not isinstance(err, dict):  # version 1 profile: leave-one-out figures only
        mape = heldout_mape(profile) or 0.0
        bound = float((profile.get("loo") or {}).get("max_ape_pct", mape))
        return (2 * mape, 2 * bound, "2x leave-one-out (outside the data)") if outside else (mape, bound, "leave-one-out")
    if outside:
        return float(err["outside_pct"]), float(err["outside_bound_pct"]), "outside the calibration data: " + \
            err.get("basis", "").split("outside: ")[-1]
    return float(err["inside_pct"]), float(err["inside_bound_pct"]), "k-fold over architectures"


def predict_latency(spec: Union[Spec, str, Path], profile_name: str, resolution: Optional[int] = None) -> LatencyResult:
    """Predict batch-1 latency of ``spec``'s deploy graph on the device ``profile_name`` describes."""
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    profile = load_profile(profile_name)
    feats, graph = spec_features(spec, resolution)
    coefs = profile["coefficients"]
    res = (int(resolution), int(resolution)) if resolution else tuple(spec.input_size)
    detail: Dict[str, Any] = {"profile": profile["name"], "device": profile.get("device", ""), "graph": graph,
                              "features": {k: round(v, 6) for k, v in feats.items()},
                              "note": "predicted from a calibrated latency model, not measured"}
    if profile.get("version", 1) >= 2:
        model = CostModel(profile.get("combine", "sum"), tuple(coefs),
                          int(profile.get("channel_block", DEFAULT_CHANNEL_BLOCK)), float(profile.get("cache_mb", DEFAULT_CACHE_MB)))
        table = spec_node_table(spec, resolution)
        ms = float(predict(model, list(coefs.values()), Stack.of([table], [feats["attn_elems"]]))[0])
        detail["terms_ms"] = breakdown(model, coefs, table, feats["attn_elems"])
        detail["combine"] = model.combine
        if not model.linear:
            detail["memory_bound_ops"] = f"{memory_bound_ops(coefs, table)} of {len(table.mbytes)}"
    else:
        ms = predict_from_features(profile, feats)
        detail["terms_ms"] = {k: round(c * x, 4) for (k, c), x in zip(coefs.items(), expand(feats, list(coefs)))}
    caveats = []
    beyond = {}
    for k, (lo, hi) in (profile.get("feature_ranges") or {}).items():
        v = expand(feats, [k])[0]
        if profile.get("version", 1) >= 2 and k in TERMS:  # the ranges were aggregated this way (block, cache)
            v = float(aggregate(Stack.of([table], [feats["attn_elems"]]), [k], model.channel_block,
                                model.cache_mb)[0, 0])
        if hi > 0 and v > EXTRAPOLATION_FACTOR * hi:
            beyond[k] = f"{v:.4g} vs at most {hi:.4g} in the fitted data"
        elif lo > 0 and v < lo / EXTRAPOLATION_FACTOR and not k.startswith(("ops_", "mbytes_")):
            # fewer ops (or less traffic) of a kind is no stretch
            beyond[k] = f"{v:.4g} vs at least {lo:.4g} in the fitted data"
    if beyond:
        detail["extrapolation"] = beyond
        caveats.append("extrapolates " + ", ".join(f"{k} ({v})" for k, v in beyond.items()))
    if profile.get("op_kinds"):
        unseen = sorted(spec_op_kinds(spec, resolution) - set(profile["op_kinds"]))
        if unseen:  # e.g. GroupNorm or pooling when the profile saw only FastViT graphs
            detail["unseen_op_kinds"] = unseen
            caveats.append(f"op kinds the calibration never saw ({', '.join(unseen)}) are priced only by their "
                           f"MACs and bytes, so the prediction is likely low")
            detail["note"] += f"; {caveats[-1]}"
    if profile.get("op_patterns"):
        novel = sorted(spec_op_patterns(spec, resolution) - set(profile["op_patterns"]))
        if novel:  # e.g. MobileOne's dwconv>relu against a profile fitted on FastViT and PoolFormer
            detail["unseen_op_patterns"] = novel
            shown = ", ".join(novel[:4]) + (f" and {len(novel) - 4} more" if len(novel) > 4 else "")
            caveats.append(f"a block family the calibration never saw: its ops are chained in ways no "
                           f"calibration graph had ({shown})")
            detail["note"] += f"; {caveats[-1]}"
    expected, bound, basis = _error(profile, outside=bool(caveats))
    detail["error_basis"] = basis
    return LatencyResult(target=profile["name"], ms=ms, kind="predicted", batch=1, resolution=res,
                         expected_error_pct=expected, error_bound_pct=bound, caveats=caveats, detail=detail)
