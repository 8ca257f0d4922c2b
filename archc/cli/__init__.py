"""The ``archc`` command. Each subcommand lives in its own module with ``register(subparsers)``.

User errors (``ArchcError``) print one line and exit 2; anything else is an archc bug and says so.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

from ..errors import ArchcError

#: subcommand modules, in the order ``archc --help`` lists them
COMMANDS = ["build", "models", "schema", "train", "supernet", "export", "bench", "devices", "calibrate", "proxies", "search", "slim",
            "ablate"]


#: top-level modules of optional dependencies -> the extra that installs them (pyproject.toml)
OPTIONAL_EXTRAS = {"onnx": "export", "onnxruntime": "export", "onnxscript": "export", "coremltools": "export",
                   "PIL": "export", "psycopg2": "postgres"}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archc", description="Architecture config compiler and latency-"
                                     "constrained search for FastViT-style hybrid vision transformers.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    parser.add_argument("--max-params", type=float, default=None, metavar="N",
                        help="refuse models with more parameters (default 2e9, or ARCHC_MAX_PARAMS)")
    parser.add_argument("--max-memory", type=float, default=None, metavar="GB",
                        help="refuse runs needing more memory for weights + peak activations (default: half "
                             "the RAM, at most 32 GB, or ARCHC_MAX_MEMORY_GB)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            importlib.import_module(f"{__name__}.{name}").register(sub)
        except ModuleNotFoundError as exc:  # a dependency missing from this environment: say so when used
            _register_missing(sub, name, exc)
    return parser


def _register_missing(sub, name: str, exc: ModuleNotFoundError) -> None:
    """A placeholder for a command whose module cannot import, so the other commands still work and this
    one explains itself in one line instead of a traceback."""
    msg = (f"'archc {name}' needs the Python package '{exc.name}', which is not installed here; install "
           f"archc with its dependencies (python3 -m pip install archc) or `python3 -m pip install {exc.name}`")
    # no option prefix, so every argument (``--latency-ms`` too) is taken as given and the error is ours
    p = sub.add_parser(name, help=f"(unavailable: needs {exc.name})", add_help=False, prefix_chars="\x01")
    p.add_argument("rest", nargs="*")

    def unavailable(args) -> int:
        raise ArchcError(msg)
    p.set_defaults(func=unavailable)


def main(argv: Optional[List[str]] = None) -> int:
    parser = make_parser()
    if not (sys.argv[1:] if argv is None else argv):  # `archc` alone: the commands, not just "COMMAND required"
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    saved = {k: os.environ.get(k) for k in _LIMIT_ENV.values()}
    try:
        for opt, var in _LIMIT_ENV.items():  # the environment carries the limits to spawned search workers
            if getattr(args, opt) is not None:
                os.environ[var] = repr(getattr(args, opt))
        from ..guards import limits
        limits()  # a bad limit is one line before any work
        return int(args.func(args) or 0)
    except ArchcError as exc:
        print("archc: error: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # always one line
        return 2
    except OSError as exc:  # read-only folder, full disk, a file where a folder is expected, ...
        if isinstance(exc, BrokenPipeError):
            return 0
        print("archc: error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("archc: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:  # an optional dependency: say which extra brings it
        extra = OPTIONAL_EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"archc: error: this needs the optional package '{exc.name}': pip install 'archc[{extra}]'",
              file=sys.stderr)
        return 2
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


#: global limit options -> the environment variables ``archc.guards`` reads
_LIMIT_ENV = {"max_params": "ARCHC_MAX_PARAMS", "max_memory": "ARCHC_MAX_MEMORY_GB"}
