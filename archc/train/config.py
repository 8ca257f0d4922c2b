"""Settings of the ``train`` objective: plain data, so they cross to worker processes and into a study.

Defaults are sized for a CPU: 64 px, batch 32, 100 steps take about a minute for an S12-sized
candidate on one thread (docs in search/README.md). Everything that changes the score is in
``fingerprint()``, which a search stores with its study, so resuming with other settings is refused
instead of mixing incomparable scores.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import ArchcError

#: upper bounds of the count-like settings: beyond them a run is a typo, not a plan (hours per candidate)
MAX_REPEATS = 100
MAX_BATCH = 65_536
MAX_STEPS = 10_000_000
MAX_EPOCHS = 10_000
MAX_IMAGES = 10_000_000


@dataclass(frozen=True)
class TrainConfig:
    data: Optional[str] = None         # ImageFolder root; None: the built-in synthetic set
    steps: int = 100                   # optimiser steps (ignored when epochs is set)
    epochs: Optional[float] = None     # passes over the training set instead of steps
    batch: int = 32
    resolution: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    clip_grad: Optional[float] = 5.0
    seed: int = 0                      # weights, batch order, augmentation, the folder split
    repeats: int = 1                   # train with seeds seed .. seed+repeats-1 and score the mean top-1
    val_fraction: float = 0.1          # held out per class when the folder has no val/
    val_images: int = 1000             # at most this many validation images (a seeded subset)
    synthetic_classes: int = 10
    synthetic_seed: int = 0            # the synthetic data itself: fixed, so --train-seed varies only training
    synthetic_images: int = 5000       # training images of the synthetic set
    eval_batch: int = 128
    loader_workers: int = 0            # DataLoader processes decoding images (0: in the trainer)
    threads: Optional[int] = None      # torch intra-op threads while training (None: as set)

    #: the command-line flag of each setting, for error messages
    FLAGS = {"data": "--data", "steps": "--train-steps", "epochs": "--train-epochs", "batch": "--train-batch",
             "resolution": "--train-resolution", "lr": "--train-lr", "seed": "--train-seed", "repeats": "--train-repeats",
             "val_images": "--train-val-images", "loader_workers": "--train-workers", "threads": "--train-threads"}

    def total_steps(self, train_images: int) -> int:
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * train_images / self.batch))
        return self.steps

    def warmup(self, steps: int) -> int:
        return max(1, round(steps * self.warmup_fraction))

    def check(self) -> "TrainConfig":
        """Every setting in range, or an ArchcError naming its flag and value."""
        def bad(name: str, rule: str) -> ArchcError:
            flag = self.FLAGS.get(name, name)
            return ArchcError(f"{flag} must be {rule}, got {getattr(self, name)!r}")
        for name in ("steps", "batch", "val_images", "eval_batch", "synthetic_images", "repeats"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "at least 1")
        if self.batch < 2:
            raise bad("batch", "at least 2 (BatchNorm in training mode needs two samples)")
        if self.synthetic_classes < 2:
            raise bad("synthetic_classes", "at least 2")
        if not 8 <= self.resolution <= 4096:
            raise bad("resolution", "between 8 and 4096 pixels")
        if self.epochs is not None and not self.epochs > 0:
            raise bad("epochs", "a positive number")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "a positive number")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "in [0, 1)")
        if not 0 < self.val_fraction < 1:
            raise bad("val_fraction", "in (0, 1)")
        cores = os.cpu_count() or 1
        if not 0 <= self.loader_workers <= cores:
            raise bad("loader_workers", f"0 to {cores} (this machine's cores)")
        if self.threads is not None and not 1 <= self.threads <= cores:
            raise bad("threads", f"1 to {cores} (this machine's cores)")
        for name, most in (("repeats", MAX_REPEATS), ("batch", MAX_BATCH), ("steps", MAX_STEPS),
                           ("val_images", MAX_IMAGES), ("synthetic_images", MAX_IMAGES)):
            if int(getattr(self, name)) > most:
                raise bad(name, f"at most {most:,}")
        if self.epochs is not None and self.epochs > MAX_EPOCHS:
            raise bad("epochs", f"at most {MAX_EPOCHS:,}")
        return self

    def describe(self) -> str:
        data = f"image folder {self.data}" if self.data else f"synthetic textures ({self.synthetic_classes} classes)"
        length = f"{self.epochs:g} epochs" if self.epochs is not None else f"{self.steps} steps"
        seeds = f"seed {self.seed}" if self.repeats == 1 else \
            f"mean over seeds {self.seed}..{self.seed + self.repeats - 1}"
        return f"val top-1 % after {length} x batch {self.batch} at {self.resolution} px on {data}, {seeds}"

    def fingerprint(self) -> Dict[str, Any]:
        """The settings that change scores (not workers or threads); the data path made absolute."""
        d = dataclasses.asdict(self)
        for k in ("loader_workers", "threads", "eval_batch"):
            d.pop(k)
        if self.data:
            d["data"] = str(Path(self.data).expanduser().resolve())
        return d

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "TrainConfig":
        return cls(**(d or {}))
