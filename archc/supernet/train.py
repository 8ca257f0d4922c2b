"""``train_supernet``: one weight-sharing training of a whole search space, resumable after kill -9.

Each step takes one batch and trains the sandwich of subnets (``sampling.sandwich``): the largest with the
labels (cross-entropy with label smoothing), the others distilled in place from the largest's detached
predictions (KL divergence; ``distill=False``: labels for all). Gradients of all of them are summed into the
shared weights, clipped, and one AdamW step is taken (no decay on 1-d weights), warm-up then cosine per step:
the recipe of ``archc train``.

``DIR/supernet.pt`` holds everything: the shared weights, optimiser and schedule, the step, the history and
the run's fingerprint. It is replaced atomically every ``save_every_s`` seconds and at the end, so a kill
loses at most that much; a rerun with the same settings goes on from the saved step and visits the same
batches and subnets as an unbroken run (both come from ``(seed, step)``). Under ``torchrun`` each process
takes its share of every global batch and the shared weights' gradients are averaged with
``torch.distributed.all_reduce`` before each step (gloo on CPU, NCCL on CUDA): DistributedDataParallel's
arithmetic, done by hand because subnets run through ``functional_call`` rather than one wrapped module.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ArchcError
from ..outputs import atomic_torch_save
from .shared import KERNEL_MODES, SupernetError

FORMAT = "archc-supernet"
VERSION = 1
FILE = "supernet.pt"


@dataclass
class SupernetConfig:
    space: str                       # a search space file or shipped name
    data: Optional[str] = "fashion-mnist"
    epochs: float = 1.0
    batch: int = 64
    resolution: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    clip_grad: Optional[float] = 5.0
    seed: int = 0
    random_subnets: int = 2          # per step, besides the largest and the smallest
    distill: bool = True             # in-place distillation from the largest subnet
    kernels: str = "separate"        # elastic kernels: per-kernel weights or Once-for-All's centre crop
    val_images: int = 5000           # held out of the training split (the ground truth's split)
    threads: Optional[int] = 1

    def check(self) -> "SupernetConfig":
        if self.kernels not in KERNEL_MODES:
            raise ArchcError(f"--kernels must be one of {', '.join(KERNEL_MODES)}, got {self.kernels!r}")
        if not (self.epochs > 0 and math.isfinite(self.epochs)) or self.epochs > 1000:
            raise ArchcError(f"--epochs must be a positive number up to 1000, got {self.epochs!r}")
        if not 0 <= self.random_subnets <= 16:
            raise ArchcError(f"--random-subnets must be 0 to 16, got {self.random_subnets!r}")
        self.train_config()  # batch, lr, resolution, ... checked by archc train's own rules
        return self

    def train_config(self):
        from ..train import TrainConfig
        return TrainConfig(data=self.data, batch=self.batch, resolution=self.resolution, lr=self.lr,
                           weight_decay=self.weight_decay, warmup_fraction=self.warmup_fraction,
                           label_smoothing=self.label_smoothing, clip_grad=self.clip_grad, seed=self.seed,
                           val_images=self.val_images, threads=self.threads).check()

    def fingerprint(self, space_name: str, space_text: str) -> Dict[str, Any]:
        """What makes two runs the same run: the settings (not threads), the space by name and content."""
        d = dataclasses.asdict(self)
        d.pop("threads")
        d["space"] = {"name": space_name, "sha256": hashlib.sha256(space_text.encode()).hexdigest()[:16]}
        if self.data:
            d["data"] = str(Path(self.data).expanduser()) if "/" in self.data else self.data
        return d


@dataclass
class SupernetResult:
    out: str
    steps: int
    steps_done: int
    resumed_from: int
    seconds: float                   # training steps, summed over resumes
    build_seconds: float             # finding the shared shapes and initialising them (once)
    keys: int
    shared_params: int
    subnets_per_step: int
    images_per_s: float
    history: List[Dict[str, Any]]
    supernet_id: str

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def supernet_id(fingerprint: Dict[str, Any], step: int) -> str:
    """What a study records to refuse another supernet: the run's settings and how far it trained."""
    return hashlib.sha256(json.dumps([fingerprint, step], sort_keys=True).encode()).hexdigest()[:16]


def _diff(old: Dict[str, Any], new: Dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def read_state(path: Path) -> Dict[str, Any]:
    from ..weights import read_checkpoint
    state = read_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
        raise SupernetError(f"{path}: not an archc supernet (format {FORMAT} version {VERSION})")
    return state


def _reduce_grads(params, world: int) -> None:
    import torch.distributed as dist
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


def train_supernet(cfg: SupernetConfig, out: Path, *, device: str = "cpu", fresh: bool = False,
                   save_every_s: float = 60.0, stop_after: Optional[int] = None,
                   progress: Optional[Callable[[Dict[str, Any]], None]] = None, data=None) -> SupernetResult:
    """Train (or go on training) the supernet of ``cfg.space`` into ``out`` (see the module docstring).
    ``stop_after``: stop (saved) after that many steps in this process, e.g. to test a resume."""
    from ..space import load_space, resolve_space_path
    from ..threads import torch_threads
    from ..train.fit import EpochOrder, _distributed
    from ..train.loop import param_groups, prepare, training_spec, warmup_cosine
    from ..train.score import open_data
    from .model import Supernet, meta_layouts
    from .sampling import covering, sandwich

    cfg.check()
    tcfg = cfg.train_config()
    space_path = resolve_space_path(cfg.space)
    space = load_space(space_path)
    fingerprint = cfg.fingerprint(space.name, space_path.read_text())
    out = Path(out)
    path = out / FILE
    state = None
    if path.exists() and not fresh:
        state = read_state(path)
        if state["fingerprint"] != fingerprint:
            raise SupernetError(f"{path} is another supernet run ({_diff(state['fingerprint'], fingerprint)}); "
                                "use another --out, the same settings, or --fresh to start over")
    dev = torch.device(device)
    dist = _distributed(dev)
    if cfg.batch % dist.world:
        raise SupernetError(f"--batch {cfg.batch} does not split over {dist.world} processes")
    data = data or open_data(tcfg)
    classes, in_chans = len(data.classes), data.in_chans

    def fit_data(spec):
        ok = (spec.num_classes == classes and tuple(spec.input_size) == (cfg.resolution,) * 2
              and (in_chans is None or spec.in_chans == in_chans))
        return spec if ok else training_spec(spec, classes, cfg.resolution, in_chans)

    per_epoch = len(data.train) // cfg.batch
    steps = max(1, math.ceil(cfg.epochs * per_epoch))
    with torch_threads(cfg.threads or torch.get_num_threads()):
        torch.manual_seed(cfg.seed)
        build_seconds = 0.0
        if state is not None:
            net = Supernet(state["shapes"], state["kernels"])
            build_seconds = state["build_seconds"]
        else:
            t0 = time.perf_counter()
            lay = meta_layouts(cfg.kernels)
            cover = covering(space, lambda s: frozenset(k for k, _ in lay(fit_data(s)).values()), seed=cfg.seed)
            net = Supernet.covering([fit_data(s) for s in cover], cfg.kernels, lay)
            build_seconds = time.perf_counter() - t0
            if progress is not None and dist.main:
                progress({"event": "built", "keys": len(net.weights.keys_), "seconds": build_seconds})
        net.to(dev)
        params = list(net.weights.parameters())
        opt = torch.optim.AdamW(param_groups(net.weights, cfg.weight_decay), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, tcfg.warmup(steps)))
        step, seconds, history = 0, 0.0, []
        if state is not None:
            net.weights.load_state_dict(state["weights"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            step, seconds, history = state["step"], state["seconds"], state["history"]
        start = step
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        def save() -> None:
            if not dist.main:
                return
            out.mkdir(parents=True, exist_ok=True)
            atomic_torch_save({"format": FORMAT, "version": VERSION, "fingerprint": fingerprint,
                               "config": dataclasses.asdict(cfg), "space_file": str(space_path),
                               "data": data.description, "shapes": net.weights.shapes(), "kernels": cfg.kernels,
                               "weights": net.weights.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "step": step, "steps": steps,
                               "seconds": seconds, "build_seconds": build_seconds, "history": history,
                               "id": supernet_id(fingerprint, step)}, path, "supernet")

        last_save = time.perf_counter()
        window = {"loss_largest": 0.0, "loss_others": 0.0, "n": 0}
        images = 0
        t_run = time.perf_counter()
        order = (-1, [])
        while step < steps and (stop_after is None or step - start < stop_after):
            epoch, within = divmod(step, per_epoch)
            t0 = time.perf_counter()
            if order[0] != epoch:
                order = (epoch, EpochOrder(len(data.train), cfg.batch, cfg.seed, epoch).pairs())
            pairs = order[1]
            batch = pairs[within * cfg.batch:(within + 1) * cfg.batch][dist.rank::dist.world]
            xs, ys = zip(*(data.train[p] for p in batch))
            x = prepare(torch.stack(xs), data.train).to(dev)
            y = torch.as_tensor(ys).to(dev)
            opt.zero_grad(set_to_none=True)
            teacher = None
            subnets = sandwich(space, cfg.seed, step, cfg.random_subnets)
            for kind, spec in subnets:
                spec = fit_data(spec)
                net.train_mode(spec)
                logits = net.forward(spec, x)
                if kind == "largest" or not cfg.distill:
                    loss = criterion(logits, y)
                else:
                    loss = F.kl_div(F.log_softmax(logits, 1), teacher, reduction="batchmean")
                if kind == "largest":
                    teacher = F.softmax(logits.detach(), 1)
                if not torch.isfinite(loss):
                    raise SupernetError(f"the {kind} subnet's loss became {float(loss)} at step {step + 1} "
                                        f"(lr {cfg.lr:g}); lower --lr")
                loss.backward()
                window["loss_largest" if kind == "largest" else "loss_others"] += float(loss.detach())
            window["n"] += 1
            if dist.world > 1:
                _reduce_grads(params, dist.world)
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(params, cfg.clip_grad)
            opt.step()
            sched.step()
            step += 1
            images += len(y) * dist.world
            seconds += time.perf_counter() - t0
            if step % 50 == 0 or step == steps:
                n = max(window["n"], 1)
                history.append({"step": step, "loss_largest": round(window["loss_largest"] / n, 5),
                                "loss_others": round(window["loss_others"] / n / max(len(subnets) - 1, 1), 5),
                                "lr": round(sched.get_last_lr()[0], 8), "seconds": round(seconds, 1)})
                window = {"loss_largest": 0.0, "loss_others": 0.0, "n": 0}
            if progress is not None and dist.main:
                rate = (time.perf_counter() - t_run) / max(step - start, 1)
                progress({"event": "step", "step": step, "steps": steps, "seconds": seconds,
                          "eta_s": rate * (steps - step), "loss": float(loss.detach()),
                          "history": history[-1] if history else None})
            if time.perf_counter() - last_save >= save_every_s:
                save()
                last_save = time.perf_counter()
        save()
        wall = time.perf_counter() - t_run
    shared = sum(p.numel() for p in params)
    return SupernetResult(out=str(out), steps=steps, steps_done=step, resumed_from=start, seconds=round(seconds, 2),
                          build_seconds=round(build_seconds, 2), keys=len(net.weights.keys_), shared_params=shared, subnets_per_step=2 + cfg.random_subnets,
                          images_per_s=round(images / wall, 1) if wall > 0 else 0.0, history=history,
                          supernet_id=supernet_id(fingerprint, step))
