"""`archc dashboard`: optuna-dashboard on a search's storage, checked in a real headless browser (Debian's
chromium; `.ci/run` installs it) for the study and archc's metric names; stops cleanly; never prints a password."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from archc.cli import main
from archc.latency import LatencyResult
from archc.search.runner import SearchConfig, run_search

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (the dashboard extra)")


def fake_latency(spec, target, **kw):
    ms = sum(s.depth * s.width for s in spec.stages) / 1000
    return LatencyResult(target=target, ms=ms, kind="measured", batch=1, resolution=spec.input_size)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    cfg = SearchConfig(latency_ms=5.0, space=str(ROOT / "search" / "tiny.yaml"), target="cpu", objective="params",
                       trials=3, seed=0, heartbeat=1, storage=f"sqlite:///{tmp}/study.db",
                       lock_dir=str(tmp / "locks"), out=str(tmp / "out"))
    run = run_search(cfg, latency_fn=fake_latency)
    return cfg.storage, run.study.study_name


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium here (`apt-get install chromium`; .ci/run installs it)")


def test_dashboard_serves_the_study_to_a_real_browser_and_stops_cleanly(study):
    storage, name = study
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "archc", "dashboard", "--storage", storage, "--port", str(port),
                             "--study", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        api = f"http://127.0.0.1:{port}/api/studies"
        for _ in range(120):
            try:
                studies = json.load(urllib.request.urlopen(api, timeout=2))["study_summaries"]
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("the dashboard did not answer in 30 s")
        assert [s["study_name"] for s in studies] == [name]
        sid = studies[0]["study_id"]
        dom = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                              "--dump-dom", f"http://127.0.0.1:{port}/dashboard/studies/{sid}"],
                             capture_output=True, text=True, timeout=120).stdout
        assert name in dom
        assert "score: params (M params" in dom and "latency_ms on cpu" in dom  # archc's metric names
        trials = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                                 "--virtual-time-budget=10000", "--dump-dom",
                                 f"http://127.0.0.1:{port}/dashboard/studies/{sid}/trials"],
                                capture_output=True, text=True, timeout=120).stdout
        assert "latency_kind" in trials and "stages:" in trials  # user attributes: latency and the spec
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "dashboard stopped" in out and "Traceback" not in out
    assert f"/dashboard/studies/{sid}" in out


def test_dashboard_refusals_are_one_line_and_hide_passwords(study, tmp_path, capsys):
    storage, name = study
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "no database at" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
    assert main(["dashboard", "--storage", storage, "--study", name + "x"]) == 2
    assert f"did you mean '{name}'" in capsys.readouterr().err
    assert main(["dashboard", "--storage", "postgresql://bob:s3cret@127.0.0.1:1/db", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err and err.startswith("archc: error:") and "\n" not in err.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert main(["dashboard", "--storage", storage, "--port", str(taken)]) == 2
        assert "cannot serve there" in capsys.readouterr().err
