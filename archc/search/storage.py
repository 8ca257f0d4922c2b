"""Open Optuna's RDB storage (SQLite on one machine, PostgreSQL across machines) with heartbeats.

Heartbeats make a killed worker's trial *stale* after the grace period; Optuna then fails it and
``RetryHeartbeatStaleTrialCallback`` enqueues a copy with the same parameters, so ``kill -9`` loses
no point. Credentials in URLs never reach the terminal: every message goes through ``mask_url`` and
``scrub``.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from ..errors import SearchError
from .defaults import DEFAULT_STORAGE  # noqa: F401  (re-exported: its home before)

#: a trial killed twice (e.g. the OOM killer) is not retried again
MAX_RETRY = 2


def parse_url(url: str):
    """SQLAlchemy's ``URL`` for ``url``, also when the password holds an unencoded ``@`` or ``:``
    (``postgresql://bob:p@ss@host/db``): the host starts after the *last* ``@`` of the authority, and
    SQLAlchemy parses the rest; the credentials are set on the URL object, which encodes them."""
    from urllib.parse import unquote

    from sqlalchemy.engine import make_url
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if not sep or "@" not in authority:
        return make_url(url)
    userinfo, _, hostport = authority.rpartition("@")
    user, has_pw, password = userinfo.partition(":")
    base = make_url(f"{scheme}://{hostport}{slash}{tail}")
    return base.set(username=unquote(user) or None, password=unquote(password) if has_pw else None)


def mask_url(url: str) -> str:
    """``postgresql://bob:secret@host/db`` -> ``postgresql://bob:***@host/db`` (unparsable URLs: scheme only)."""
    try:
        return parse_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any parse failure: show as little as possible
        scheme = url.split(":", 1)[0] if ":" in url else "?"
        return f"{scheme}://***"


def _password(url: str) -> Optional[str]:
    try:
        return parse_url(url).password
    except Exception:  # noqa: BLE001 - unparsable: everything between '://user:' and the last '@'
        authority = url.partition("://")[2].partition("/")[0]
        userinfo = authority.rpartition("@")[0]
        return userinfo.partition(":")[2] or None


def scrub(text: str, url: str) -> str:
    """Remove the URL's password (raw and URL-encoded forms) and the raw URL from ``text``."""
    text = text.replace(url, mask_url(url))
    try:
        text = text.replace(parse_url(url).render_as_string(hide_password=False), mask_url(url))
    except Exception:  # noqa: BLE001 - unparsable: the password forms below still go
        pass
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
            try:
                sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SearchError(f"storage {mask_url(url)}: cannot create folder {str(sqlite_file.parent)!r}: "
                                  f"{exc.strerror or exc}") from None
            if sqlite_file.exists() and not sqlite_file.is_file():
                raise SearchError(f"storage {mask_url(url)}: {str(sqlite_file)!r} is not a regular file")
        # several processes share one SQLite file: wait for the write lock instead of failing
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    given = url
    try:
        url = parse_url(url).render_as_string(hide_password=False)  # an unencoded '@' in a password, encoded
    except Exception:  # noqa: BLE001 - SQLAlchemy reports the malformed URL below, masked
        pass
    url = _with_installed_driver(url)
    grace = grace_period if grace_period is not None else 3 * heartbeat_interval
    try:
        with warnings.catch_warnings(), creation_lock(sqlite_file):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if sqlite_file is not None:
                _sqlite_wal(sqlite_file)
            storage = _rdb_storage(url, engine_kwargs, heartbeat_interval, grace)
        if sqlite_file is not None:
            _sqlite_fast_commits(storage)
        return storage
    except SearchError:
        raise
    except ImportError as exc:
        raise SearchError(f"storage {mask_url(given)} needs a database driver that is not installed: "
                          f"{scrub(scrub(str(exc), url), given)} (PostgreSQL: pip install 'archc[postgres]')") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy/driver errors: one line, password removed
        text = scrub(scrub(str(exc), url), given).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise SearchError(f"cannot open storage {mask_url(given)}: {first}") from None


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat_interval: int, grace: int) -> RDBStorage:
    """RDBStorage creates its tables and stamps its schema version on first use; two machines doing that at
    once on one PostgreSQL database collide ('already exists', a UNIQUE violation): the loser retries,
    and then finds the tables made."""
    import sqlalchemy.exc
    for attempt in range(4):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                              grace_period=grace,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as exc:
            text = str(exc).lower()
            if attempt == 3 or not any(w in text for w in ("already exists", "unique", "duplicate")):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def creation_lock(sqlite_file: Optional[Path]) -> Iterator[None]:
    """Serialise opening (and creating) one SQLite file between processes: without it two commands started
    together both create the tables ('table studies already exists', an alembic UNIQUE error)."""
    if sqlite_file is None:
        yield
        return
    from .locks import file_lock
    with file_lock(sqlite_file.with_name(sqlite_file.name + ".archc-lock")):
        yield


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
        # SQLAlchemy's recipe for pysqlite: let SQLAlchemy emit BEGIN itself (below) instead of the
        # driver's deferred one, which runs SELECTs outside the transaction
        dbapi_connection.isolation_level = None

    def on_begin(conn) -> None:
        # take the write lock when the transaction starts: Optuna reads a WAITING trial and marks it
        # RUNNING in one transaction; with a deferred BEGIN two workers both read it WAITING, both run
        # it, and the second one's tell fails with "Cannot tell a PRUNED trial"
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(storage.engine, "connect", on_connect)
    event.listen(storage.engine, "begin", on_begin)
    storage.engine.dispose()  # connections made before the listener are replaced


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg (3) to SQLAlchemy 2.1; use psycopg2 where only it is installed
    (archc's ``postgres`` extra installs psycopg2-binary)."""
    import importlib.util
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def heartbeat_orphans(storage: RDBStorage, study_id: int, older_than_s: float) -> list:
    """Give a first heartbeat to RUNNING trials that never had one and started over ``older_than_s`` ago.

    A worker killed between creating a trial and its heartbeat thread's first beat leaves a RUNNING trial
    with no heartbeat row; Optuna's stale check only looks at trials *with* one, so that trial would stay
    RUNNING forever and a resumed search (which counts it as running) would wait for it forever. One beat
    makes it an ordinary stale trial: failed after the grace period and retried by the storage's callback.
    Returns the trial ids beaten. (Reads Optuna's RDB models; pinned to the 5.x schema.)
    """
    import datetime as _dt

    from optuna.storages._rdb import models

    cutoff = _dt.datetime.now() - _dt.timedelta(seconds=older_than_s)
    session = storage.scoped_session()
    try:
        rows = (session.query(models.TrialModel)
                .filter(models.TrialModel.study_id == study_id)
                .filter(models.TrialModel.state == optuna.trial.TrialState.RUNNING).all())
        orphans = [t.trial_id for t in rows
                   if not t.heartbeats and t.datetime_start is not None and t.datetime_start < cutoff]
    finally:
        session.close()
    for trial_id in orphans:
        storage.record_heartbeat(trial_id)
    return orphans
