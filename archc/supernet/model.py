"""``Supernet``: the shared weights of a search space and the subnets that use them.

A subnet is run as the archc model of its spec with the shared slices as its parameters
(``torch.func.functional_call``); ``materialize`` copies the slices into a model of its own, BatchNorm
statistics recalibrated, which is what ``archc supernet extract`` saves and what scoring evaluates.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.func import functional_call

from ..builder import build
from ..spec import arch_key
from ..spec.model import Spec
from .shared import Layout, SharedWeights, SupernetError, layout, max_shapes, put

CACHE = 64   # built subnets kept per process (a build is ~20 ms; a training step visits 3-4)


class Supernet:
    def __init__(self, shapes: Dict[str, Sequence[int]], kernels: str = "separate"):
        self.weights = SharedWeights({k: tuple(v) for k, v in shapes.items()})
        self.kernels = kernels
        self._built: "OrderedDict[str, Tuple[nn.Module, Layout]]" = OrderedDict()

    @classmethod
    def covering(cls, specs: Sequence[Spec], kernels: str = "separate",
                 layouts: Optional[Callable[[Spec], Layout]] = None) -> "Supernet":
        """A supernet large enough for every spec in ``specs``, initialised with archc's own initial weights:
        each shared tensor from a spec that holds it at full size (found from ``layouts``, by default models
        built on the meta device), else from slices of the largest specs that use it."""
        layouts = layouts or meta_layouts(kernels)
        metas = [(spec, layouts(spec)) for spec in specs]
        shapes = max_shapes(lay for _, lay in metas)
        net = cls(shapes, kernels)
        done: set = set()
        for spec, lay in metas:
            if any(key not in done and tuple(shapes[key]) == shape for key, shape in lay.values()):
                net.weights.initialise_from(build(spec), lay, done)
        missing = set(shapes) - done
        for spec, lay in sorted(metas, key=lambda m: -sum(_numel(s) for _, s in m[1].values())):
            if not missing:
                break
            if any(key in missing for key, _ in lay.values()):
                model = build(spec)
                for name, p in model.named_parameters():
                    if lay[name][0] in missing:
                        put(net.weights.tensor(lay[name][0]), p.detach(), lay[name][0])
                missing -= {key for key, _ in lay.values()}
        return net

    # ------------------------------------------------------------------------------- subnets
    def subnet(self, spec: Spec) -> Tuple[nn.Module, Layout]:
        """The (cached) archc model of ``spec`` and where its parameters live in the shared weights."""
        key = arch_key(spec)
        hit = self._built.get(key)
        if hit is not None:
            self._built.move_to_end(key)
            return hit
        model = build(spec)
        lay = layout(model, spec, self.kernels)
        for name, (k, shape) in lay.items():
            full = self.weights.tensor(k)
            if len(full.shape) != len(shape) or any(w > h for w, h in zip(shape, full.shape)):
                raise SupernetError(f"{spec.name}: {name} needs {list(shape)}, the supernet holds "
                                    f"{list(full.shape)} for {k} (the subnet is larger than the supernet's space)")
        device = next(iter(self.weights.parameters())).device
        model.to(device)
        self._built[key] = (model, lay)
        while len(self._built) > CACHE:
            self._built.popitem(last=False)
        return model, lay

    def forward(self, spec: Spec, x: torch.Tensor) -> torch.Tensor:
        """Logits of subnet ``spec`` on ``x`` with the shared weights (train or eval mode as set on it)."""
        model, lay = self.subnet(spec)
        return functional_call(model, self.weights.params_for(lay), (x,), strict=False)

    def train_mode(self, spec: Spec) -> nn.Module:
        model, _ = self.subnet(spec)
        return model.train()

    def materialize(self, spec: Spec, calibration: Optional[torch.Tensor] = None, batch: int = 64) -> nn.Module:
        """A model of its own for ``spec``: the shared slices copied in, and BatchNorm statistics
        recalibrated on ``calibration`` (a cumulative average over its batches, train-mode forward,
        no gradients); eval mode. Without ``calibration`` the statistics are the fresh ones (0 / 1)."""
        model = build(spec)
        lay = layout(model, spec, self.kernels)
        params = self.weights.params_for(lay)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name])
        device = next(iter(self.weights.parameters())).device
        model.to(device)
        if calibration is not None:
            recalibrate(model, calibration, batch)
        return model.eval()

    def to(self, device) -> "Supernet":
        self.weights.to(device)
        self._built.clear()
        return self


def meta_layouts(kernels: str) -> Callable[[Spec], Layout]:
    """Spec -> its layout, from a model built on the meta device (no memory, no initial values), cached."""
    cache: Dict[str, Layout] = {}

    def of(spec: Spec) -> Layout:
        k = arch_key(spec)
        if k not in cache:
            with torch.device("meta"):
                model = build(spec)
            cache[k] = layout(model, spec, kernels)
        return cache[k]
    return of


def recalibrate(model: nn.Module, images: torch.Tensor, batch: int = 64) -> None:
    """BatchNorm running statistics of ``model`` re-estimated on ``images`` (already normalised)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None   # cumulative moving average: every batch counts equally
    model.train()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            model(images[i:i + batch])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
