"""``TrainScore``: the ``train`` objective as a score function ``(spec, name) -> float``.

It fits the same seam as the zero-cost proxies (``Objective.score_fn``, ``ablate.evaluate``). The
datasets are opened once per process, on first use or by ``prepare()`` (which a search calls before
its first trial, so a bad ``--data`` stops it at once), and the validation set is decoded once and
kept in memory for every candidate.
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.utils.data import Dataset, Subset

from .config import TrainConfig
from .loop import TrainResult, preload, train_candidate

NAME = "train"
#: the validation hold-out of an IDX set is fixed, whatever the training seed
IDX_SPLIT_SEED = 0


class Score(float):
    """A score with details: a float everywhere; ``attrs`` are recorded per trial as ``score_KEY``."""

    attrs: Dict[str, float]

    def __new__(cls, value: float, attrs: Optional[Dict[str, float]] = None) -> "Score":
        obj = super().__new__(cls, value)
        obj.attrs = dict(attrs or {})
        return obj


@dataclass
class Data:
    train: Dataset
    val: Tuple[torch.Tensor, torch.Tensor]
    classes: List[str]
    description: str
    test: Optional[Tuple[torch.Tensor, torch.Tensor]] = None  # an official test split: reported, never chosen on
    in_chans: Optional[int] = None  # the images' channels where the spec must take them (1: grey IDX sets)


def seeded_subset(dataset: Dataset, limit: int, seed: int) -> Dataset:
    if len(dataset) <= limit:
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    return Subset(dataset, sorted(order[:limit]))


def open_data(cfg: TrainConfig) -> Data:
    """The training set and the preloaded validation set that ``cfg`` names."""
    from .idx import resolve_dir
    idx_dir = resolve_dir(cfg.data) if cfg.data else None
    if idx_dir is not None:
        return open_idx_data(idx_dir, cfg)
    if cfg.data:
        from .folder import image_folder
        splits = image_folder(cfg.data, cfg.resolution, val_fraction=cfg.val_fraction, seed=cfg.seed)
        val = seeded_subset(splits.val, cfg.val_images, cfg.seed)
        desc = (f"{cfg.data}: {len(splits.classes)} classes, {len(splits.train)} train / {len(val)} val images "
                f"({splits.layout})")
        train, classes = splits.train, splits.classes
    else:
        from .synthetic import SyntheticImages
        kw = dict(num_classes=cfg.synthetic_classes, resolution=cfg.resolution, seed=cfg.synthetic_seed)
        train = SyntheticImages(cfg.synthetic_images, split="train", **kw)
        val = SyntheticImages(cfg.val_images, split="val", **kw)
        classes = train.classes
        desc = f"synthetic textures: {len(classes)} classes, {len(train)} train / {len(val)} val images"
    val_x, val_y = preload(val)  # uint8 for folders (normalised per batch like the training images)
    return Data(train=train, val=(val_x, val_y), classes=list(classes), description=desc)


#: fewer validation images than this make a top-1 too coarse to rank candidates (warned, not refused)
MIN_VAL_IMAGES = 100


class TrainScore:
    """Callable ``(spec, name) -> Score`` (val top-1 %) configured once, e.g. from the command line."""

    name = NAME

    def __init__(self, cfg: TrainConfig = TrainConfig(), *, build_fn=None):
        self.cfg = cfg.check()
        self.build_fn = build_fn
        self._data: Optional[Data] = None
        self.last: Optional[TrainResult] = None
        #: ``status(text)``, told of each candidate's training steps (the search's progress line shows it)
        self.on_status: Optional[Callable[[str], None]] = None

    def prepare(self) -> Data:
        if self._data is None:
            data = open_data(self.cfg)
            if self.cfg.batch > len(data.train):
                from ..errors import ArchcError
                raise ArchcError(f"--train-batch {self.cfg.batch} is larger than the training set "
                                 f"({len(data.train)} images: {data.description})")
            if len(data.val[1]) < MIN_VAL_IMAGES:  # each image is > 1 point of top-1: a coarse, noisy score
                print(f"archc: warning: only {len(data.val[1])} validation images ({data.description}): one image "
                      f"is {100 / max(len(data.val[1]), 1):.3g} points of top-1, too coarse to rank close candidates; "
                      f"give a larger validation split (at least {MIN_VAL_IMAGES} images)", file=sys.stderr)
            self._data = data
        return self._data

    def result(self, spec, cfg: Optional[TrainConfig] = None) -> TrainResult:
        """One training run of ``spec`` with ``cfg`` (default: this objective's settings) on the data
        this objective opened."""
        data = self.prepare()
        kw = {"build_fn": self.build_fn} if self.build_fn else {}
        if self.on_status:
            status = self.on_status
            kw["on_step"] = lambda done, steps: status(f"training {spec.name}: step {done}/{steps}")
        self.last = train_candidate(spec, data.train, data.val, cfg or self.cfg, len(data.classes),
                                    in_chans=data.in_chans, **kw)
        return self.last

    def __call__(self, spec, name: str = NAME) -> Score:
        """Val top-1 % of ``spec`` after brief training; with ``repeats`` > 1 the mean over that many
        training seeds (``seed``, ``seed + 1``, ...), recorded with the spread and each seed's top-1."""
        if self.cfg.repeats == 1:
            r = self.result(spec)
            return Score(r.top1, r.attrs())
        base = self.cfg
        runs = [self.result(spec, dataclasses.replace(base, seed=base.seed + k, repeats=1))
                for k in range(base.repeats)]
        top1 = [r.top1 for r in runs]
        mean = statistics.fmean(top1)
        attrs = {k: round(statistics.fmean(r.attrs()[k] for r in runs), 5)
                 for k in ("val_loss", "train_loss", "first_loss")}
        attrs.update(top1=round(mean, 4), top1_std=round(statistics.stdev(top1), 4),
                     train_seconds=round(sum(r.seconds for r in runs), 2), train_steps=runs[0].steps,
                     **{f"top1_seed{base.seed + k}": round(t, 4) for k, t in enumerate(top1)})
        return Score(mean, attrs)


def open_idx_data(folder, cfg: TrainConfig) -> Data:
    """An IDX set (Fashion-MNIST): ``val_images`` held out of the official training split, class-balanced,
    the rest trained on; the official test split kept apart, for reporting only. The hold-out is the same for
    every training seed (``IDX_SPLIT_SEED``), so seed replicates are scored on the same images. The images
    keep their one grey channel (the spec is built with ``in_chans: 1``)."""
    from .idx import TensorImages, open_idx, stratified_split
    s = open_idx(folder)
    (images, labels), (test_x, test_y) = s.train, s.test
    train_idx, val_idx = stratified_split(labels, cfg.val_images, IDX_SPLIT_SEED)
    train = TensorImages(images[train_idx], labels[train_idx], s.classes, cfg.resolution, train=True)
    val = TensorImages(images[val_idx], labels[val_idx], s.classes, cfg.resolution, train=False)
    test = TensorImages(test_x, test_y, s.classes, cfg.resolution, train=False)
    desc = (f"IDX set {folder}: {len(s.classes)} classes, {len(train)} train / {len(val)} val (held out of the "
            f"training split) / {len(test)} test images, 1 grey channel")
    return Data(train=train, val=(val.images, val.labels), classes=list(s.classes), description=desc,
                test=(test.images, test.labels), in_chans=1)
