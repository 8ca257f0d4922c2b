"""``archc supernet train|score|extract``: one weight-sharing training for a whole search space.

    archc supernet train fmnist_fastvit --data fashion-mnist --out runs/supernet-fmnist
    archc supernet score runs/supernet-fmnist fastvit_t8 specs/my.yaml     # inherited val top-1, ~1 s each
    archc supernet extract runs/supernet-fmnist my.yaml --out runs/my-inherited.pt
    archc train my.yaml --data fashion-mnist --init runs/my-inherited.pt   # fine-tune the inherited weights

See ``archc.supernet`` (shared weights, the sandwich rule, BatchNorm recalibration).
"""
from __future__ import annotations

import time
from pathlib import Path

from . import COMMANDS
from .common import console, load_from_args, print_json, table


def register(sub) -> None:
    p = sub.add_parser("supernet", help=COMMANDS["supernet"], description=__doc__.split("\n")[0])
    ss = p.add_subparsers(dest="supernet_command", metavar="ACTION")
    ss.required = True
    t = ss.add_parser("train", help="train the supernet of SPACE (resumable: rerun to go on)")
    t.add_argument("space", metavar="SPACE", help="search space file or shipped name (fmnist_fastvit)")
    t.add_argument("--data", required=True, metavar="D", help="fashion-mnist, an IDX folder or an ImageFolder root")
    t.add_argument("--out", required=True, metavar="DIR", help="output folder (DIR/supernet.pt)")
    t.add_argument("--epochs", type=float, default=1.0, help="passes over the training split (default: %(default)s)")
    t.add_argument("--batch", type=int, default=64, help="default: %(default)s")
    t.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (default: %(default)s)")
    t.add_argument("--resolution", type=int, default=32, metavar="PX", help="default: %(default)s")
    t.add_argument("--random-subnets", type=int, default=2, metavar="N",
                   help="random subnets per step besides the largest and smallest (default: %(default)s)")
    t.add_argument("--kernels", choices=("separate", "crop"), default="separate",
                   help="elastic kernels: per-kernel weights, or the centre crop of the largest (default: %(default)s)")
    t.add_argument("--no-distill", action="store_true", help="labels for every subnet (no in-place distillation)")
    t.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    t.add_argument("--val-images", type=int, default=5000, metavar="N", help="held out (default: %(default)s)")
    t.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads (default: %(default)s)")
    t.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    t.add_argument("--fresh", action="store_true", help="start over even if DIR holds a supernet")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.set_defaults(func=run_train)
    s = ss.add_parser("score", help="inherited validation top-1 of SPECs (BatchNorm recalibrated)")
    s.add_argument("supernet", metavar="DIR")
    s.add_argument("specs", nargs="+", metavar="SPEC")
    s.add_argument("--val-images", type=int, default=1000, metavar="N", help="default: %(default)s")
    s.add_argument("--calib-images", type=int, default=256, metavar="N", help="default: %(default)s")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_score)
    e = ss.add_parser("extract", help="write a subnet's inherited weights as an archc checkpoint")
    e.add_argument("supernet", metavar="DIR")
    e.add_argument("spec", metavar="SPEC")
    e.add_argument("--out", required=True, metavar="FILE.pt")
    e.add_argument("--calib-images", type=int, default=256, metavar="N", help="default: %(default)s")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=run_extract)


def _bounds(**values) -> None:
    from ..errors import ArchcError
    limits = {"epochs": (1e-6, 1000), "batch": (2, 65536), "lr": (1e-9, 10), "resolution": (8, 4096),
              "random_subnets": (0, 16), "seed": (0, 2 ** 31 - 1), "val_images": (10, 10_000_000),
              "threads": (1, 1024), "calib_images": (2, 1_000_000)}
    for k, v in values.items():
        lo, hi = limits[k]
        if not lo <= v <= hi:
            raise ArchcError(f"--{k.replace('_', '-')} {v}: must be {lo:g} to {hi:g}")


def run_train(args) -> int:
    from ..supernet.train import SupernetConfig, train_supernet
    from .progress import Progress
    _bounds(epochs=args.epochs, batch=args.batch, lr=args.lr, resolution=args.resolution,
            random_subnets=args.random_subnets, seed=args.seed, val_images=args.val_images, threads=args.threads)
    if args.device != "cpu":
        import torch
        from ..errors import ArchcError
        if not args.device.startswith("cuda") or not torch.cuda.is_available():
            raise ArchcError(f"--device {args.device}: valid: cpu, or cuda / cuda:N where torch has CUDA "
                             f"(this torch {torch.__version__}: {'has' if torch.cuda.is_available() else 'has no'} CUDA)")
    data = None if args.data == "synthetic" else args.data
    cfg = SupernetConfig(space=args.space, data=data, epochs=args.epochs, batch=args.batch, lr=args.lr,
                         resolution=args.resolution, seed=args.seed, random_subnets=args.random_subnets,
                         distill=not args.no_distill, kernels=args.kernels, val_images=args.val_images,
                         threads=args.threads)
    bar = Progress("supernet", None, mode="off" if args.json else None)
    state = {"offset": None}

    def progress(e) -> None:
        if e["event"] == "built":
            bar.note(f"supernet: {e['keys']} shared tensors, found and initialised in {e['seconds']:.0f} s")
            return
        if state["offset"] is None:
            state["offset"] = e["step"] - 1
            bar.total, bar.done = e["steps"] - state["offset"], 0
        h = e.get("history")
        status = f"step {e['step']}/{e['steps']} loss {e['loss']:.4f}" + (
            f" (largest {h['loss_largest']:.3f})" if h else "")
        bar.update(e["step"] - state["offset"], status)

    with bar:
        result = train_supernet(cfg, Path(args.out), device=args.device, fresh=args.fresh, progress=progress)
    if args.json:
        print_json(result.to_json())
        return 0
    rows = [("steps", f"{result.steps_done}/{result.steps}" + (f" (resumed at {result.resumed_from})"
                                                               if result.resumed_from else "")),
            ("subnets per step", str(result.subnets_per_step)), ("shared tensors", str(result.keys)),
            ("shared parameters", f"{result.shared_params:,}"), ("training time", f"{result.seconds:.0f} s"),
            ("set-up time", f"{result.build_seconds:.0f} s"), ("supernet id", result.supernet_id)]
    console().print(table(f"supernet {args.space} -> {args.out}/supernet.pt", ["", "value"], rows, right=("value",)))
    return 0


def run_score(args) -> int:
    from ..supernet.score import SupernetScore
    _bounds(val_images=args.val_images, calib_images=args.calib_images)
    scorer = SupernetScore(args.supernet, val_images=args.val_images, calib_images=args.calib_images)
    out = []
    for path in args.specs:
        spec = load_from_args(path, args)
        t0 = time.perf_counter()
        s = scorer(spec)
        out.append({"spec": path, "name": spec.name, "top1": round(float(s), 4), "val_loss": s.attrs["val_loss"],
                    "seconds": round(time.perf_counter() - t0, 3)})
    if args.json:
        print_json({"supernet": scorer.describe(), "scores": out})
        return 0
    console().print(table(scorer.describe(), ["spec", "inherited top-1", "val loss", "s"],
                          [(o["spec"], f"{o['top1']:.2f}%", f"{o['val_loss']:.4f}", f"{o['seconds']:.2f}") for o in out],
                          right=("inherited top-1", "val loss", "s")))
    return 0


def run_extract(args) -> int:
    from ..supernet.score import extract
    _bounds(calib_images=args.calib_images)
    spec = load_from_args(args.spec, args)
    info = extract(args.supernet, spec, Path(args.out), calib_images=args.calib_images)
    if args.json:
        print_json(info)
    else:
        console().print(f"wrote {info['out']}: {info['spec']}, {info['params']:,} parameters inherited from "
                        f"supernet {info['supernet_id']} (loads strictly into `archc build` of the spec)")
    return 0
