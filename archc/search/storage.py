"""Open Optuna's RDB storage (SQLite on one machine, PostgreSQL across machines) with heartbeats.

Heartbeats make a killed worker's trial *stale* after the grace period; Optuna then fails it and
``RetryHeartbeatStaleTrialCallback`` enqueues a copy with the same parameters, so ``kill -9`` loses
no point. Credentials in URLs never reach the terminal: every message goes through ``mask_url`` and
``scrub``.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Optional

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from ..errors import SearchError

DEFAULT_STORAGE = "sqlite:///runs/search.db"
#: a trial killed twice (e.g. the OOM killer) is not retried again
MAX_RETRY = 2


def mask_url(url: str) -> str:
    """``postgresql://bob:secret@host/db`` -> ``postgresql://bob:***@host/db`` (unparsable URLs: scheme only)."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any parse failure: show as little as possible
        scheme = url.split(":", 1)[0] if ":" in url else "?"
        return f"{scheme}://***"


def _password(url: str) -> Optional[str]:
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).password
    except Exception:  # noqa: BLE001
        m = re.match(r"^[^:]+://[^:/@]*:([^@]*)@", url)
        return m.group(1) if m else None


def scrub(text: str, url: str) -> str:
    """Remove the URL's password (raw and URL-encoded forms) and the raw URL from ``text``."""
    text = text.replace(url, mask_url(url))
    pw = _password(url)
    if pw:
        from urllib.parse import quote
        for form in {pw, quote(pw, safe=""), quote(pw)}:
            if form:
                text = text.replace(form, "***")
    return text


def open_storage(url: str, heartbeat_interval: int = 10, grace_period: Optional[int] = None) -> RDBStorage:
    """An RDBStorage with heartbeats and retry of stale trials; SearchError (masked) if it cannot open."""
    if not isinstance(url, str) or "://" not in url:
        raise SearchError(f"storage '{mask_url(str(url))}' is not a database URL; use e.g. {DEFAULT_STORAGE} "
                          "or postgresql://user:password@host/db")
    engine_kwargs = {}
    sqlite_file = None
    if url.startswith("sqlite"):
        db = url.split("///", 1)[1] if "///" in url else ""
        if db and db != ":memory:":
            sqlite_file = Path(db)
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            _sqlite_wal(sqlite_file)
        # several processes share one SQLite file: wait for the write lock instead of failing
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    given, url = url, _with_installed_driver(url)
    grace = grace_period if grace_period is not None else 3 * heartbeat_interval
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                 grace_period=grace,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
        if sqlite_file is not None:
            _sqlite_fast_commits(storage)
        return storage
    except ImportError as exc:
        raise SearchError(f"storage {mask_url(given)} needs a database driver that is not installed: "
                          f"{scrub(scrub(str(exc), url), given)} (PostgreSQL: pip install 'archc[postgres]')") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy/driver errors: one line, password removed
        text = scrub(scrub(str(exc), url), given).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise SearchError(f"cannot open storage {mask_url(given)}: {first}") from None


def _sqlite_wal(path: Path) -> None:
    """Write-ahead logging (persistent in the file): readers no longer block the writer, so workers
    sharing the file wait less. Not for network file systems (use PostgreSQL across machines)."""
    import sqlite3
    try:
        con = sqlite3.connect(str(path), timeout=120)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise SearchError(f"cannot open SQLite file {path}: {exc}") from None


def _sqlite_fast_commits(storage: RDBStorage) -> None:
    """``synchronous=NORMAL``: with WAL a commit survives a crash of the process (``kill -9``), only
    a power cut may lose the last commits; each commit no longer waits for an fsync."""
    from sqlalchemy import event

    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections made before the listener are replaced


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg (3) to SQLAlchemy 2.1; use psycopg2 where only it is installed
    (archc's ``postgres`` extra installs psycopg2-binary)."""
    import importlib.util
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url
