"""The ``archc`` command. Each subcommand lives in its own module with ``register(subparsers)``.

User errors (``ArchcError``) print one line and exit 2; anything else is an archc bug and says so.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

from ..errors import ArchcError, SpecErrors

#: subcommand modules, in the order ``archc --help`` lists them, with the one-line summary each module's parser
#: uses. Only the command being run imports its module (torch, Optuna), so ``archc --help`` stays fast.
COMMANDS = {
    "build": "compile a spec to a PyTorch model and print its cost per stage",
    "models": "list the shipped models by name (archc build NAME, base: NAME)",
    "schema": "write the JSON Schema of spec files (for editor completion)",
    "train": "train a spec on real data (Fashion-MNIST, an image folder), resumably",
    "supernet": "train a weight-sharing supernet of a search space; score or extract its subnets",
    "export": "export the deploy graph to Core ML, ONNX, TorchScript or torch.export, verified",
    "bench": "measure (or predict) latency: median, IQR and CV of N runs, train vs deploy",
    "devices": "list latency profiles (predicted targets) and measured targets",
    "calibrate": "fit a device latency profile to measured (spec, latency) points",
    "proxies": "score specs with zero-cost proxies, or --eval them against published top-1",
    "search": "search stage layouts under a latency budget (Optuna; resumable)",
    "slim": "latency-driven slimming of a supernet over an EfficientFormer space",
    "ablate": "compare spec variants: params, MACs, latency and proxy score (Table 4 style)",
    "dashboard": "watch a search live: optuna-dashboard on its storage (the dashboard extra)",
}


#: top-level modules of optional dependencies -> the extra that installs them (pyproject.toml)
OPTIONAL_EXTRAS = {"onnx": "export", "onnxruntime": "export", "onnxscript": "export", "coremltools": "export",
                   "PIL": "export", "psycopg2": "postgres", "optuna_dashboard": "dashboard"}


class OneLineParser(argparse.ArgumentParser):
    """argparse with archc's error form: one line naming the flag, the value and what it takes, then exit 2
    (argparse's own form prints the whole usage block first). Subcommand parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def make_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``archc`` parser. With ``command``, only that command's module is imported and registered; the others
    are listed by their summaries (enough for ``archc --help`` and for argparse's choices). None: all of them."""
    parser = OneLineParser(prog="archc", description="Architecture config compiler and latency-"
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
    for name, summary in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=summary)  # listed only: main() builds the parser of the command it runs
            continue
        try:
            importlib.import_module(f"{__name__}.{name}").register(sub)
        except ModuleNotFoundError as exc:  # a dependency missing from this environment: say so when used
            _register_missing(sub, name, exc)
    return parser


def _register_missing(sub, name: str, exc: ModuleNotFoundError) -> None:
    """A placeholder for a command whose module cannot import, so the other commands still work and this
    one explains itself in one line instead of a traceback."""
    msg = _missing_message(name, exc)
    # no option prefix, so every argument (``--latency-ms`` too) is taken as given and the error is ours
    p = sub.add_parser(name, help=f"(unavailable: needs {exc.name})", add_help=False, prefix_chars="\x01")
    p.add_argument("rest", nargs="*")

    def unavailable(args) -> int:
        raise ArchcError(msg)
    p.set_defaults(func=unavailable)


def one_line(text: str) -> str:
    """An error as one printable line: line breaks become spaces; other control characters (an ESC in a file
    name would recolour or clear the user's terminal) are shown escaped, as Python writes them."""
    text = " ".join(text.splitlines())
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _missing_message(command: str, exc: ModuleNotFoundError) -> str:
    return (f"'archc {command}' needs the Python package '{exc.name}', which is not installed here; install "
            f"archc with its dependencies (python3 -m pip install archc) or `python3 -m pip install {exc.name}`")


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the first word naming a command is the command (global options take numbers, never a command's name)
    parser = make_parser(next((a for a in argv if a in COMMANDS), ""))
    if not argv:  # `archc` alone: the commands, not just "COMMAND required"
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    saved = {k: os.environ.get(k) for k in _LIMIT_ENV.values()}
    try:
        for opt, var in _LIMIT_ENV.items():  # the environment carries the limits to spawned search workers
            if getattr(args, opt) is not None:
                os.environ[var] = repr(getattr(args, opt))
        from ..limits import limits
        limits()  # a bad limit is one line before any work
        return int(args.func(args) or 0)
    except ArchcError as exc:
        for line in str(exc).splitlines() if isinstance(exc, SpecErrors) else [str(exc)]:
            print("archc: error: " + one_line(line), file=sys.stderr)  # a spec's several mistakes: one line each
        return 2
    except OSError as exc:  # read-only folder, full disk, a file where a folder is expected, ...
        if isinstance(exc, BrokenPipeError):
            return 0
        print("archc: error: " + one_line(str(exc)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("archc: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:  # a dependency missing from this environment: say which, and how to get it
        top = (exc.name or "").split(".")[0]
        extra = OPTIONAL_EXTRAS.get(top)
        if extra is not None:
            print(f"archc: error: this needs the optional package '{exc.name}': pip install 'archc[{extra}]'",
                  file=sys.stderr)
        elif top and top != "archc":  # a required dependency (Optuna on a CUDA image): not an archc bug
            print(f"archc: error: {_missing_message(args.command, exc)}", file=sys.stderr)
        else:
            raise
        return 2
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


#: global limit options -> the environment variables ``archc.guards`` reads
_LIMIT_ENV = {"max_params": "ARCHC_MAX_PARAMS", "max_memory": "ARCHC_MAX_MEMORY_GB"}
