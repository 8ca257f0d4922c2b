"""Checkpoints: read timm, Apple ml-fastvit and archc files (``weights_only=True``), map names, load strictly.

archc's parameter names are timm's FastViT names, so timm checkpoints load as they are. Apple's
checkpoints use a flat ``network.N`` list; ``apple_to_timm_keys`` maps them by a documented rule:
each ``network.N.proj`` (patch embedding) starts a new stage, ``network.N.pe`` /
``network.N.reparam_conv`` is that stage's positional encoding, ``network.N.J`` its block J.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from .errors import WeightsError
from .outputs import atomic_torch_save

ARCHC_FORMAT = "archc"
ARCHC_FORMAT_VERSION = 1
StateDict = Dict[str, torch.Tensor]

# (pattern, replacement) applied in order to every Apple key
_APPLE_RENAMES: Tuple[Tuple[str, str], ...] = (
    (r"^patch_embed\.", "stem."),
    (r"\.rbr_conv\.", ".conv_kxk."),
    (r"\.rbr_scale\.", ".conv_scale."),
    (r"\.rbr_skip\.", ".identity."),
    (r"^conv_exp\.", "final_conv."),
    (r"\.lkb_origin\.", ".large_conv."),
    (r"\.lkb_reparam\.", ".reparam_conv."),
    (r"\.convffn\.", ".mlp."),
    (r"\.se\.reduce\.", ".se.fc1."),
    (r"\.se\.expand\.", ".se.fc2."),
    (r"\.layer_scale_([0-9])$", r".layer_scale_\1.gamma"),
    (r"\.layer_scale$", ".layer_scale.gamma"),
    (r"^head\.(weight|bias)$", r"head.fc.\1"),
)


def show_key(key: Any) -> str:
    """A checkpoint key fit to print: control characters and other non-printables escaped."""
    text = str(key)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def checkpoint_bound(model: nn.Module) -> int:
    """The most bytes a checkpoint for ``model`` may unpack to: its tensors in float64, twice, plus 64 MiB
    (optimizer state, EMA copies and metadata fit; a 4 MB archive inflating to gigabytes does not)."""
    return 2 * 8 * sum(t.numel() for t in model.state_dict().values()) + (64 << 20)


def _check_archive(p: Path, max_bytes: Optional[int]) -> None:
    """Verify a zip checkpoint's CRCs and bound its unpacked size before torch reads it."""
    import stat
    import zipfile
    st = p.stat()
    if not stat.S_ISREG(st.st_mode):
        raise WeightsError(f"{p}: not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise WeightsError(f"{p}: {st.st_size:,} bytes, more than a checkpoint of this model can hold "
                           f"({max_bytes:,} bytes)")
    if not zipfile.is_zipfile(p):
        return  # torch's legacy format: its size on disk is its size, bounded above
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            unpacked = sum(i.file_size for i in infos)
            if max_bytes is not None and unpacked > max_bytes:
                raise WeightsError(f"{p}: the archive unpacks to {unpacked:,} bytes, more than a checkpoint of this "
                                   f"model can hold ({max_bytes:,} bytes)")
            bad = zf.testzip()  # reads every entry and checks its CRC-32
    except WeightsError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise WeightsError(f"{p}: corrupt checkpoint archive: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if bad is not None:
        raise WeightsError(f"{p}: corrupt checkpoint archive: CRC check failed for {show_key(bad)}")


def read_checkpoint(path: Union[str, Path], max_bytes: Optional[int] = None) -> Any:
    """``torch.load(..., weights_only=True)``: a checkpoint can never run code. The archive is verified
    first (CRCs, and at most ``max_bytes`` unpacked, see ``checkpoint_bound``)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{path}: checkpoint file not found" if not p.exists() else
                           f"{path}: not a regular file")
    _check_archive(p, max_bytes)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: cannot read checkpoint with weights_only=True: {first}") from None


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> Tuple[StateDict, str]:
    """Find the state dict inside a checkpoint object and name its format: archc, apple or timm."""
    fmt = None
    if isinstance(obj, Mapping) and obj.get("format") == ARCHC_FORMAT:
        fmt = ARCHC_FORMAT
        version = obj.get("version", ARCHC_FORMAT_VERSION)  # absent: a hand-made dict, read as the current one
        if version != ARCHC_FORMAT_VERSION or isinstance(version, bool):
            raise WeightsError(f"{source}: archc checkpoint version {show_key(repr(version))[:40]} is not one this "
                               f"archc reads (valid: {ARCHC_FORMAT_VERSION})")
    for key in ("state_dict", "model", "model_state_dict", "model_ema"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{source}: no state dict found (expected a mapping of parameter names to tensors)")
    sd = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise WeightsError(f"{source}: entry {show_key(repr(k))[:80]} is not a named tensor; not a state dict")
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    if fmt is None:
        fmt = "apple" if any(k.startswith(("network.", "patch_embed.")) for k in sd) else "timm"
    return sd, fmt


def is_reparameterized(sd: Mapping[str, torch.Tensor]) -> bool:
    """True for deploy-graph checkpoints (Apple/timm inference mode, or archc deploy)."""
    return any(".reparam_conv." in f".{k}" or ".lkb_reparam." in k for k in sd)


def apple_to_timm_keys(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename an Apple ml-fastvit state dict to timm/archc names (see module docstring)."""
    kinds: Dict[int, str] = {}
    for k in sd:
        m = re.match(r"^network\.(\d+)\.(\w+)", k)
        if m:
            idx, sub = int(m.group(1)), m.group(2)
            kinds[idx] = "embed" if sub == "proj" else "posenc" if sub in ("pe", "reparam_conv") else "blocks"
    stage_of: Dict[int, int] = {}
    stage = 0
    for n, idx in enumerate(sorted(kinds)):
        if kinds[idx] == "embed" and n > 0:
            stage += 1
        stage_of[idx] = stage
    out: StateDict = {}
    for k, v in sd.items():
        m = re.match(r"^network\.(\d+)\.(.*)$", k)
        if m:
            idx, rest = int(m.group(1)), m.group(2)
            s = stage_of[idx]
            if kinds[idx] == "embed":
                k = f"stages.{s}.downsample.{rest}"
            elif kinds[idx] == "posenc":
                k = f"stages.{s}.pos_emb." + (f"pos_enc.{rest[3:]}" if rest.startswith("pe.") else rest)
            else:
                k = f"stages.{s}.blocks.{rest}"
        for pattern, repl in _APPLE_RENAMES:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def to_model_keys(sd: StateDict, fmt: str) -> StateDict:
    return apple_to_timm_keys(sd) if fmt == "apple" else dict(sd)


def _summarise(keys: List[str], limit: int = 8) -> str:
    shown = ", ".join(show_key(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_and_load(model: nn.Module, sd: Mapping[str, torch.Tensor], strict: bool, source: str) -> Dict[str, List[str]]:
    """Load ``sd`` into ``model``; on mismatch raise one error listing missing, unexpected and misshaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    misshaped = [f"{show_key(k)} (checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
                 for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if misshaped or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_summarise(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_summarise(unexpected)}")
        if misshaped:
            parts.append(f"{len(misshaped)} wrongly shaped: {_summarise(misshaped)}")
        raise WeightsError(f"{source}: checkpoint does not fit the model; " + "; ".join(parts))
    filtered = {k: v for k, v in sd.items() if k in own}
    bad = [p for p in (_unsound(k, v, own[k]) for k, v in filtered.items()) if p]
    if bad:  # all checked before the first parameter is copied: the model is left untouched
        raise WeightsError(f"{source}: checkpoint refused, {len(bad)} unsound tensor(s): " + "; ".join(bad[:5])
                           + (f"; ... ({len(bad) - 5} more)" if len(bad) > 5 else ""))
    model.load_state_dict(filtered, strict=False)
    return {"missing": missing, "unexpected": unexpected}


def _unsound(key: str, value: torch.Tensor, own: torch.Tensor) -> Optional[str]:
    """Why ``value`` must not be loaded where the model has ``own`` (None if it may)."""
    name = show_key(key)
    if value.layout != torch.strided:
        return f"{name} is a {str(value.layout).replace('torch.', '')} tensor (dense tensors only)"
    if value.is_quantized:
        return f"{name} is quantized ({value.dtype}); dense float tensors only"
    if value.device.type == "meta":
        return f"{name} is a meta tensor (it holds no values)"
    if own.is_floating_point():
        if not value.is_floating_point():
            return f"{name} has dtype {str(value.dtype).replace('torch.', '')}, expected a float tensor"
        if not bool(torch.isfinite(value).all()):
            return f"{name} holds non-finite values (NaN or inf)"
        if key.endswith("running_var") and bool((value < 0).any()):
            return f"{name} has negative variances (min {float(value.min()):.3g})"
    elif value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        return f"{name} has dtype {str(value.dtype).replace('torch.', '')}, expected {str(own.dtype).replace('torch.', '')}"
    return None


def load_weights(model: nn.Module, source: Union[str, Path, Mapping[str, Any]], strict: bool = True) -> str:
    """Load a timm, Apple (unfused) or archc checkpoint into ``model``; returns the detected format.

    Reparameterized checkpoints (``reparam_conv``/``lkb_reparam``) need a deploy graph
    (``archc.reparameterize``); loading one into a train-time model says so.
    """
    name = str(source) if not isinstance(source, Mapping) else "state dict"
    obj = read_checkpoint(source, checkpoint_bound(model)) if not isinstance(source, Mapping) else source
    sd, fmt = unwrap_state_dict(obj, name)
    sd = to_model_keys(sd, fmt)
    target_is_deploy = any(".reparam_conv." in f".{k}" for k in model.state_dict())
    if is_reparameterized(sd) and not target_is_deploy:
        raise WeightsError(f"{name}: this is a reparameterized (deploy) checkpoint; load it into a deploy graph "
                           "(archc build SPEC --deploy --weights FILE, or archc.reparameterize(model) first)")
    check_and_load(model, sd, strict, name)
    return fmt


def save_weights(model: nn.Module, path: Union[str, Path], spec: Optional[Any] = None, deploy: bool = False) -> Path:
    """Save in archc's format: the state dict plus the spec it belongs to (plain data, weights_only-safe)."""
    from .spec import spec_to_dict
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": ARCHC_FORMAT, "version": ARCHC_FORMAT_VERSION, "deploy": bool(deploy),
               "spec": spec_to_dict(spec) if spec is not None else None,
               "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    return atomic_torch_save(payload, p, "checkpoint")


#: file suffixes read as checkpoints where a spec is expected (archc checkpoints store their spec)
def checkpoint_spec(path) -> dict:
    """The spec stored in the archc checkpoint ``path`` (``{"spec": mapping, "deploy": bool}``), so a checkpoint
    works wherever a spec does; one line saying how to name the model where the file is another format's."""
    obj = read_checkpoint(path)
    if not (isinstance(obj, dict) and obj.get("format") == ARCHC_FORMAT and isinstance(obj.get("spec"), dict)):
        _, fmt = unwrap_state_dict(obj, path)
        raise WeightsError(f"{path}: a {fmt} checkpoint stores no spec; name the model and pass the file as "
                           f"weights, e.g. fastvit_sa12 --weights {path} (models: archc models)")
    return {"spec": obj["spec"], "deploy": bool(obj.get("deploy"))}
