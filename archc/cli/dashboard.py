"""``archc dashboard``: optuna-dashboard on a search's storage, to watch a study live.

optuna-dashboard (a separate, well-kept package: the ``dashboard`` extra) reads the same storage the search
writes, so a running search shows its trials as they finish. archc names the two metrics (``score: ...`` and
``latency_ms on TARGET``) and stores each trial's spec (YAML), latency and its kind as user attributes, which
the dashboard lists per trial. The storage URL is printed with its password masked; the page shows none.
"""
from __future__ import annotations

import signal
import socket
from pathlib import Path

from ..search.defaults import DEFAULT_STORAGE
from . import COMMANDS


def register(sub) -> None:
    p = sub.add_parser("dashboard", help=COMMANDS["dashboard"], description=__doc__.split("\n")[0])
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help="the search's storage, as given to archc search (default: %(default)s)")
    p.add_argument("--study", default=None, metavar="NAME", help="a study to link to (default: list every study)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s, this machine "
                   "only; 0.0.0.0 shares it on the network)")
    p.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ArchcError
    from ..search.storage import mask_url, open_storage
    try:
        import optuna_dashboard
    except ModuleNotFoundError:
        raise ArchcError("archc dashboard needs optuna-dashboard: pip install 'archc[dashboard]' "
                         "(or python3 -m pip install optuna-dashboard)") from None
    if not 1 <= args.port <= 65535:
        raise ArchcError(f"--port {args.port}: must be 1 to 65535")
    shown = mask_url(args.storage)
    if args.storage.startswith("sqlite:///"):
        db = args.storage.split("///", 1)[1]
        if db != ":memory:" and not Path(db).is_file():  # opening it would create an empty database
            raise ArchcError(f"--storage {shown}: no database at {db}; run `archc search` first, or pass the "
                             "--storage it used")
    storage = open_storage(args.storage)
    import optuna
    summaries = optuna.get_all_study_summaries(storage)
    names = [s.study_name for s in summaries]
    if args.study is not None and args.study not in names:
        from ..errors import did_you_mean
        raise ArchcError(f"--study {args.study!r}: not in {shown}{did_you_mean(args.study, names)}; studies: "
                         f"{', '.join(names) or 'none'}")
    _check_port(args.host, args.port)
    base = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '') else args.host}:{args.port}/dashboard/"
    print(f"optuna-dashboard {optuna_dashboard.__version__} on {base} for {shown} "
          f"({len(names)} studies); Ctrl-C stops it", flush=True)
    if args.study is not None:
        sid = next(s._study_id for s in summaries if s.study_name == args.study)
        print(f"study {args.study}: {base}studies/{sid}", flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)  # returns on Ctrl-C (bottle)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("dashboard stopped", flush=True)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _check_port(host: str, port: int) -> None:
    """Fail in one line before serving when the port is taken (the server would raise deep in wsgiref)."""
    from ..errors import ArchcError
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ArchcError(f"--host {host} --port {port}: cannot serve there ({exc.strerror}); pick another "
                             "--port") from None
