"""The search survives its storage and its options: concurrent creation and queue pops on one SQLite
file, a malformed database, passwords in any URL form, and options refused before the first trial."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import warnings
from pathlib import Path

import optuna
import pytest

from archc.errors import ArchcError, SearchError
from archc.search.runner import SearchConfig, run_search, worker_count
from archc.search.storage import mask_url, open_storage, scrub

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "search" / "tiny.yaml"


def _open_and_create(url: str, start, out) -> None:
    """Child process: open the storage and create-or-load one study at the same moment as the others."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    try:
        start.wait(30)
        storage = open_storage(url, heartbeat_interval=10)
        try:
            optuna.create_study(study_name="s", storage=storage)
        except optuna.exceptions.DuplicatedStudyError:
            optuna.load_study(study_name="s", storage=storage)
        out.put("ok")
    except BaseException as exc:  # noqa: BLE001 - report it to the test
        out.put(f"{type(exc).__name__}: {exc}")


def _pop_queue(url: str, out) -> None:
    """Child process: run enqueued trials; report every trial number it ran and any error."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    ran, errors = [], []
    try:
        study = optuna.load_study(study_name="q", storage=open_storage(url, heartbeat_interval=10))

        def objective(trial):
            ran.append(trial.number)
            return trial.suggest_float("x", 0, 1000)

        while True:
            before = len(ran)
            try:
                study.optimize(objective, n_trials=5)
            except Exception as exc:  # noqa: BLE001 - "Cannot tell a ... trial", UpdateFinishedTrialError, ...
                errors.append(f"{type(exc).__name__}: {exc}")
            waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
            if not waiting or len(ran) == before:
                break
    except BaseException as exc:  # noqa: BLE001
        errors.append(f"{type(exc).__name__}: {exc}")
    out.put((ran, errors))


#: fork: a spawned child spends seconds importing torch on a busy machine; these children only touch SQLite
CTX = multiprocessing.get_context("fork")


def _spawn(target, args_list):
    ctx = CTX
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, out)) for args in args_list]
    for p in procs:
        p.start()
    results = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


def test_commands_creating_one_sqlite_study_at_once_all_run(tmp_path):
    url = f"sqlite:///{tmp_path}/new.db"
    ctx = CTX
    start = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=_open_and_create, args=(url, start, out)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == ["ok"] * 3


def test_workers_never_run_one_enqueued_trial_twice(tmp_path):
    """Optuna marks a WAITING trial RUNNING after reading it; with the driver's deferred BEGIN two
    processes both read it WAITING and both run it, and the second dies telling a finished trial."""
    url = f"sqlite:///{tmp_path}/queue.db"
    storage = open_storage(url, heartbeat_interval=10)
    study = optuna.create_study(study_name="q", storage=storage)
    for i in range(60):
        study.enqueue_trial({"x": float(i)})
    storage.engine.dispose()  # no pooled connection crosses the fork
    results = _spawn(_pop_queue, [(url,)] * 3)
    ran = [n for r, _ in results for n in r]
    errors = [e for _, e in results for e in e]
    assert not errors, errors[:3]
    assert sorted(n for n in ran if n < 60) == list(range(60)), "every enqueued trial ran exactly once"


@pytest.mark.parametrize("url, password", [
    ("postgresql://bob:p@ss@127.0.0.1:1/nodb", "p@ss"),          # unencoded '@' in the password
    ("postgresql://bob:se:cr@et@127.0.0.1:1/nodb", "se:cr@et"),
    ("postgresql://bob:s3cr%40t@127.0.0.1:1/nodb", "s3cr@t"),
])
def test_passwords_never_show(url, password):
    masked = mask_url(url)
    assert masked == "postgresql://bob:***@127.0.0.1:1/nodb", masked
    with pytest.raises(SearchError) as err:
        open_storage(url, heartbeat_interval=1)
    text = str(err.value)
    assert "postgresql://bob:***@127.0.0.1:1/nodb" in text
    for piece in {password, password.replace("@", "%40"), password.replace(":", "%3A")}:
        assert piece not in text and piece not in scrub(f"{url} {password}", url)


def test_malformed_database_is_one_line(tmp_path):
    db = tmp_path / "bad.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SearchError, match="bad.db"):
        open_storage(f"sqlite:///{db}")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(SearchError, match="not a regular file"):
        open_storage(f"sqlite:///{tmp_path}/dir.db")


def test_worker_count_is_capped():
    cores = os.cpu_count() or 1
    assert worker_count(500, 1000) == cores
    assert worker_count(500, 1) == 1
    assert worker_count(2, 0) == 1


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = TINY.read_text().replace("../specs/t8.yaml", str(ROOT / "specs" / "t8.yaml"))
    (tmp_path / "tiny.yaml").write_text(text)
    return SearchConfig(latency_ms=0.3, space="tiny.yaml", target="cpu", objective="params", trials=2, seed=3,
                        heartbeat=1, storage=f"sqlite:///{tmp_path}/study.db", lock_dir=str(tmp_path / "locks"))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_latency_budget_must_be_finite_and_positive(cfg, value):
    cfg.latency_ms = value
    with pytest.raises(SearchError, match="--latency-ms must be a finite positive number"):
        run_search(cfg)


def test_out_is_checked_before_the_first_trial(cfg, tmp_path):
    (tmp_path / "blocker").write_text("")
    cfg.out = str(tmp_path / "blocker" / "out")
    with pytest.raises(ArchcError, match="--out"):
        run_search(cfg, latency_fn=lambda spec, target, **kw: None)
    assert not (tmp_path / "study.db").exists() or not optuna.get_all_study_summaries(
        open_storage(cfg.storage)), "no study was started"
    shutil.rmtree(tmp_path / "locks", ignore_errors=True)


def test_a_storage_outage_is_one_line_in_every_thread(capfd):
    """What a PostgreSQL outage mid-search raised (seen with a server stopped under a running search): Optuna
    loses the OperationalError behind an UnboundLocalError of its own, and its heartbeat thread dies with a
    traceback. Both become one line, password masked."""
    import threading

    import sqlalchemy.exc

    from archc.search.runner import storage_errors
    url = "postgresql://bob:pw@127.0.0.1:5432/db"
    outage = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(f"server at {url} is shutting down"))

    def optuna_losing_it():
        try:
            raise outage
        finally:
            raise UnboundLocalError("cannot access local variable 'updated_state'")

    with pytest.raises(SearchError) as err:
        with storage_errors(url):
            thread = threading.Thread(target=lambda: (_ for _ in ()).throw(outage), name="heartbeat")
            thread.start()
            thread.join()
            optuna_losing_it()
    assert "shutting down" in str(err.value) and "rerun the same command to resume" in str(err.value)
    assert "pw@" not in str(err.value)
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr and stderr.count("\n") == 1 and "heartbeat" in stderr and "pw@" not in stderr
    with pytest.raises(ValueError):  # anything else is not a storage error and passes through
        with storage_errors(url):
            raise ValueError("not the database")


def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_retried_not_waited_for(tmp_path):
    """kill -9 between creating a trial and its first heartbeat leaves a RUNNING trial Optuna's stale check never
    sees (it needs a heartbeat): a resumed search waited for it forever (tests/test_search_cli.py's kill -9 test
    hung 2 times in ~8 suites). One heartbeat makes it stale like any other; it is failed and its retry queued."""
    import time

    from archc.search.storage import heartbeat_orphans
    storage = open_storage(f"sqlite:///{tmp_path}/runs.db", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="s")
    orphan = storage.create_new_trial(study._study_id)  # RUNNING, no heartbeat: its worker died at once
    time.sleep(1.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
        assert storage.get_trial(orphan).state == optuna.trial.TrialState.RUNNING  # Optuna alone: forever
        assert heartbeat_orphans(storage, study._study_id, older_than_s=60) == []  # too young to judge
        assert heartbeat_orphans(storage, study._study_id, older_than_s=1) == [orphan]
        assert heartbeat_orphans(storage, study._study_id, older_than_s=1) == []  # it has a heartbeat now
        time.sleep(2.2)  # SQLite's now() has 1 s resolution: > 1 s grace needs 2 s to show
        optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert storage.get_trial(orphan).state == optuna.trial.TrialState.FAIL
    assert optuna.trial.TrialState.WAITING in states  # the retry copy, as for any stale trial
