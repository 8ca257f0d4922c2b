"""The weights every subnet shares: one tensor per *path key*, as large as the largest subnet needs.

A subnet is an ordinary archc model, built from its spec (train-time graph, timm's parameter names). Its
parameters are never its own: each is a slice of a shared tensor, passed in with
``torch.func.functional_call``, so gradients of every subnet land on the shared weights and a subnet's
weights can be copied out as an ordinary checkpoint (``extract``) that reproduces what the supernet computes.

How a parameter finds its shared tensor (its *path key*):

- ``stages.i.blocks.*`` parameters are keyed by the stage's mixer kind (``stages.2.blocks[attention].0...``):
  each mixer choice is its own path (per-choice paths), so RepMixer, pooling and attention blocks never share;
- elastic depth is the first ``k`` blocks: block ``j`` of a 2-block stage is block ``j`` of the 3-block one;
- elastic width and MLP ratio are leading channel slices (``[:c_out, :c_in]``), and attention's ``qkv`` is
  sliced per q/k/v chunk (the first heads of each), not as one tensor;
- a grouped, non-depthwise conv (a ``replk`` patch embedding that widens, ``final_conv``) is keyed by its
  channels per group, since a channel's input differs between a depthwise and a widening embedding;
- elastic kernels: ``kernels="separate"`` keys every conv weight by its kernel size (per-kernel weights);
  ``kernels="crop"`` shares one tensor of the largest kernel and takes the centre (Once-for-All's centre
  crop, without its learned transform).

BatchNorm running statistics are not shared: each subnet's are recalibrated before it is scored.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn

from ..errors import ArchcError

KERNEL_MODES = ("separate", "crop")
#: parameters that are a concatenation of equal chunks, sliced chunk by chunk
CHUNKED = {"qkv.weight": 3, "qkv.bias": 3}
_BLOCKS = re.compile(r"^stages\.(\d+)\.blocks\.(.*)$")


class SupernetError(ArchcError):
    """A subnet the supernet does not contain, or a supernet directory that is not one."""


Layout = Dict[str, Tuple[str, Tuple[int, ...]]]   # parameter name -> (path key, its shape in the subnet)


def layout(model: nn.Module, spec, kernels: str = "separate") -> Layout:
    """Each parameter of ``model`` (built from ``spec``) -> (path key, shape)."""
    if kernels not in KERNEL_MODES:
        raise SupernetError(f"unknown kernel mode '{kernels}'; valid: {', '.join(KERNEL_MODES)}")
    mixers = [s.mixer.type for s in spec.stages]
    out: Layout = {}
    for name, p in model.named_parameters():
        key = name
        m = _BLOCKS.match(name)
        if m:
            key = f"stages.{m.group(1)}.blocks[{mixers[int(m.group(1))]}].{m.group(2)}"
        owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        if isinstance(owner, nn.Conv2d) and name.endswith("weight"):
            g = owner.groups
            if g > 1 and not (g == owner.in_channels == owner.out_channels):
                key += f"@g{owner.out_channels // g}:{owner.in_channels // g}"
            if kernels == "separate":
                key += "@k" + "x".join(str(k) for k in owner.kernel_size)
        out[name] = (key, tuple(p.shape))
    return out


def _chunks(key: str) -> int:
    base = key.split("@", 1)[0]
    return next((n for suffix, n in CHUNKED.items() if base.endswith(suffix)), 1)


def take(full: torch.Tensor, shape: Tuple[int, ...], key: str) -> torch.Tensor:
    """The slice of shared tensor ``full`` that a subnet parameter of ``shape`` uses (a view: gradients flow
    back into ``full``). Channels: leading; conv kernels (dims 2, 3 of a 4-d weight): the centre."""
    n = _chunks(key)
    if n > 1:
        parts = full.reshape(n, full.shape[0] // n, *full.shape[1:])
        return take(parts, (n, shape[0] // n, *shape[1:]), "").reshape(shape)
    index = []
    for d, (have, want) in enumerate(zip(full.shape, shape)):
        if want > have:
            raise SupernetError(f"{key}: dimension {d} needs {want}, the supernet holds {have}")
        start = (have - want) // 2 if (full.ndim == 4 and d >= 2) else 0
        index.append(slice(start, start + want))
    return full[tuple(index)]


def put(full: torch.Tensor, value: torch.Tensor, key: str) -> None:
    """Write ``value`` into the slice of ``full`` that ``take`` reads (initialisation)."""
    with torch.no_grad():
        take(full, tuple(value.shape), key).copy_(value)


class SharedWeights(nn.Module):
    """The shared tensors, one per path key (a ``ParameterDict``: one optimizer, one state_dict)."""

    def __init__(self, shapes: Dict[str, Tuple[int, ...]]):
        super().__init__()
        self.keys_ = sorted(shapes)
        self.store = nn.ParameterDict({_safe(k): nn.Parameter(torch.zeros(shapes[k])) for k in self.keys_})

    def shapes(self) -> Dict[str, List[int]]:
        return {k: list(self.store[_safe(k)].shape) for k in self.keys_}

    def tensor(self, key: str) -> torch.Tensor:
        try:
            return self.store[_safe(key)]
        except KeyError:
            raise SupernetError(f"the supernet has no weights for {key} (the subnet is outside its space: "
                                "another mixer, kernel or block than the space it was trained on)") from None

    def params_for(self, lay: Layout) -> Dict[str, torch.Tensor]:
        """The subnet's parameters as views of the shared tensors (for ``functional_call``)."""
        return {name: take(self.tensor(key), shape, key) for name, (key, shape) in lay.items()}

    def initialise_from(self, model: nn.Module, lay: Layout, done: set) -> None:
        """Copy ``model``'s fresh initial weights into the keys it holds at full size and ``done`` lacks."""
        for name, p in model.named_parameters():
            key, shape = lay[name]
            full = self.tensor(key)
            if key not in done and tuple(full.shape) == shape:
                put(full, p.detach(), key)
                done.add(key)


def _safe(key: str) -> str:
    return key.replace(".", "/")


def max_shapes(layouts: Iterable[Layout]) -> Dict[str, Tuple[int, ...]]:
    """Per path key, the elementwise largest shape over ``layouts`` (chunked keys: chunk by chunk)."""
    out: Dict[str, Tuple[int, ...]] = {}
    for lay in layouts:
        for key, shape in lay.values():
            old: Optional[Tuple[int, ...]] = out.get(key)
            if old is not None and len(old) != len(shape):
                raise SupernetError(f"{key}: shapes {old} and {shape} have different ranks")
            out[key] = shape if old is None else tuple(max(a, b) for a, b in zip(old, shape))
    return out
