"""Scoring a candidate with inherited weights: the ``supernet`` objective, about a second per candidate.

For each spec: its subnet's weights are copied out of the supernet, BatchNorm statistics are recalibrated on
a fixed set of training images (``calib_images``, no augmentation, the same for every candidate), and the
subnet is evaluated on a fixed subset of the validation split (``val_images``, the same split the ground
truth is scored on). The score is the validation top-1 in percent; the mean cross-entropy is kept as
``score_val_loss``. Scores are cached per architecture key for the life of the scorer (a study also stores
them per trial).
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ..spec import arch_key
from .model import Supernet
from .shared import SupernetError
from .train import FILE, SupernetConfig, read_state

NAME = "supernet"


def supernet_file(directory) -> Path:
    """``DIR/supernet.pt`` (or the file itself); an error saying how to make one where there is none."""
    path = Path(directory)
    path = path / FILE if path.is_dir() else path
    if not path.exists():
        raise SupernetError(f"{path}: no supernet here; train one with `archc supernet train SPACE --out "
                            f"{path.parent}`")
    return path


def supernet_info(directory) -> Dict[str, Any]:
    """What identifies a trained supernet without its tensors: ``id`` (settings and step), ``space``
    (name and sha256 of the space file it was trained on), ``step``/``steps``, ``config``. Read once per
    file version in a process (a search checks it in validation and again when it opens the study)."""
    path = supernet_file(directory)
    st = path.stat()
    return _info(str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _info(path: str, _mtime_ns: int, _size: int) -> Dict[str, Any]:
    state = read_state(Path(path))
    return {"id": state["id"], "space": dict(state["fingerprint"]["space"]), "step": state["step"],
            "steps": state["steps"], "config": dict(state["config"])}


def describe_supernet(directory, calib_images: int = 256, val_images: int = 1000) -> str:
    """One line on what the ``supernet`` objective scores with (what ``SupernetScore.describe`` says)."""
    info = supernet_info(directory)
    return (f"{directory} ({info['space']['name']}, step {info['step']}/{info['steps']}, id {info['id']}): "
            f"inherited val top-1 % on {val_images} images after BatchNorm recalibration on {calib_images}")


def load_supernet(directory, device: str = "cpu") -> Tuple[Supernet, Dict]:
    """The trained supernet in ``directory`` (its ``supernet.pt``) and its saved state (minus optimiser)."""
    path = supernet_file(directory)
    state = read_state(path)
    net = Supernet(state["shapes"], state["kernels"])
    net.weights.load_state_dict(state["weights"])
    state = {k: v for k, v in state.items() if k not in ("weights", "optimizer", "scheduler")}
    return net.to(device), state


class SupernetScore:
    """Callable ``(spec, name) -> Score`` (inherited val top-1 %), the ``--objective supernet`` scorer."""

    name = NAME

    def __init__(self, directory, *, calib_images: int = 256, val_images: int = 1000, batch: int = 128,
                 device: str = "cpu", data=None):
        self.directory = Path(directory)
        self.net, self.state = load_supernet(directory, device)
        self.cfg = SupernetConfig(**self.state["config"])
        self.calib_images, self.val_images, self.batch = calib_images, val_images, batch
        self.device = device
        self._data = data
        self._calib: Optional[torch.Tensor] = None
        self.cache: Dict[str, object] = {}

    @property
    def supernet_id(self) -> str:
        return self.state["id"]

    def describe(self) -> str:
        return "supernet " + describe_supernet(self.directory, self.calib_images, self.val_images)

    def prepare(self):
        if self._data is None:
            from ..train.score import open_data
            self._data = open_data(self.cfg.train_config())
        if self._calib is None:
            from ..train.loop import prepare
            train = self._data.train
            gen = torch.Generator().manual_seed(12345)
            idx = torch.randperm(len(train), generator=gen)[: self.calib_images].tolist()
            was = getattr(train, "train", None)
            if was is not None:
                train.train = False   # no augmentation: the statistics of the images as they are
            try:
                xs = torch.stack([train[i][0] for i in idx])
            finally:
                if was is not None:
                    train.train = was
            self._calib = prepare(xs, train).to(self.device)
        return self._data

    def fit(self, spec):
        from ..train.loop import training_spec
        d = self.prepare()
        return training_spec(spec, len(d.classes), self.cfg.resolution, d.in_chans)

    def model(self, spec):
        """The subnet of ``spec`` with inherited weights and recalibrated statistics (eval mode)."""
        self.prepare()
        return self.net.materialize(self.fit(spec), self._calib, self.batch)

    def __call__(self, spec, name: str = NAME):
        from ..train.loop import evaluate
        from ..train.score import Score
        key = arch_key(spec)
        if key in self.cache:
            return self.cache[key]
        t0 = time.perf_counter()
        data = self.prepare()
        model = self.model(spec)
        vx, vy = data.val[0][: self.val_images].to(self.device), data.val[1][: self.val_images].to(self.device)
        top1, loss = evaluate(model, vx, vy, data.train, self.batch)
        score = Score(top1, {"top1": round(top1, 4), "val_loss": round(loss, 5),
                             "seconds": round(time.perf_counter() - t0, 3), "supernet_id": self.supernet_id})
        self.cache[key] = score
        return score


def extract(directory, spec, out, *, calib_images: int = 256, device: str = "cpu", data=None) -> Dict:
    """Write ``spec``'s subnet (inherited weights, recalibrated BatchNorm) as an ordinary archc checkpoint that
    ``archc build`` of the spec loads strictly and ``archc train --init`` fine-tunes."""
    from ..weights import save_weights
    scorer = SupernetScore(directory, calib_images=calib_images, device=device, data=data)
    fitted = scorer.fit(spec)
    model = scorer.model(spec)
    save_weights(model.cpu(), out, spec=fitted)
    return {"out": str(out), "spec": fitted.name, "params": sum(p.numel() for p in model.parameters()),
            "supernet_id": scorer.supernet_id}
