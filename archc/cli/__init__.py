"""The ``archc`` command. Each subcommand lives in its own module with ``register(subparsers)``.

User errors (``ArchcError``) print one line and exit 2; anything else is an archc bug and says so.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from ..errors import ArchcError

#: subcommand modules, in the order ``archc --help`` lists them
COMMANDS = ["build", "schema", "export", "bench", "devices", "calibrate", "proxies", "search", "slim", "ablate"]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archc", description="Architecture config compiler and latency-"
                                     "constrained search for FastViT-style hybrid vision transformers.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ArchcError as exc:
        print("archc: error: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("archc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `archc build ... | head`
        return 0
