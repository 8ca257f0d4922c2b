"""Train a candidate briefly and report its validation top-1: the ``train`` objective's measurement.

The recipe is timm's, shortened: AdamW (no weight decay on norms, biases and layer scales), linear
warmup then cosine decay per step, label smoothing, gradient clipping. The spec is rebuilt with the
dataset's class count and the training resolution (``load_spec`` checks that the architecture takes
it); latency is still measured on the spec as searched. With a fixed seed the weights, the batch
order, the augmentation and so the score are reproducible (bit for bit at a fixed thread count).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..builder import build
from ..errors import TrainError
from ..spec import Spec, load_spec, spec_to_dict
from .config import TrainConfig
from .transforms import normalize


@dataclass
class TrainResult:
    top1: float            # validation top-1 in percent: the score
    val_loss: float
    train_loss: float      # mean cross-entropy (with smoothing) over the last tenth of the steps
    first_loss: float      # the same over the first tenth: train_loss < first_loss means it learned
    steps: int
    images: int
    seconds: float
    num_classes: int
    resolution: int

    def attrs(self) -> Dict[str, float]:
        """What a search records per trial (user attributes ``score_*``)."""
        return {"top1": round(self.top1, 4), "val_loss": round(self.val_loss, 5),
                "train_loss": round(self.train_loss, 5), "first_loss": round(self.first_loss, 5),
                "train_seconds": round(self.seconds, 2), "train_steps": self.steps}


def training_spec(spec: Spec, num_classes: int, resolution: int, in_chans: Optional[int] = None) -> Spec:
    """``spec`` with the dataset's head, the training resolution and (where the data fixes them) its input
    channels (a SpecError if it cannot take them)."""
    overrides = {"num_classes": num_classes, "input_size": [resolution, resolution]}
    if in_chans is not None:
        overrides["in_chans"] = in_chans
    trained = load_spec(spec_to_dict(spec), overrides)
    return dataclasses.replace(trained, source=spec.source)  # messages name the spec's file, not '<dict>'


def check_training_memory(spec: Spec, batch: int) -> None:
    """The memory guard at the training batch (``--train-batch``): weights plus the inference peak of
    ``batch`` images, a floor of what training needs (it also keeps activations for the backward pass), so a
    batch that cannot fit is refused before anything is allocated."""
    from ..guards import check_memory
    check_memory(spec, batch, key="--train-batch")


def param_groups(model: nn.Module, weight_decay: float) -> List[dict]:
    """timm's rule: 1-d parameters (norm weights, biases, layer scales) get no weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(steps: int, warmup: int, floor: float = 0.01):
    """LR factor per step: linear from 1/warmup to 1, then cosine down to ``floor``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return factor


def prepare(x: torch.Tensor, dataset: Dataset) -> torch.Tensor:
    """uint8 images are normalised with the dataset's mean/std; float ones are taken as they are."""
    if x.dtype == torch.uint8:
        return normalize(x, dataset.mean, dataset.std)
    return x.float()


def preload(dataset: Dataset, batch: int = 256) -> Tuple[torch.Tensor, torch.Tensor]:
    """The whole (validation) set as two tensors: decoded once, evaluated for every candidate."""
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dataset: Dataset, batch: int) -> Tuple[float, float]:
    """(top-1 %, mean cross-entropy) in eval mode (BatchNorm running statistics)."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch):
        logits = model(prepare(x[i:i + batch], dataset))
        target = y[i:i + batch]
        loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(1) == target).sum())
    return 100.0 * correct / len(y), loss / len(y)


class SeededOrder(Sampler):
    """Endless ``(index, augmentation seed)`` pairs, a seeded shuffle per epoch. The seeds are drawn
    here, in the trainer's process, so DataLoader workers change nothing about the batches; every batch
    is full, which keeps BatchNorm statistics comparable across steps."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        gen = torch.Generator().manual_seed(self.seed)
        while True:
            order = torch.randperm(self.size, generator=gen).tolist()
            seeds = torch.randint(0, 2 ** 32, (self.size,), generator=gen).tolist()  # torch seeds keep 32 bits
            yield from zip(order, seeds)


def batches(dataset: Dataset, cfg: TrainConfig) -> DataLoader:
    """An endless loader of seeded, shuffled, augmented batches (the loop counts the steps)."""
    return DataLoader(dataset, batch_size=cfg.batch, sampler=SeededOrder(len(dataset), cfg.seed),
                      num_workers=cfg.loader_workers)


def train_candidate(spec: Spec, train_set: Dataset, val: Tuple[torch.Tensor, torch.Tensor], cfg: TrainConfig,
                    num_classes: int, *, build_fn=build, in_chans: Optional[int] = None,
                    on_step: Optional[Callable[[int, int], None]] = None) -> TrainResult:
    """Train ``spec`` for ``cfg.total_steps(len(train_set))`` steps and evaluate on ``val`` (preloaded).
    ``on_step(done, steps)`` hears of the progress about 20 times (a candidate can train for minutes)."""
    from ..threads import torch_threads
    spec = training_spec(spec, num_classes, cfg.resolution, in_chans)
    check_training_memory(spec, cfg.batch)
    steps = cfg.total_steps(len(train_set))
    warmup = cfg.warmup(steps)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]), torch_threads(cfg.threads or torch.get_num_threads()):
        torch.manual_seed(cfg.seed)  # weights and drop path (batch order and augmentation: SeededOrder)
        model = build_fn(spec)
        model.train()
        opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, warmup))
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        losses: List[float] = []
        images = 0
        stream = iter(batches(train_set, cfg))
        for step in range(steps):
            x, y = next(stream)
            loss = criterion(model(prepare(x, train_set)), torch.as_tensor(y))
            if not torch.isfinite(loss):
                raise TrainError(f"{spec.name}: training loss became {float(loss.detach())} at step {step + 1} "
                                 f"of {steps} (lr {cfg.lr:g}); lower --train-lr or check the spec")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            images += len(y)
            if on_step and ((step + 1) % max(1, steps // 20) == 0 or step + 1 == steps):
                on_step(step + 1, steps)
        del stream  # stops loader workers
        top1, val_loss = evaluate(model, val[0], val[1], train_set, cfg.eval_batch)
    if not math.isfinite(val_loss):
        raise TrainError(f"{spec.name}: validation loss is {val_loss} after {steps} steps")
    tenth = max(1, steps // 10)
    return TrainResult(top1=top1, val_loss=val_loss, train_loss=sum(losses[-tenth:]) / tenth,
                       first_loss=sum(losses[:tenth]) / tenth, steps=steps, images=images,
                       seconds=time.perf_counter() - t0, num_classes=num_classes, resolution=cfg.resolution)
