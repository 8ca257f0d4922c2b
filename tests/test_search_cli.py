"""``archc search`` as users run it, in subprocesses: kill -9 and resume, concurrent workers on SQLite
and on PostgreSQL, exact trial counts with no lost or duplicated trials, and the candidates it writes.

Real components throughout: the CLI, Optuna's RDB storage, the predicted ``iphone12pro`` latency
target and the ``params`` proxy, on the tiny space (64x64 inputs). The PostgreSQL test needs a
server: ``.ci/run`` starts one and sets ``ARCHC_TEST_POSTGRES_URL``; without it the test skips.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from archc import build, load_spec
from archc.search.census import census
from archc.search.objective import is_predicted
from archc.search.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
TARGET = "iphone12pro"
PG_ENV = "ARCHC_TEST_POSTGRES_URL"

pytestmark = pytest.mark.skipif(not is_predicted(TARGET), reason=f"needs the predicted latency target {TARGET} "
                                "(archc/latency/predict.py and its built-in profile)")
optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture
def space(tmp_path) -> Path:
    text = (ROOT / "search" / "tiny.yaml").read_text().replace("../specs/t8.yaml", str(ROOT / "specs" / "t8.yaml"))
    p = tmp_path / "tiny.yaml"
    p.write_text(text)
    return p


def cli(space: Path, storage: str, study: str, trials: int, *extra: str) -> list:
    return [sys.executable, "-m", "archc", "search", "--space", str(space), "--latency-ms", "5", "--target", TARGET,
            "--objective", "params", "--storage", storage, "--study", study, "--trials", str(trials),
            "--heartbeat", "1", "--no-macs", *extra]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")  # this checkout's archc
    e["OMP_NUM_THREADS"] = "1"
    return e


def run(cmd: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def load(storage: str, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=open_storage(storage))


def check_exact(storage: str, study: str, n: int) -> optuna.Study:
    """Exactly ``n`` finished trials; no trial number twice; no point evaluated twice."""
    s = load(storage, study)
    c = census(s)
    assert c.n_finished == n, c
    numbers = [t.number for t in s.trials]
    assert len(numbers) == len(set(numbers))
    finished = [t for t in s.trials if t.number in c.finished]
    points = [tuple(sorted(t.params.items())) for t in finished]
    assert len(points) == len(set(points)), "a point was evaluated twice"
    assert not c.running, "a finished command leaves no running trial behind"
    return s


def test_kill_9_and_resume_continues_the_same_study(tmp_path, space):
    storage, study = f"sqlite:///{tmp_path}/runs.db", "killme"
    cmd = cli(space, storage, study, 6, "--seed", "11", "--out", str(tmp_path / "out"))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    killed_running = None
    try:
        while time.time() < deadline:
            time.sleep(0.3)
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                s = load(storage, study)
            except KeyError:
                continue
            c = census(s)
            if c.n_finished >= 2 and c.running:  # kill it in the middle of a trial
                killed_running = c.running[0]
                break
        else:
            pytest.fail("the search did not finish 2 trials in time")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {t.number: (t.state, t.params) for t in load(storage, study).trials}
    assert before[killed_running][0] == TrialState.RUNNING

    done = run(cmd, tmp_path)
    assert done.returncode == 0, done.stderr
    s = check_exact(storage, study, 6)
    assert "6 of 6 trials finished" in done.stdout
    # finished trials of the first run are untouched
    for t in s.trials:
        if before.get(t.number, (None,))[0] in (TrialState.COMPLETE, TrialState.PRUNED):
            assert (t.state, t.params) == before[t.number]
    # the killed trial went stale and came back as a retry with the same parameters, which finished
    killed = s.trials[killed_running]
    assert killed.state == TrialState.FAIL and "error" not in killed.user_attrs
    retries = [t for t in s.trials if t.system_attrs.get("failed_trial") == killed_running]
    assert len(retries) == 1 and retries[0].number in census(s).finished
    assert set(before[killed_running][1].items()) <= set(retries[0].params.items())
    # the best candidate's spec builds as it is
    cands = sorted((tmp_path / "out" / "candidates").glob("*.yaml"))
    assert cands and build(load_spec(cands[0])) is not None
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 10_000


def test_two_workers_on_sqlite(tmp_path, space):
    storage, study = f"sqlite:///{tmp_path}/runs.db", "two"
    # 12 trials: the spawned worker needs ~1.5 s to import torch, in which worker 0 finishes ~3 trials
    done = run(cli(space, storage, study, 12, "--workers", "2", "--seed", "5", "--out", str(tmp_path / "out")), tmp_path)
    assert done.returncode == 0, done.stderr
    s = check_exact(storage, study, 12)
    workers = {t.user_attrs.get("worker") for t in s.trials if t.user_attrs.get("worker")}
    assert len(workers) == 2, f"both worker processes ran trials: {workers}"


def _two_machines(tmp_path: Path, space: Path, storage: str, study: str, n: int) -> optuna.Study:
    """Two independent commands on one storage, as two machines would run them (own seeds).
    (test_search_run.py covers the race for the last slot in-process.)"""
    procs = [subprocess.Popen(cli(space, storage, study, n, "--seed", str(seed), "--out", str(tmp_path / f"out{seed}")),
                              cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return check_exact(storage, study, n)


def test_two_commands_share_a_postgresql_study(tmp_path, space):
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL server: set {PG_ENV} (.ci/run starts one and sets it)")
    study = f"archc-test-{uuid.uuid4().hex[:8]}"
    try:
        _two_machines(tmp_path, space, url, study, 6)
    finally:
        try:
            optuna.delete_study(study_name=study, storage=open_storage(url))
        except Exception:  # noqa: BLE001 - cleanup only
            pass


def test_json_summary_metric_names_and_fastest_seen_when_nothing_fits(tmp_path, space):
    """--json: stdout is the summary only (progress lines go to stderr, one per trial when piped);
    optuna-dashboard's metric names are set; with no candidate the summary names the fastest trial."""
    storage = f"sqlite:///{tmp_path / 'j.db'}"
    cmd = cli(space, storage, "j", 3, "--json", "--seed", "0")
    cmd[cmd.index("--latency-ms") + 1] = "0.001"  # nothing fits
    r = run(cmd, tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["trials"]["finished"] == 3 and data["candidates"] == []
    fast = data["fastest_seen"]
    lat = [t.user_attrs.get("latency_ms") for t in load(storage, "j").trials]
    assert fast is not None and fast["latency_ms"] == pytest.approx(min(v for v in lat if v is not None))
    assert "search 3/3 (100%)" in r.stderr
    assert load(storage, "j").metric_names == ["score: params (M params; default proxy, higher = bigger model)",
                                                "latency_ms on iphone12pro"]
    r = run([c for c in cmd if c != "--json"], tmp_path)
    assert f"took {fast['latency_ms']:.4g} ms" in r.stdout and "no candidate within 0.001 ms" in r.stdout
