"""``fit``: a full training run of one spec, resumable, with checkpoints that the rest of archc takes.

The recipe is the brief-training one of ``loop`` (AdamW without decay on 1-d parameters, linear warm-up then
cosine per step, label smoothing, gradient clipping) run for whole epochs, with an optional EMA of the
weights (``torch.optim.swa_utils.AveragedModel``). After every epoch the validation split (carved from the
training set) is scored and these files are replaced atomically in ``out``:

- ``last.pt`` / ``best.pt``: archc checkpoints (``save_weights`` format: weights + spec) of the evaluated
  weights (the EMA when on), which ``archc export --weights``, ``bench --weights`` and
  ``create_model(weights=)`` load; ``best.pt`` is the epoch with the best validation top-1;
- ``spec.yaml``: the spec as trained (the dataset's classes, channels and size), for ``--weights`` users;
- ``state.pt``: everything a resume needs (weights, optimiser, schedule, EMA, RNG state, history), so a
  kill -9 loses at most the epoch in flight, and a resumed run is the same run: each epoch's order and
  augmentation come from ``(seed, epoch)``.

The test split, where the data has one, is scored once, with ``best.pt``; it never chooses anything.
The deploy graph (``archc.reparameterize``) is scored on the validation split too: it must agree.

Scale-out is torch's own: under ``torchrun --nproc_per_node N`` the model is wrapped in
``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA) and each process takes its share of every global
batch, so N processes see the same batches as one (BatchNorm statistics stay per process).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler

from ..builder import build
from ..errors import TrainError
from ..outputs import atomic_torch_save, atomic_write_text
from ..spec import Spec, spec_to_dict
from .config import TrainConfig
from .loop import check_training_memory, evaluate, param_groups, prepare, training_spec, warmup_cosine
from .score import Data

STATE_VERSION = 1


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_top1: float
    val_loss: float
    lr: float
    seconds: float
    images_per_s: float


@dataclass
class FitResult:
    spec: Dict[str, Any]              # the trained spec (dataset head, size, channels) as a mapping
    epochs: int
    steps: int
    best_epoch: int
    val_top1: float                   # percent, best epoch, the evaluated weights (EMA when on)
    val_top1_deploy: float            # the deploy graph of best.pt on the same split
    test_top1: Optional[float]        # percent, best.pt on the official test split (reported only)
    params: int
    train_seconds: float              # training and per-epoch validation, summed over resumes
    history: List[EpochRecord] = field(default_factory=list)
    out: Optional[str] = None
    resumed_from: int = 0             # epochs already done when this process started
    processes: int = 1                # DistributedDataParallel processes (torchrun), sharing each batch

    def to_json(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["history"] = [dataclasses.asdict(h) for h in self.history]
        return d


def recipe(cfg: TrainConfig, ema: Optional[float]) -> Dict[str, Any]:
    """What makes two runs the same run (a resume must match it)."""
    d = cfg.fingerprint()
    d.pop("steps", None)
    d.pop("repeats", None)
    d["ema"] = ema
    return d


class EpochOrder(Sampler):
    """``(index, augmentation seed)`` pairs of one epoch from ``(seed, epoch)``: full batches only, and for
    process ``rank`` of ``world`` its share of each global batch."""

    def __init__(self, size: int, batch: int, seed: int, epoch: int, rank: int = 0, world: int = 1):
        self.size, self.batch, self.seed, self.epoch, self.rank, self.world = size, batch, seed, epoch, rank, world

    def pairs(self) -> List[Tuple[int, int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        seeds = torch.randint(0, 2 ** 32, (self.size,), generator=gen).tolist()
        n = (self.size // self.batch) * self.batch
        return list(zip(order[:n], seeds[:n]))

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        pairs = self.pairs()
        for i in range(0, len(pairs), self.batch):
            yield from pairs[i:i + self.batch][self.rank::self.world]

    def __len__(self) -> int:
        return (self.size // self.batch) * len(range(self.rank, self.batch, self.world))


def _write_spec(spec: Spec, path: Path) -> None:
    from ..spec import save_spec
    save_spec(spec, path)  # atomic


def _checkpoint(model: nn.Module, spec: Spec) -> Dict[str, Any]:
    from ..weights import ARCHC_FORMAT, ARCHC_FORMAT_VERSION
    return {"format": ARCHC_FORMAT, "version": ARCHC_FORMAT_VERSION, "deploy": False, "spec": spec_to_dict(spec),
            "state_dict": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}}


def _diff(a: Dict[str, Any], b: Dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:6])


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_int(name: str, default: int) -> int:
    """A whole number from torchrun's environment (``RANK``, ``WORLD_SIZE``); anything else is one clear error."""
    from ..errors import ArchcError
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw.strip() else default
    except ValueError:
        value = -1
    if value < 0:
        raise ArchcError(f"environment variable {name}={raw[:40]!r}: must be a whole number >= 0 (torchrun sets it; "
                         f"unset it to train in one process)")
    return value


def _distributed(device: torch.device) -> _Dist:
    """torchrun's environment -> an initialised process group (gloo on CPU, NCCL on CUDA), or one process."""
    world = env_int("WORLD_SIZE", 1)
    if world <= 1:
        return _Dist()
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def fit(spec: Spec, data: Data, cfg: TrainConfig, *, epochs: int, out: Optional[Path] = None,
        ema: Optional[float] = None, device: str = "cpu", resume: bool = True,
        progress: Optional[Callable[[Dict[str, Any]], None]] = None, init: Optional[Path] = None) -> FitResult:
    """Train ``spec`` on ``data`` for ``epochs`` epochs (see the module docstring). ``init``: an archc
    checkpoint of this architecture to start from (loaded strictly), e.g. a subnet extracted from a supernet."""
    from ..threads import torch_threads
    if epochs < 1:
        raise TrainError(f"--epochs must be at least 1, got {epochs}")
    if ema is not None and not 0 < ema < 1:
        raise TrainError(f"--ema must be a decay in (0, 1), e.g. 0.999, got {ema}")
    dev = torch.device(device)
    dist = _distributed(dev)
    if cfg.batch % dist.world:
        raise TrainError(f"--batch {cfg.batch} does not split over {dist.world} processes; use a multiple of "
                         f"{dist.world}")
    spec = training_spec(spec, len(data.classes), cfg.resolution, data.in_chans)
    check_training_memory(spec, cfg.batch // dist.world)
    per_epoch = len(data.train) // cfg.batch
    if per_epoch < 1:
        raise TrainError(f"--batch {cfg.batch} is larger than the training split ({len(data.train)} images)")
    steps = epochs * per_epoch
    fingerprint = {"spec": spec_to_dict(spec), "recipe": recipe(cfg, ema), "epochs": epochs, "data": data.description}
    if init is not None:
        fingerprint["init"] = str(Path(init).resolve())
    state_path = out / "state.pt" if out is not None else None
    state = _read_state(state_path, fingerprint) if resume and state_path is not None and state_path.exists() else None

    with torch_threads(cfg.threads or torch.get_num_threads()):
        torch.manual_seed(cfg.seed)
        model = build(spec)
        if init is not None and state is None:
            from ..weights import load_weights
            load_weights(model, init, strict=True)
        model = model.to(dev)
        opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, cfg.warmup(steps)))
        averaged = None
        if ema is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
            averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True)
        history: List[EpochRecord] = []
        start, best, best_epoch, seconds = 0, -1.0, 0, 0.0
        best_state = None  # in memory when nothing is written (out is None)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if averaged is not None:
                averaged.load_state_dict(state["ema"])
            torch.set_rng_state(state["rng"])
            history = [EpochRecord(**h) for h in state["history"]]
            start, best, best_epoch, seconds = state["epoch"], state["best"], state["best_epoch"], state["seconds"]
        net = model
        if dist.world > 1:
            net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        scored = averaged.module if averaged is not None else model
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            net.train()
            order = EpochOrder(len(data.train), cfg.batch, cfg.seed, epoch, dist.rank, dist.world)
            loader = DataLoader(data.train, batch_size=cfg.batch // dist.world, sampler=order,
                                num_workers=cfg.loader_workers)
            total, count = 0.0, 0
            for i, (x, y) in enumerate(loader):
                x, y = prepare(x.to(dev), data.train), torch.as_tensor(y).to(dev)
                loss = criterion(net(x), y)
                if not torch.isfinite(loss):
                    raise TrainError(f"{spec.name}: training loss became {float(loss.detach())} in epoch "
                                     f"{epoch + 1}, step {i + 1} (lr {cfg.lr:g}); lower --lr or check the spec")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                opt.step()
                sched.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                total += float(loss.detach()) * len(y)
                count += len(y)
                if progress is not None and dist.main:
                    progress({"epoch": epoch, "epochs": epochs, "step": i + 1, "steps": per_epoch,
                              "loss": total / count, "seconds": seconds + time.perf_counter() - t0})
            if dist.world > 1:
                torch.distributed.barrier()
            val_top1, val_loss = evaluate(scored, data.val[0].to(dev), data.val[1].to(dev), data.train,
                                          cfg.eval_batch)
            dt = time.perf_counter() - t0
            seconds += dt
            rec = EpochRecord(epoch + 1, round(total / max(count, 1), 5), round(val_top1, 4), round(val_loss, 5),
                              round(sched.get_last_lr()[0], 8), round(dt, 2), round(count * dist.world / dt, 1))
            history.append(rec)
            improved = val_top1 > best
            if improved:
                best, best_epoch = val_top1, epoch + 1
            if out is not None and dist.main:
                out.mkdir(parents=True, exist_ok=True)
                if not (out / "spec.yaml").exists():
                    _write_spec(spec, out / "spec.yaml")
                ckpt = _checkpoint(scored, spec)
                atomic_torch_save(ckpt, out / "last.pt")
                if improved:
                    atomic_torch_save(ckpt, out / "best.pt")
                atomic_torch_save({"version": STATE_VERSION, "fingerprint": fingerprint, "epoch": epoch + 1,
                              "model": model.state_dict(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "ema": averaged.state_dict() if averaged else None,
                              "rng": torch.get_rng_state(), "history": [dataclasses.asdict(h) for h in history],
                              "best": best, "best_epoch": best_epoch, "seconds": seconds}, state_path)
            elif improved:
                best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
            if progress is not None and dist.main:
                progress({"epoch": epoch + 1, "epochs": epochs, "record": rec})
        if dist.world > 1:
            torch.distributed.barrier()
        final = _best_model(spec, out, best_state, scored, dev)
        val_deploy = _deploy_top1(final, spec, data, cfg, dev)
        test = None
        if data.test is not None:
            test, _ = evaluate(final, data.test[0].to(dev), data.test[1].to(dev), data.train, cfg.eval_batch)
    result = FitResult(spec=spec_to_dict(spec), epochs=epochs, steps=steps, best_epoch=best_epoch,
                       val_top1=round(best, 4), val_top1_deploy=round(val_deploy, 4),
                       test_top1=round(test, 4) if test is not None else None,
                       params=sum(p.numel() for p in model.parameters()), train_seconds=round(seconds, 2),
                       history=history, out=str(out) if out is not None else None,
                       resumed_from=state["epoch"] if state is not None else 0, processes=dist.world)
    if out is not None and dist.main:
        atomic_write_text(out / "summary.json", json.dumps(result.to_json(), indent=1) + "\n")
    return result


def _read_state(path: Path, fingerprint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The resume state in ``path``, refused (with the settings that differ) when it is another run's."""
    from ..weights import read_checkpoint
    state = read_checkpoint(path)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise TrainError(f"{path}: not an archc training state (version {STATE_VERSION}); "
                         "use another --out or remove it to start afresh")
    old = state["fingerprint"]
    if old != fingerprint:
        parts = [f"{k}: {_diff(old[k], fingerprint[k])}" if isinstance(old.get(k), dict) else
                 f"{k}: {old.get(k)!r} -> {fingerprint[k]!r}" for k in fingerprint if old.get(k) != fingerprint[k]]
        raise TrainError(f"{path} is from another training run ({'; '.join(parts)}); use another --out, the "
                         "same settings, or --fresh to start over")
    return state


def _best_model(spec: Spec, out: Optional[Path], best_state, scored: nn.Module, dev) -> nn.Module:
    """The weights of the best epoch (``best.pt`` where written) in a fresh eval-mode model."""
    model = build(spec).to(dev)
    if out is not None and (out / "best.pt").exists():
        from ..weights import load_weights
        load_weights(model, out / "best.pt")
    elif best_state is not None:
        model.load_state_dict(best_state)
    else:
        model.load_state_dict(scored.state_dict())
    return model.to(dev).eval()


def _deploy_top1(model: nn.Module, spec: Spec, data: Data, cfg: TrainConfig, dev) -> float:
    """Validation top-1 of the reparameterized graph of ``model`` (verified by the pass as it folds)."""
    from ..passes import reparameterize
    x = prepare(data.val[0][:2], data.train).to(dev)
    deploy = reparameterize(copy.deepcopy(model).cpu().eval(), example=x.cpu()).to(dev)
    top1, _ = evaluate(deploy, data.val[0].to(dev), data.val[1].to(dev), data.train, cfg.eval_batch)
    return top1
