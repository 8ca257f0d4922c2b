"""Measured latency: the statistics, the timing loops (clock and CUDA events faked at their boundary),
the CPU path for real on a tiny spec, and what each target says where it cannot run here."""
from __future__ import annotations

import statistics
import sys
import types

import numpy as np
import pytest
import torch

from archc import load_spec
from archc.errors import DeviceError
from archc.latency import LatencyResult, latency
from archc.latency import measure as M

TINY = {
    "name": "tiny_bench", "num_classes": 10, "input_size": 32,
    "stage_defaults": {"mlp_ratio": 2, "ffn_kernel": 3,
                       "downsample": {"type": "replk", "kernel": 3, "small_kernel": None, "stride": 2}},
    "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
               {"depth": 1, "width": 32, "mixer": "attention", "head_dim": 16}],
    "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.25},
}


@pytest.fixture(scope="module")
def tiny():
    return load_spec(TINY)


class FakeClock:
    """A clock that each step advances by the next of ``durations`` (seconds)."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = list(durations)
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += self.durations[self.calls]
        self.calls += 1


# ------------------------------------------------------------------------------------ statistics
def test_summarize_median_iqr_cv():
    samples = [1.0, 2.0, 3.0, 4.0, 100.0]
    med, iqr, cv = M.summarize(samples)
    assert med == 3.0
    assert iqr == pytest.approx(4.0 - 2.0)  # linear-interpolated quartiles of 5 points: 2 and 4
    assert cv == pytest.approx(statistics.pstdev(samples) / statistics.mean(samples))
    assert M.summarize([5.0] * 7) == (5.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        M.summarize([])


def test_time_runs_excludes_warmup_and_times_each_run():
    durations = [9.0, 9.0, 0.001, 0.002, 0.003]  # two slow warm-up calls, then 1, 2, 3 ms
    clock = FakeClock(durations)
    samples = M.time_runs(clock.step, runs=3, warmup=2, clock=clock)
    assert clock.calls == 5
    assert samples == pytest.approx([1.0, 2.0, 3.0])


def test_time_interleaved_shuffles_blocks_and_counts_runs():
    clock = FakeClock([0.001] * 100)
    order = []

    def step(name):
        def f():
            order.append(name)
            clock.step()
        return f

    out = M.time_interleaved({"a": step("a"), "b": step("b")}, runs=7, warmup=1, block=3, clock=clock)
    assert [len(v) for v in out.values()] == [7, 7]
    assert all(s == pytest.approx(1.0) for v in out.values() for s in v)
    timed = order[2:]  # after one warm-up call each
    # blocks of at most 3 consecutive calls of one contender, never all of one before the other
    runs_of = [len(list(g)) for _, g in __import__("itertools").groupby(timed)]
    assert max(runs_of) <= 3 * 2 and len(runs_of) >= 4


class FakeCuda:
    """torch.cuda at its boundary: events record a stream clock; reading one before synchronising fails
    like CUDA does ("event has not been recorded/completed")."""

    def __init__(self, durations):
        self.clock = FakeClock(durations)
        self.synced_at = -1.0
        self.syncs = 0
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.t = None

            def record(self):
                self.t = fake.clock.now

            def elapsed_time(self, end):
                if end.t is None or end.t > fake.synced_at:
                    raise RuntimeError("CUDA event not completed: synchronise first")
                return (end.t - self.t) * 1e3

        self.Event = Event

    def synchronize(self):
        self.syncs += 1
        self.synced_at = self.clock.now


def test_time_runs_cuda_uses_events_and_synchronises_before_reading():
    cuda = FakeCuda([5.0, 0.004, 0.005, 0.006])
    samples = M.time_runs_cuda(cuda.clock.step, runs=3, warmup=1, cuda=cuda)
    assert samples == pytest.approx([4.0, 5.0, 6.0])
    assert cuda.syncs == 2  # after warm-up and once after the last run, not per run


# --------------------------------------------------------------------------------- real CPU runs
def test_measure_cpu_on_a_tiny_spec(tiny):
    r = M.measure_latency(tiny, "cpu", runs=5, warmup=1, resolution=48)
    assert isinstance(r, LatencyResult)
    assert r.kind == "measured" and r.target == "cpu" and r.batch == 1 and r.runs == 5
    assert r.resolution == (48, 48)
    assert r.ms > 0 and r.iqr_ms >= 0 and r.cv >= 0
    assert r.detail["deploy"] is True and r.detail["runtime"] == "eager"
    assert r.detail["threads"] == M.DEFAULT_CPU_THREADS == 1  # the default, whatever the caller had
    d = r.to_dict()
    assert d["resolution"] == [48, 48] and "median" in r.describe()


def test_reduction_ci_brackets_the_median_reduction():
    a = [10.0, 10.2, 9.8, 10.1, 9.9, 10.0, 10.3, 9.7]
    point, lo, hi = M.reduction_ci(a, [v * 0.8 for v in a])
    assert point == pytest.approx(20.0) and lo <= 20.0 <= hi
    point, lo, hi = M.reduction_ci(a, [12.0, 8.0, 10.0, 11.0, 9.0, 10.5, 9.5, 10.0])
    assert lo < point < hi and hi - lo > 2  # noisier B: a wide interval around ~0
    with pytest.raises(ValueError):
        M.reduction_ci([], a)


@pytest.mark.parametrize("target", ["cpu", "onnxruntime"])
def test_side_by_side_times_every_model_interleaved_and_restores_threads(tiny, target):
    from archc.runtime import inference_model
    before = torch.get_num_threads()
    models = {"a": inference_model(tiny, None, deploy=True), "b": inference_model(tiny, None, deploy=True)}
    out = M.measure_side_by_side(models, (1, 3, 48, 48), target, runs=3, warmup=1, block=2)
    assert set(out) == {"a", "b"} and all(len(v) == 3 and min(v) > 0 for v in out.values())
    assert torch.get_num_threads() == before
    with pytest.raises(DeviceError, match="side-by-side timing runs on cpu, onnxruntime, cuda, coreml, iphone, not 'tpu'"):
        M.measure_side_by_side(models, (1, 3, 48, 48), "tpu")
    with pytest.raises(DeviceError, match="runs and block must be >= 1"):
        M.measure_side_by_side(models, (1, 3, 48, 48), target, runs=0)


def test_side_by_side_on_core_ml_times_one_model_after_the_other(tiny, monkeypatch):
    """Core ML targets export each model to its own package: the pair is timed one model after the other,
    through the same timer a single measurement uses (faked here: it needs macOS)."""
    from archc.runtime import inference_model
    calls = []
    monkeypatch.setattr(M, "check_target", lambda target: calls.append(("check", target)))
    monkeypatch.setattr(M, "_measure_iphone", lambda model, x, runs, warmup, units, detail:
                        calls.append(("time", tuple(x.shape), runs, warmup, units)) or [1.0] * runs)
    models = {"a": inference_model(tiny, None, deploy=True), "b": inference_model(tiny, None, deploy=True)}
    out = M.measure_side_by_side(models, (1, 3, 48, 48), "iphone", runs=4, warmup=1)
    assert out == {"a": [1.0] * 4, "b": [1.0] * 4}
    assert calls == [("check", "iphone")] + [("time", (1, 3, 48, 48), 4, 1, "ALL")] * 2


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS can run Core ML")
@pytest.mark.parametrize("target", ["coreml", "iphone"])
def test_calibrating_an_apple_target_off_macos_is_one_line_before_any_work(target, capsys, tmp_path, monkeypatch):
    from archc.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "--measure", "--target", target, "--device", "x", "--n", "4"]) == 2
    err = capsys.readouterr().err
    assert f"target '{target}' needs macOS" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # nothing sampled, nothing cached


def test_latency_dispatcher_passes_train_graph_and_onnxruntime(tiny):
    r = latency(tiny, "onnxruntime", runs=3, warmup=1, deploy=False, batch=2)
    assert r.target == "onnxruntime" and r.batch == 2 and r.detail["runtime"] == "onnxruntime"
    assert r.detail["deploy"] is False


def test_bad_runs_and_runtime_are_device_errors(tiny):
    with pytest.raises(DeviceError, match="runs must be >= 1"):
        M.measure_latency(tiny, "cpu", runs=0)
    with pytest.raises(DeviceError, match="runtime 'tensorrt' is not available on target 'cpu'"):
        M.measure_latency(tiny, "cpu", runtime="tensorrt")
    with pytest.raises(DeviceError, match="not a measured target"):
        M.measure_latency(tiny, "tpu")
    with pytest.raises(DeviceError, match="threads must be >= 1 \\(got 0\\)"):
        M.measure_latency(tiny, "cpu", threads=0)


def test_threads_are_set_for_the_run_and_restored(tiny):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r = M.measure_latency(tiny, "cpu", runs=2, warmup=0, resolution=48, threads=2)
        assert r.detail["threads"] == 2
        r = M.measure_latency(tiny, "cpu", runs=2, warmup=0, resolution=48)
        assert r.detail["threads"] == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------ what cannot run here
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_says_what_is_missing(tiny):
    with pytest.raises(DeviceError, match="target 'cuda' (needs a CUDA build of torch|found no usable NVIDIA GPU)"):
        M.measure_latency(tiny, "cuda", runs=1)


def test_cuda_defaults_to_batch_8(tiny, monkeypatch):
    """With CUDA faked at its boundary (availability, events, .to('cuda')), the path runs batch 8."""
    monkeypatch.setattr(M, "check_target", lambda t: None)
    seen = {}

    def fake_measure(model, x, runtime, device, runs, warmup, detail):
        seen.update(batch=x.shape[0], device=device, runtime=runtime)
        return [1.0, 2.0, 3.0]

    monkeypatch.setattr(M, "_measure_torch", fake_measure)
    r = M.measure_latency(tiny, "cuda", runs=3, runtime="compile")
    assert seen == {"batch": 8, "device": "cuda", "runtime": "compile"} and r.batch == 8 and r.ms == 2.0


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS can run these")
@pytest.mark.parametrize("target", ["coreml", "iphone"])
def test_apple_targets_say_they_need_macos(tiny, target):
    with pytest.raises(DeviceError, match=f"target '{target}' needs macOS.*this machine runs Linux"):
        latency(tiny, target, runs=1)


def test_unknown_target_suggests():
    with pytest.raises(DeviceError, match="unknown latency target 'cpuu' \\(did you mean 'cpu'\\?\\)"):
        latency(load_spec(TINY), "cpuu")


# ------------------------------------------------- Apple paths with macOS faked at the boundary
@pytest.fixture
def fake_mac(monkeypatch):
    monkeypatch.setattr(M.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(M, "_export_package", lambda model, x, workdir: workdir / "model.mlpackage")
    return monkeypatch


def test_iphone_without_xcode(tiny, fake_mac):
    fake_mac.setattr(M.shutil, "which", lambda name: None)
    with pytest.raises(DeviceError, match="target 'iphone' needs Xcode"):
        latency(tiny, "iphone", runs=1)
    fake_mac.setattr(M.shutil, "which", lambda name: None if name == "devicectl" else f"/usr/bin/{name}")
    with pytest.raises(DeviceError, match="devicectl on PATH"):
        latency(tiny, "iphone", runs=1)


def _fake_remote(monkeypatch, devices, samples, calls):
    """coremltools' remote-device tools replaced at the module boundary measure.py imports them from."""
    import coremltools.models.ml_program.experimental as exp

    class Device:
        def __init__(self, name):
            self.name, self.udid, self.identifier, self.os_version = name, "U" + name, "I" + name, "17.5"

        async def prepare_for_model_debugging(self, credentials=None, **kw):
            calls.append(("prepare", self.name, credentials.development_team))
            return self

    remote = types.SimpleNamespace(
        Device=types.SimpleNamespace(get_connected_devices=lambda kind: [Device(n) for n in devices]),
        DeviceType=types.SimpleNamespace(IPHONE="iphone"),
        AppSigningCredentials=lambda **kw: types.SimpleNamespace(**kw))

    class Benchmarker:
        def __init__(self, model, device):
            calls.append(("benchmarker", device.name))

        async def benchmark_predict(self, iterations=1, warmup=False, inputs=None):
            calls.append(("predict", iterations))
            return types.SimpleNamespace(samples=list(samples[:iterations]))

    monkeypatch.setattr(exp, "remote_device", remote)
    monkeypatch.setattr(exp, "perf_utils", types.SimpleNamespace(MLModelBenchmarker=Benchmarker))
    import coremltools as ct
    monkeypatch.setattr(ct.models, "MLModel", lambda *a, **k: object())
    monkeypatch.setattr(M.shutil, "which", lambda name: f"/usr/bin/{name}")


def test_iphone_with_no_connected_device(tiny, fake_mac):
    pytest.importorskip("coremltools")
    calls = []
    _fake_remote(fake_mac, [], [], calls)
    with pytest.raises(DeviceError, match="no connected iPhone"):
        latency(tiny, "iphone", runs=1)


def test_iphone_needs_signing_team(tiny, fake_mac):
    pytest.importorskip("coremltools")
    _fake_remote(fake_mac, ["Phone"], [1.0], [])
    fake_mac.delenv("ARCHC_IOS_TEAM", raising=False)
    fake_mac.delenv("ARCHC_IOS_PROFILE", raising=False)
    with pytest.raises(DeviceError, match="ARCHC_IOS_TEAM"):
        latency(tiny, "iphone", runs=1)


def test_iphone_benchmarks_on_the_chosen_device(tiny, fake_mac):
    pytest.importorskip("coremltools")
    calls = []
    samples = [2.0, 1.0, 4.0, 3.0, 5.0]
    _fake_remote(fake_mac, ["Other", "Phone"], samples, calls)
    fake_mac.setenv("ARCHC_IOS_TEAM", "TEAM123")
    fake_mac.setenv("ARCHC_IOS_DEVICE", "Phone")
    r = latency(tiny, "iphone", runs=5, warmup=2)
    assert ("prepare", "Phone", "TEAM123") in calls
    assert [c for c in calls if c[0] == "predict"] == [("predict", 2), ("predict", 5)]  # warm-up, then runs
    assert r.ms == 3.0 and r.iqr_ms == pytest.approx(2.0) and r.runs == 5
    assert r.detail["device"] == "Phone (iOS 17.5)"
    with pytest.raises(DeviceError, match="batch 1"):
        latency(tiny, "iphone", runs=5, batch=2)


def test_coreml_predict_loop_on_a_faked_mac(tiny, fake_mac):
    ct = pytest.importorskip("coremltools")
    predicted = []

    class FakeModel:
        def __init__(self, path, compute_units=None):
            self.units = compute_units

        def predict(self, inputs):
            predicted.append(sorted(inputs))
            return {"logits": np.zeros((1, 10), np.float32)}

    fake_mac.setattr(ct.models, "MLModel", FakeModel)
    r = latency(tiny, "coreml", runs=4, warmup=3, compute_units="CPU_ONLY")
    assert len(predicted) == 7 and predicted[0] == ["image"]
    assert r.target == "coreml" and r.runs == 4 and "CPU_ONLY" in r.detail["runtime"]
    with pytest.raises(DeviceError, match="unknown Core ML compute units 'NPU'"):
        latency(tiny, "coreml", runs=1, compute_units="NPU")


_FAULTS_SCRIPT = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from archc.latency.allocator import keep_freed_memory
    print(keep_freed_memory(), file=sys.stderr)
def step():
    a = torch.ones(16 * 2 ** 20)  # 64 MB, over glibc's largest mmap threshold
    return float((a * 2).sum())
for _ in range(8):  # the kept heap settles within a few runs (measured: after 2-6)
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_cpu_timing_keeps_freed_memory_so_runs_do_not_page_fault():
    """A forward that frees and reallocates 64 MB tensors page-faults on every run under glibc's defaults
    (each tensor mmapped anew: the eager-timing noise); after keep_freed_memory, once warm, it touches no
    fresh pages. (The fault counts come from fresh processes: this one's allocator may already be set.)"""
    import platform
    import subprocess
    from archc.latency.allocator import keep_freed_memory
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert "not glibc" in keep_freed_memory()
        return
    faults = {mode: int(subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "keep")}
    assert faults["default"] > 50_000 and faults["keep"] < 1_000, faults  # 5 runs x 2 tensors x 16k pages
    assert keep_freed_memory() == "glibc: freed memory kept (no trim, no mmap)"


def test_measured_latency_records_the_allocator_state(tiny):
    r = M.measure_latency(tiny, "cpu", runs=2, warmup=0, resolution=48)
    assert "allocator" in r.detail and r.detail["allocator"]
