"""The search loop in-process: exact trial counts, failing trials, resume, the report and its files.

Latency comes through the objective's ``latency_fn`` seam (a deterministic function of the spec),
so these tests need no device and no profile; the subprocess tests in test_search_cli.py run the
real CLI with a real (predicted) target.
"""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from archc import load_spec
from archc.cli import main as archc_main
from archc.errors import DeviceError, ExportError, SearchError
from archc.latency import LatencyResult
from archc.search.census import ERROR_TRIAL_ATTR, SURPLUS_ATTR, census, take_census
from archc.search.objective import Objective, Surplus
from archc.search.report import finalize
from archc.search.runner import SearchConfig, open_study, run_search
from archc.space import load_space
from archc.search.storage import mask_url, open_storage, scrub

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "search" / "tiny.yaml"
BUDGET = 0.3


def fake_ms(spec) -> float:
    """A deterministic stand-in for a device: wider and deeper is slower."""
    return sum(s.depth * s.width ** 2 * (2 if s.mixer.type == "attention" else 1) for s in spec.stages) / 2e5


def fake_latency(spec, target, **kw):
    return LatencyResult(target=target, ms=fake_ms(spec), kind="measured", batch=1, resolution=spec.input_size,
                         runs=kw.get("runs"))


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(TINY, tmp_path / "tiny.yaml")
    # the copied space names its base relative to itself
    text = (tmp_path / "tiny.yaml").read_text().replace("../specs/t8.yaml", str(ROOT / "specs" / "t8.yaml"))
    (tmp_path / "tiny.yaml").write_text(text)
    return SearchConfig(latency_ms=BUDGET, space="tiny.yaml", target="cpu", objective="params", trials=8, seed=3,
                        heartbeat=1, storage=f"sqlite:///{tmp_path}/study.db", lock_dir=str(tmp_path / "locks"))


def finished_numbers(study):
    return census(study).finished


def test_search_counts_exactly_and_resumes(cfg):
    run = run_search(cfg, latency_fn=fake_latency)
    c = run.census
    assert c.n_finished == 8 and c.surplus == 0 and c.abandoned == 0
    assert c.complete + c.pruned + c.failed == 8
    first = {t.number: t.params for t in run.study.trials}
    # the same command again with a larger total continues the same study: 12 in all, old trials kept
    cfg.trials = 12
    run2 = run_search(cfg, latency_fn=fake_latency)
    assert run2.census.n_finished == 12
    assert {t.number: t.params for t in run2.study.trials if t.number in first} == first
    params = [tuple(sorted(t.params.items())) for t in run2.study.trials]
    assert len(params) == len(set(params)), "a resumed sampler must not replay the first run's points"
    # the same command once more does nothing: the study is complete
    run3 = run_search(cfg, latency_fn=fake_latency)
    assert len(run3.study.trials) == len(run2.study.trials)
    # feasible trials carry the constraint Optuna's samplers read
    for t in run2.study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.constraints["latency"] == pytest.approx(t.values[1] - BUDGET)
        assert t.values[1] <= BUDGET


def test_failing_trials_are_recorded_and_the_study_goes_on(cfg):
    calls = {"n": 0}

    def flaky_latency(spec, target, **kw):
        calls["n"] += 1
        if calls["n"] % 3 == 1:
            raise ExportError("coremltools: unsupported op (simulated export failure)")
        return fake_latency(spec, target, **kw)

    def flaky_score(spec, name):
        if spec.stages[0].width == 48:
            raise MemoryError("simulated out of memory")
        from archc.proxies import score
        return score(spec, name)

    cfg.trials = 9
    run = run_search(cfg, latency_fn=flaky_latency, score_fn=flaky_score)
    c = run.census
    assert c.n_finished == 9 and c.failed >= 3
    failed = run.study.get_trials(states=(TrialState.FAIL,))
    assert all(t.user_attrs[ERROR_TRIAL_ATTR] == t.number for t in failed)
    assert any("ExportError: coremltools" in t.user_attrs["error"] for t in failed)
    assert max(t.number for t in failed) < max(c.finished) or c.complete  # trials ran after a failure


def test_device_error_stops_the_search_without_counting(cfg):
    def no_device(spec, target, **kw):
        raise DeviceError("no iPhone attached")

    with pytest.raises(DeviceError, match="no iPhone attached"):
        run_search(cfg, latency_fn=no_device)
    study = optuna.load_study(study_name=cfg.study_name(load_space(cfg.space)), storage=cfg.storage)
    c = census(study)
    assert c.abandoned == 1 and c.failed == 0  # the trial that met the DeviceError does not count
    assert study.trials[-1].state == TrialState.FAIL and study.trials[-1].number not in c.finished


def test_start_points_are_enqueued_first(cfg, tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(textwrap.dedent(f"""
        base: {ROOT / 'specs' / 't8.yaml'}
        name: small
        input_size: 64
        num_classes: 10
        stage_defaults: {{mlp_ratio: 2, ffn_kernel: 3, downsample: {{kernel: 3}}}}
        stages:
          - {{depth: 1, width: 16, mixer: repmixer}}
          - {{depth: 1, width: 32, mixer: repmixer}}
          - {{depth: 2, width: 64, mixer: repmixer}}
          - {{depth: 1, width: 128, mixer: attention, pos_enc: {{type: repcpe, kernel: 7}}}}
        """))
    with open(cfg.space, "a") as f:
        f.write(f"start_from: [{spec}]\n")
    cfg.trials = 3
    run = run_search(cfg, latency_fn=fake_latency)
    t0 = run.study.trials[0]
    assert t0.user_attrs["variant"] == "small"
    assert t0.user_attrs["widths"] == "16,32,64,128" and t0.user_attrs["mixers"].endswith("attention")
    # a rerun does not enqueue it again
    cfg.trials = 4
    run2 = run_search(cfg, latency_fn=fake_latency)
    assert sum(1 for t in run2.study.trials if t.user_attrs.get("variant")) == 1


def test_a_different_search_cannot_reuse_the_study(cfg):
    run_search(SearchConfig(**{**cfg.__dict__, "trials": 1}), latency_fn=fake_latency)
    other = SearchConfig(**{**cfg.__dict__, "latency_ms": 9.0, "study": cfg.study_name(load_space(cfg.space))})
    with pytest.raises(SearchError, match=r"made by a different search \(latency_ms: study has 0.3, this run 9.0\)"):
        run_search(other, latency_fn=fake_latency)


def test_report_candidates_build_and_files_are_written(cfg, tmp_path):
    cfg.trials = 10
    run = run_search(cfg, latency_fn=fake_latency)
    seen: dict = {}

    def remeasure(spec, target, **kw):
        # the final re-measurement finds the fastest front member slower than the search did
        seen[spec.name] = seen.get(spec.name, 0) + 1
        ms = fake_ms(spec)
        return LatencyResult(target=target, ms=BUDGET + 0.01 if spec.name == slowest else ms, kind="measured",
                             batch=1, resolution=spec.input_size, runs=kw.get("runs"))

    front = [t for t in run.study.best_trials]
    assert front, "the tiny space always has feasible points"
    slowest = f"tiny_t{max(front, key=lambda t: t.values[1]).number:04d}"
    objective = Objective(space=run.space, objective="params", target="cpu", budget_ms=BUDGET, n_trials=cfg.trials,
                          lock_dir=Path(cfg.lock_dir), latency_runs=4, latency_fn=remeasure)
    report = finalize(run.study, run.space, objective, tmp_path / "out", metrics=False)  # MACs: the CLI test
    assert [c.spec.name for c in report.dropped] == [slowest]
    assert all(c.final_ms <= BUDGET for c in report.candidates)
    assert len(report.candidates) == len(front) - 1
    for cand in report.candidates:
        assert load_spec(cand.path) == cand.spec
    assert archc_main(["build", str(report.best.path)]) == 0   # the YAML builds as it is
    best = report.best
    assert best.score == max(c.score for c in report.candidates)
    # every trial is in the CSV and JSON, with its status
    rows = json.loads((tmp_path / "out" / "trials.json").read_text())
    assert [r["number"] for r in rows] == [t.number for t in run.study.trials]
    assert (tmp_path / "out" / "trials.csv").read_text().count("\n") == len(rows) + 1
    png = (tmp_path / "out" / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["trials"]["finished"] == 10 and summary["dropped"][0]["name"] == slowest
    # candidates were re-measured with 5x the runs of the search
    assert all(seen[c.spec.name] == 1 for c in report.candidates)


def test_census_counts_finished_and_excludes_stale_and_surplus():
    """The accounting rules on hand-made trials: stale ones replaced by retries, surplus ones."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"x": optuna.distributions.IntDistribution(0, 9)}
    add = lambda **kw: study.add_trial(optuna.trial.create_trial(distributions=dist, **kw))  # noqa: E731
    add(state=TrialState.COMPLETE, params={"x": 1}, values=[1.0, 0.1])                     # 0 finished
    add(state=TrialState.PRUNED, params={"x": 2})                                          # 1 finished
    add(state=TrialState.FAIL, params={"x": 3}, user_attrs={"error": "boom", ERROR_TRIAL_ATTR: 2})  # 2 finished
    add(state=TrialState.FAIL, params={"x": 4})                                            # 3 stale, retried by 5
    add(state=TrialState.FAIL, params={"x": 0}, user_attrs={SURPLUS_ATTR: 4})              # 4 surplus
    add(state=TrialState.WAITING, params={"x": 4}, system_attrs={"failed_trial": 3, "retry_history": [3]})  # 5
    add(state=TrialState.COMPLETE, params={"x": 6}, values=[2.0, 0.2], user_attrs={SURPLUS_ATTR: 99})  # 6 (inherited)
    c = take_census(study.get_trials())
    assert c.finished == [0, 1, 2, 6]
    assert c.abandoned == 1 and c.surplus == 1 and c.waiting_retries == [5]
    assert c.holders() == [0, 1, 2, 5, 6]


def test_a_trial_that_finds_the_study_full_is_surplus(cfg):
    cfg.trials = 2
    run_search(cfg, latency_fn=fake_latency)
    space = load_space(cfg.space)
    study = open_study(cfg, space, create=False)
    objective = Objective(space=space, objective="params", target="cpu", budget_ms=BUDGET, n_trials=2,
                          lock_dir=Path(cfg.lock_dir), latency_fn=fake_latency)
    # what a racing worker would do: start a trial when the last slot is already taken
    study.optimize(objective, n_trials=3, catch=(Surplus,))
    assert len(study.trials) == 3, "the surplus trial stops the worker"
    c = census(study)
    assert c.n_finished == 2 and c.surplus == 1 and not study.trials[-1].params


def test_storage_errors_never_show_the_password(tmp_path):
    url = "postgresql://bob:s3cr%40t-pw@127.0.0.1:1/nodb"
    assert mask_url(url) == "postgresql://bob:***@127.0.0.1:1/nodb"
    with pytest.raises(SearchError) as err:
        open_storage(url, heartbeat_interval=1)
    text = str(err.value)
    assert "cannot open storage postgresql://bob:***@127.0.0.1:1/nodb" in text
    assert "s3cr" not in text and "t-pw" not in text
    assert "s3cr" not in scrub(f"failed for {url} (password s3cr@t-pw)", url)
    with pytest.raises(SearchError, match="not a database URL"):
        open_storage("runs/search.db")


def _hold_lock_script(lock_dir: Path, log: Path, seconds: float) -> str:
    return (f"import time, sys; sys.path.insert(0, {str(ROOT)!r})\n"
            f"from archc.search.locks import device_lock\n"
            f"with device_lock({str(lock_dir)!r}, 'cpu'):\n"
            f"    t0 = time.time(); time.sleep({seconds}); t1 = time.time()\n"
            f"    open({str(log)!r}, 'a').write(f'{{t0}} {{t1}}\\n')\n")


def test_measurements_on_one_device_are_serialised(tmp_path):
    import subprocess
    import sys
    log = tmp_path / "held.txt"
    procs = [subprocess.Popen([sys.executable, "-c", _hold_lock_script(tmp_path / "locks", log, 0.5)]) for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    spans = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"two workers measured at once: {spans}"


def test_a_killed_worker_never_leaves_the_device_locked(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from archc.search.locks import device_lock, lock_path
    holder = subprocess.Popen([sys.executable, "-c", _hold_lock_script(tmp_path / "locks", tmp_path / "x", 600)])
    deadline = time.time() + 60
    while time.time() < deadline and not (lock_path(tmp_path / "locks", "cpu").exists()
                                          and lock_path(tmp_path / "locks", "cpu").read_text().strip()):
        time.sleep(0.05)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    t0 = time.time()
    with device_lock(tmp_path / "locks", "cpu") as waited:
        assert waited < 5 and time.time() - t0 < 5


def test_a_second_machine_waits_for_the_creator_to_mark_the_study(cfg):
    """Two machines start at once: the one that did not create the study waits for the creator's
    marks (settings, enqueued start points) instead of failing or enqueueing them twice."""
    import threading
    from archc.search import runner
    space = load_space(cfg.space)
    storage = open_storage(cfg.storage, 1)
    study = optuna.create_study(storage=storage, study_name=cfg.study_name(space), directions=["maximize", "minimize"])
    meta = runner._meta(cfg, space)

    def creator() -> None:
        import time
        time.sleep(0.5)
        study.set_user_attr(runner.META_ATTR, meta)
        time.sleep(0.3)
        study.set_user_attr(runner.ENQUEUED_ATTR, True)

    t = threading.Thread(target=creator)
    t.start()
    other = open_study(cfg, space, create=False)
    t.join()
    assert other.user_attrs[runner.META_ATTR] == meta and other.user_attrs[runner.ENQUEUED_ATTR] is True


def test_a_study_not_made_by_archc_is_refused(cfg):
    space = load_space(cfg.space)
    study = optuna.create_study(storage=open_storage(cfg.storage, 1), study_name=cfg.study_name(space),
                                directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[1.0, 1.0]))
    with pytest.raises(SearchError, match="was not made by archc search; use --study NAME"):
        run_search(cfg, latency_fn=fake_latency)


def test_predicted_candidates_carry_the_profiles_held_out_error(cfg, tmp_path, capsys):
    from archc.cli.search import print_report
    from archc.latency import LatencyTarget
    cfg.trials = 6
    run = run_search(cfg, latency_fn=fake_latency)

    def predicted(spec, target, **kw):
        return LatencyResult(target=target, ms=fake_ms(spec), kind="predicted", batch=1, resolution=spec.input_size,
                             expected_error_pct=4.6, error_bound_pct=10.4)

    objective = Objective(space=run.space, objective="params", target="cpu", budget_ms=BUDGET, n_trials=cfg.trials,
                          lock_dir=Path(cfg.lock_dir), latency_fn=predicted)
    objective.resolved = LatencyTarget("cpu", "predicted")  # as a profile would resolve
    report = finalize(run.study, run.space, objective, tmp_path / "out", metrics=False)
    assert report.candidates and all(c.final_error_pct == 4.6 for c in report.candidates)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert all(c["final_error_pct"] == 4.6 for c in summary["candidates"])
    print_report(report)
    out = capsys.readouterr().out
    assert "± held-out" in out and "±4.6%" in out


def test_pareto_plot_numbers_candidates_greys_infeasible_and_labels_the_score(tmp_path, monkeypatch):
    """The plot's NN labels are the candidates' file numbers, over-budget trials are drawn as Optuna's
    'Infeasible Trial' series, and the x axis says what the default score is (M params)."""
    import matplotlib.figure
    from archc.search.report import plot_pareto
    study = optuna.create_study(directions=["maximize", "minimize"])

    def objective(trial):
        x = trial.suggest_float("x", 1.0, 10.0)
        trial.set_constraint("latency", x - 5.0)  # feasible below 5 ms
        return x, x

    study.enqueue_trial({"x": 2.0})
    study.enqueue_trial({"x": 4.0})
    study.enqueue_trial({"x": 8.0})
    study.optimize(objective, n_trials=3)
    saved = []
    original = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: (saved.append(self), original(self, *a, **k)))
    assert plot_pareto(study, tmp_path, "params", "iphone12pro", 5.0, numbers={1: 1, 0: 2}) == tmp_path / "pareto.png"
    ax = saved[0].axes[0]
    labels = {t.get_text(): t.xy for t in ax.texts}
    assert labels["01"] == (4.0, 4.0) and labels["02"] == (2.0, 2.0) and len(labels) == 2
    assert "Infeasible Trial" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "M params" in ax.get_xlabel()


def test_pareto_plot_draws_pruned_over_budget_trials_grey_at_their_params(tmp_path, monkeypatch):
    import matplotlib.figure
    from archc.search.report import plot_pareto
    study = optuna.create_study(directions=["maximize", "minimize"])

    def objective(trial):
        x = trial.suggest_float("x", 1.0, 10.0)
        trial.set_user_attr("latency_ms", x)
        trial.set_user_attr("params_m", 2 * x)
        if x > 5.0:
            raise optuna.TrialPruned("over budget")
        trial.set_constraint("latency", x - 5.0)
        return 2 * x, x

    for x in (2.0, 8.0, 9.0):
        study.enqueue_trial({"x": x})
    study.optimize(objective, n_trials=3)
    saved = []
    original = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: (saved.append(self), original(self, *a, **k)))
    plot_pareto(study, tmp_path, "params", "iphone12pro", 5.0)
    ax = saved[0].axes[0]
    assert "over budget, pruned (2)" in [t.get_text() for t in ax.get_legend().get_texts()]
    pruned = next(c for c in ax.collections if c.get_label() == "over budget, pruned (2)")
    assert sorted(map(tuple, pruned.get_offsets().tolist())) == [(16.0, 8.0), (18.0, 9.0)]


def test_trials_csv_grows_while_the_search_runs(cfg, monkeypatch):
    """trials.csv is on disk before the search ends: a stopped or killed search leaves what it finished."""
    import csv as csv_mod

    import archc.search.runner as runner
    monkeypatch.setattr(runner, "STREAM_EVERY_S", 0.0)
    seen = []

    def watching(spec, target, **kw):
        path = runner.SearchConfig.out_dir(cfg, load_space(cfg.space)) / "trials.csv"
        if path.exists():
            with path.open() as f:
                seen.append(len(list(csv_mod.DictReader(f))))
        return fake_latency(spec, target, **kw)

    run_search(cfg, latency_fn=watching)
    assert seen and max(seen) >= cfg.trials // 2 and seen == sorted(seen)


def test_a_training_batch_no_point_can_take_is_refused_before_any_trial(cfg, monkeypatch):
    """issue 23: every trial failed on the memory guard, then the search said to raise the budget."""
    monkeypatch.setenv("ARCHC_MAX_MEMORY_GB", "0.05")
    cfg.objective, cfg.train = "train", {"batch": 256, "resolution": 64, "steps": 1}
    with pytest.raises(SearchError, match=r"--train-batch 256 at --train-resolution 64: the space's smallest point "
                                          r"cannot train \(needs about .* over the limit of .*\), so no trial could"):
        run_search(cfg, latency_fn=fake_latency)
    assert not Path(cfg.storage.removeprefix("sqlite:///")).exists() or not optuna.get_all_study_names(cfg.storage)


def test_when_every_trial_fails_the_cli_says_so_with_the_first_error(cfg, tmp_path, monkeypatch, capsys):
    import archc.search.runner as runner

    def failing(spec, name):
        raise MemoryError("simulated out of memory")

    monkeypatch.setattr(runner, "make_score_fn", lambda *a, **k: failing)
    code = archc_main(["search", "--space", "tiny.yaml", "--trials", "2", "--latency-ms", "1000", "--seed", "2",
                       "--target", "iphone12pro", "--objective", "params", "--no-macs", "--out", str(tmp_path / "out"),
                       "--storage", cfg.storage])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line and "failed 1" not in line]
    assert code == 2 and len(err) == 1 and "raise --latency-ms" not in err[0] and "Traceback" not in err[0]
    assert err[0].startswith("archc: error: all 2 finished trials failed, so there is no candidate; the first "
                             "(trial 0): MemoryError: simulated out of memory"), err


def test_results_onto_a_full_disk_name_the_file_and_leave_no_temporary_file(tmp_path, full_disk):
    """issue 23: '[Errno 28] No space left on device' with no file named, and '.trials.csv.PID.tmp' left."""
    from archc.errors import ArchcError
    from archc.search.report import write_trials
    with pytest.raises(ArchcError, match=rf"^'{tmp_path}/trials.csv': cannot write: No space left on device$"):
        write_trials([{"trial": 0, "state": "COMPLETE"}], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_int8_search_times_candidates_quantized_and_is_its_own_study(cfg, monkeypatch):
    """--precision int8: every measurement asks for int8 (the objective passes it through to archc.latency), the
    study's identity records it (an fp32 study is refused with the key that differs), and only ONNX Runtime can
    time it."""
    seen = []

    def recording_latency(spec, target, **kw):
        seen.append(kw.get("precision", "fp32"))
        return fake_latency(spec, target, **kw)

    with pytest.raises(SearchError, match="use --target onnxruntime"):
        run_search(SearchConfig(**{**cfg.__dict__, "precision": "int8"}))
    int8 = SearchConfig(**{**cfg.__dict__, "target": "onnxruntime", "precision": "int8", "trials": 2})
    assert "-onnxruntime-int8-" in int8.study_name(load_space(int8.space))
    run = run_search(int8, latency_fn=recording_latency)
    assert run.census.n_finished == 2 and seen and set(seen) == {"int8"}
    fp32 = SearchConfig(**{**int8.__dict__, "precision": "fp32", "study": int8.study_name(load_space(int8.space))})
    with pytest.raises(SearchError, match=r"precision: study has 'int8', this run None"):
        run_search(fp32, latency_fn=recording_latency)


def test_a_trial_builds_its_candidate_once(cfg, monkeypatch):
    """Parameters, the predicted latency and the proxy score all use the one seeded model a trial builds (three
    builds per trial before); the predicted target lowers that model instead of building the spec again. (The
    guards' meta-device count allocates nothing and is not a build.)"""
    from archc.network import ArchNet
    builds = []
    real_init = ArchNet.__init__

    def counting_init(self, spec):
        real_init(self, spec)
        if next(self.parameters()).device.type != "meta":  # the guards count on the meta device: no real build
            builds.append(spec.name)

    monkeypatch.setattr(ArchNet, "__init__", counting_init)
    run = run_search(SearchConfig(**{**cfg.__dict__, "target": "iphone12pro", "latency_ms": 50.0, "trials": 3}))
    built = [t for t in run.study.trials if t.user_attrs.get("params_m") is not None]
    assert built, "no trial got as far as building its candidate"
    per_trial = {t.user_attrs["spec"].split("\n")[0].split(": ")[1]: 0 for t in built}
    for name in builds:
        if name in per_trial:
            per_trial[name] += 1
    assert set(per_trial.values()) == {1}, per_trial
