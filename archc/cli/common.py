"""Helpers shared by subcommands: spec arguments, human-readable numbers, rich tables, JSON output."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

from ..spec import Spec, load_spec


def add_spec_args(p, many: bool = False) -> None:
    if many:
        p.add_argument("specs", nargs="+", metavar="SPEC", help="spec YAML files")
    else:
        p.add_argument("spec", metavar="SPEC", help="spec YAML file, e.g. specs/sa12.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key, e.g. --set stages[2].mixer=attention (repeatable)")


def add_input_size_arg(p) -> None:
    p.add_argument("--input-size", "--resolution", dest="input_size", type=int, default=None, metavar="N",
                   help="input resolution N x N (default: the spec's input_size)")


def load_from_args(path: str, args) -> Spec:
    """Load a spec with the command's ``--set`` overrides and ``--input-size``."""
    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "input_size", None):
        overrides.append(f"input_size={args.input_size}")
    return load_spec(path, overrides=overrides or None)


def human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=max(120, Console().width))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[str] = ()) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    return t


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
