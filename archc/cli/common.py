"""Helpers shared by subcommands: spec arguments, human-readable numbers, rich tables, JSON output."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..spec import Spec


def add_spec_args(p, many: bool = False, checkpoints: bool = False) -> None:
    if many:
        p.add_argument("specs", nargs="+", metavar="SPEC", help="spec YAML files or shipped model names "
                       "(fastvit_sa12; see archc models)")
    else:
        p.add_argument("spec", metavar="SPEC", help="spec YAML file (specs/sa12.yaml) or shipped model name "
                       "(fastvit_sa12; see archc models)" + (", or an archc checkpoint FILE.pt" if checkpoints else ""))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key, e.g. --set stages[2].mixer=attention (repeatable)")


def add_input_size_arg(p) -> None:
    p.add_argument("--input-size", "--resolution", dest="input_size", type=int, default=None, metavar="N",
                   help="input resolution N x N (default: the spec's input_size)")


def load_from_args(path, args) -> Spec:
    """Load a spec with the command's ``--set`` overrides and ``--input-size``. An archc checkpoint (FILE.pt)
    works wherever a spec does: its stored spec is used, and the file is remembered as that spec's weights
    (``weights_for``)."""
    from ..catalog import is_checkpoint_path
    from ..spec import load_spec
    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "input_size", None) is not None:
        overrides.append(f"input_size={args.input_size}")
    if isinstance(path, (str, Path)) and is_checkpoint_path(path):
        from ..weights import checkpoint_spec
        stored = checkpoint_spec(path)
        if getattr(args, "weights", None) and str(args.weights) != str(path):
            from ..errors import ArchcError
            raise ArchcError(f"{path}: give a checkpoint either as SPEC or with --weights, not both")
        if not hasattr(args, "checkpoints"):
            args.checkpoints = {}
        args.checkpoints[str(path)] = stored["deploy"]
        return load_spec(stored["spec"], overrides=overrides or None)
    return load_spec(path, overrides=overrides or None)


def weights_for(path, args):
    """The weights of the spec given as ``path``: the checkpoint itself where ``path`` was one, else --weights."""
    if str(path) in getattr(args, "checkpoints", {}):
        return str(path)
    return getattr(args, "weights", None)


#: TrainConfig field -> (flag, type, metavar, help) for the train objective's options
TRAIN_ARGS = {
    "data": ("--data", str, "D", "training data (implies --objective train): fashion-mnist (Debian's "
             "dataset-fashion-mnist), a folder of IDX files, or an ImageFolder root (DIR/CLASS/*.jpg, or DIR/train "
             "and DIR/val); default: the built-in synthetic textures"),
    "steps": ("--train-steps", int, "N", "optimiser steps per candidate (default: %s)"),
    "epochs": ("--train-epochs", float, "E", "passes over the training images instead of --train-steps"),
    "batch": ("--train-batch", int, "N", "batch size (default: %s)"),
    "resolution": ("--train-resolution", int, "PX", "training and validation resolution (default: %s)"),
    "lr": ("--train-lr", float, "LR", "AdamW peak learning rate, warmup then cosine (default: %s)"),
    "seed": ("--train-seed", int, "N", "seed for weights, batch order, augmentation and the val split "
             "(default: %s; the same for every candidate)"),
    "repeats": ("--train-repeats", int, "N", "train N times (seeds --train-seed, +1, ...) and score the mean "
                "top-1: the seed-to-seed noise of brief training is several points (default: %s)"),
    "val_images": ("--train-val-images", int, "N", "validation images, a seeded subset (default: %s)"),
    "loader_workers": ("--train-workers", int, "N", "DataLoader processes decoding images (default: %s)"),
    "threads": ("--train-threads", int, "N", "torch threads while training (default: the search's, 1 per worker)"),
}


def add_train_args(p) -> None:
    """Options of the ``train`` objective (``--objective train``): data, steps, batch, resolution, ..."""
    from ..train import TrainConfig
    defaults = TrainConfig()
    g = p.add_argument_group("train objective (--objective train): brief AdamW training, score = val top-1 %")
    for name, (flag, typ, metavar, text) in TRAIN_ARGS.items():
        g.add_argument(flag, dest=f"train_{name}", type=typ, default=None, metavar=metavar,
                       help=text % getattr(defaults, name) if "%s" in text else text)


def implied_objective(args):
    """The objective the flags ask for when ``--objective`` is absent: ``supernet`` with ``--supernet``, ``train``
    with ``--data`` (data given is data to train on: brief training ranks the ground truth better than any proxy,
    docs/ACCURACY_SIGNALS.md), else None (the default proxy)."""
    if args.objective:
        return args.objective
    if getattr(args, "supernet", None):
        return "supernet"
    if getattr(args, "train_data", None):
        return "train"
    return None


def train_settings(args, objective) -> Any:
    """The ``TrainConfig`` fields given on the command line (a dict; None when none is); an error if
    they are given for another objective."""
    given = {name: getattr(args, f"train_{name}") for name in TRAIN_ARGS
             if getattr(args, f"train_{name}", None) is not None}
    if given and objective != "train":
        from ..errors import ArchcError
        flags = ", ".join(TRAIN_ARGS[n][0] for n in given)
        raise ArchcError(f"{flags} apply to --objective train only (objective: {objective})")
    if "epochs" in given and "steps" in given:
        from ..errors import ArchcError
        raise ArchcError("give --train-steps or --train-epochs, not both")
    return given or None


def human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def console(stderr: bool = False) -> Console:
    """Tables and messages; ``stderr=True`` keeps stdout for a command's ``--json`` output. No markup: names,
    paths and keys come from users (``name: '[/x]'`` must print as it is). No wrapping of printed lines
    (``soft_wrap``): a message stays one line at any width; tables still fit it."""
    return Console(highlight=False, soft_wrap=True, markup=False, width=max(120, Console().width), stderr=stderr)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[str] = ()) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    return t


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None: strict JSON (``null``), which every parser reads; Python's
    ``NaN`` token is not JSON (an interval over 4 points has no bootstrap: it is null, not NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    json.dump(json_safe(obj), sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")
