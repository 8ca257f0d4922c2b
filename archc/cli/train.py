"""``archc train SPEC --data D --out DIR``: train a spec or a shipped model on real data, resumably.

    archc train fastvit_t8 --data fashion-mnist --epochs 10 --out runs/t8-fmnist
    torchrun --nproc_per_node 2 -m archc train fastvit_t8 --data fashion-mnist --out runs/t8-ddp

Writes ``DIR/last.pt`` and ``DIR/best.pt`` (archc checkpoints: ``archc export --weights``, ``bench --weights``,
``create_model(weights=)``), ``DIR/state.pt`` (the resume state) and ``DIR/summary.json``. Run the same command
again after a stop and it resumes from the last finished epoch. See ``archc.train.fit`` for the recipe.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import COMMANDS
from .common import add_spec_args, console, load_from_args, print_json, table

#: upper bounds of the count-like flags (the machine sets the others)
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536


def register(sub) -> None:
    p = sub.add_parser("train", help=COMMANDS["train"],
                       description="Train SPEC with AdamW, warm-up + cosine, label smoothing and optional EMA; "
                                   "checkpoints every epoch; resumes after a stop; reports validation top-1 of "
                                   "the train and deploy graphs and the test split's top-1.")
    add_spec_args(p)
    p.add_argument("--data", required=True, metavar="D",
                   help="fashion-mnist (Debian's dataset-fashion-mnist, /usr/share/datasets/fashion-mnist), a "
                        "folder holding IDX files, an ImageFolder root, or 'synthetic'")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/train-SPEC)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training split (default: %(default)s)")
    p.add_argument("--batch", type=int, default=64, help="global batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="default: %(default)s")
    p.add_argument("--warmup", type=float, default=0.1, metavar="FRACTION",
                   help="linear warm-up, a fraction of all steps (default: %(default)s)")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep an EMA of the weights (e.g. 0.999); checkpoints and scores then use it")
    p.add_argument("--resolution", type=int, default=None, metavar="PX",
                   help="training resolution (default: 32 for IDX sets, else the spec's input_size)")
    p.add_argument("--seed", type=int, default=0, help="weights, batch order, augmentation (default: %(default)s)")
    p.add_argument("--val-images", type=int, default=5000, metavar="N",
                   help="validation images held out of the training split (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads per process (default: torch's; 1 when several jobs share the machine)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="DataLoader worker processes (default: %(default)s, decode in the trainer)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from these weights (an archc checkpoint of this architecture, loaded strictly), e.g. "
                        "`archc supernet extract`'s inherited weights")
    p.add_argument("--fresh", action="store_true", help="start over even if DIR holds a resumable run")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=run)


def _check_args(args) -> None:
    from ..errors import ArchcError
    cores = os.cpu_count() or 1
    checks = [("--epochs", args.epochs, 1, MAX_EPOCHS), ("--batch", args.batch, 2, MAX_BATCH),
              ("--val-images", args.val_images, 10, 10_000_000), ("--workers", args.workers, 0, cores),
              ("--seed", args.seed, 0, 2 ** 31 - 1)]
    if args.threads is not None:
        checks.append(("--threads", args.threads, 1, cores))
    if args.resolution is not None:
        checks.append(("--resolution", args.resolution, 8, 4096))
    for flag, value, lo, hi in checks:
        if not lo <= value <= hi:
            why = f" (this machine's {cores} cores)" if flag in ("--workers", "--threads") else ""
            raise ArchcError(f"{flag} {value}: must be {lo} to {hi}{why}")
    for flag, value, lo, hi in (("--lr", args.lr, 0, 10), ("--weight-decay", args.weight_decay, 0, 10),
                                ("--label-smoothing", args.label_smoothing, 0, 1), ("--warmup", args.warmup, 0, 1)):
        if not (lo <= value < hi) or (flag == "--lr" and value == 0):
            raise ArchcError(f"{flag} {value}: must be in {'(' if flag == '--lr' else '['}{lo}, {hi})")
    if args.ema is not None and not 0 < args.ema < 1:
        raise ArchcError(f"--ema {args.ema}: must be a decay in (0, 1), e.g. 0.999")
    if args.device != "cpu":
        import torch
        if not args.device.startswith("cuda"):
            raise ArchcError(f"--device {args.device}: valid: cpu, cuda, cuda:N")
        if not torch.cuda.is_available():
            raise ArchcError(f"--device {args.device}: this torch has no CUDA device (torch {torch.__version__})")


def run(args) -> int:
    _check_args(args)
    spec = load_from_args(args.spec, args)  # before torch loads: a spec's mistakes are reported in a moment
    from ..errors import ArchcError
    from ..guards import check_memory
    from ..outputs import writable_dir
    from ..train import TrainConfig
    from ..train.fit import env_int, fit
    from ..train.idx import resolve_dir
    from ..train.loop import training_spec
    from ..train.score import open_data
    from .progress import Progress
    data_arg = None if args.data == "synthetic" else args.data
    idx = resolve_dir(data_arg) if data_arg else None
    resolution = args.resolution or (32 if idx is not None else spec.input_size[0])
    cfg = TrainConfig(data=data_arg, batch=args.batch, resolution=resolution, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_fraction=max(args.warmup, 1e-9),
                      label_smoothing=args.label_smoothing, seed=args.seed, val_images=args.val_images,
                      loader_workers=args.workers, threads=args.threads).check()
    main_rank = env_int("RANK", 0) == 0
    env_int("WORLD_SIZE", 1)
    out = Path(args.out or f"runs/train-{spec.name}")
    if main_rank:
        writable_dir(out, "--out")  # checkpoints are written each epoch: a full or read-only disk fails now
    # inference peak at the batch, a floor for training: with the spec's classes and channels before the data is
    # opened (a huge batch is refused at once), then with the data's
    check_memory(training_spec(spec, spec.num_classes, resolution, spec.in_chans), args.batch, key="--batch")
    data = open_data(cfg)
    check_memory(training_spec(spec, len(data.classes), resolution, data.in_chans), args.batch, key="--batch")
    con = console(stderr=True)
    if main_rank and not args.json:
        con.print(f"train {spec.name} on {data.description}")
    if args.fresh and main_rank:
        for name in ("state.pt", "last.pt", "best.pt", "summary.json"):
            (out / name).unlink(missing_ok=True)
    steps = args.epochs * (len(data.train) // args.batch)
    bar = Progress("train", steps, mode=None if main_rank else "off")
    stride = 1 if bar.mode == "rich" else max(1, steps // 50)
    seen = {}

    def progress(event) -> None:
        if "record" in event:
            r = event["record"]
            bar.note(f"epoch {r.epoch}/{event['epochs']}: train loss {r.train_loss:.4f}, val top-1 {r.val_top1:.2f}%, "
                     f"{r.images_per_s:.0f} img/s, {r.seconds:.1f} s")
            return
        done = event["epoch"] * (len(data.train) // args.batch) + event["step"]
        if "offset" not in seen:  # a resumed run: the ETA counts only this run's steps
            seen["offset"] = done - 1
            bar.total, bar.done = steps - seen["offset"], 0
        status = f"epoch {event['epoch'] + 1}/{event['epochs']} loss {event['loss']:.4f}"
        bar.update(done - seen["offset"] if (done % stride == 0 or event["step"] == event["steps"]) else None,
                   status)

    init = None
    if args.init is not None:
        init = Path(args.init)
        if not init.is_file():
            raise ArchcError(f"--init {args.init}: no such file")
    with bar:
        result = fit(spec, data, cfg, epochs=args.epochs, out=out, ema=args.ema, device=args.device,
                     resume=not args.fresh, progress=progress, init=init)
    if not main_rank:
        return 0
    summary = result.to_json()
    if args.json:
        print_json(summary)
        return 0
    con = console()
    if result.resumed_from:
        con.print(f"resumed from epoch {result.resumed_from} in {out / 'state.pt'}")
    rows = [("val top-1 (train graph, best epoch)", f"{result.val_top1:.2f}%"),
            ("val top-1 (deploy graph)", f"{result.val_top1_deploy:.2f}%"),
            ("test top-1 (official split, best.pt)", "-" if result.test_top1 is None else f"{result.test_top1:.2f}%"),
            ("best epoch", f"{result.best_epoch}/{result.epochs}"), ("parameters", f"{result.params:,}"),
            ("training time", f"{result.train_seconds:.1f} s")]
    con.print(table(f"{spec.name}: trained", ["", "value"], rows, right=("value",)))
    con.print(f"files: {out / 'best.pt'}, {out / 'last.pt'}, {out / 'summary.json'}")
    return 0
