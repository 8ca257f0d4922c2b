"""Measured latency, the way the paper measured it: warm-up, then the median of N timed runs.

Every target reports the median, the interquartile range and the coefficient of variation (std / mean)
of its runs, so a noisy figure shows itself. Targets:

- ``cpu``: torch on the CPU, with a runtime option (``archc.runtime.RUNTIMES``: eager, channels_last,
  torch.compile, ONNX Runtime, ...), wall clock per run;
- ``onnxruntime``: ONNX Runtime's CPU execution provider on the exported deploy graph;
- ``cuda``: CUDA events around each run and one synchronisation before reading them, batch 8 by default
  (torch eager, channels_last, torch.compile, TensorRT through torch_tensorrt, ONNX Runtime's CUDA EP);
- ``coreml``: the exported Core ML package predicting on this Mac (macOS only);
- ``iphone``: the package on a connected development iPhone through coremltools' remote-device tools
  (macOS, Xcode's ``devicectl``, coremltools >= 8.3).

Where a target cannot run here, ``DeviceError`` says what is missing.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..errors import DeviceError
from ..threads import torch_threads
from .result import MEASURED_TARGETS, LatencyResult

#: batch size when none is given: the paper's GPU protocol uses 8, its iPhone protocol 1
DEFAULT_BATCH = {"cuda": 8}
#: intra-op threads for CPU targets unless the caller says otherwise (see measure_latency)
DEFAULT_CPU_THREADS = 1

#: runtime options each target accepts (``best`` resolves per device, see archc.runtime.BEST_RUNTIME)
TARGET_RUNTIMES = {
    "cpu": ("eager", "channels_last", "explicit_attention", "compile", "compile_channels_last", "onnxruntime", "best"),
    "cuda": ("eager", "channels_last", "explicit_attention", "compile", "compile_channels_last", "onnxruntime",
             "tensorrt", "best"),
    "onnxruntime": ("eager", "onnxruntime"),
    "coreml": ("eager",),
    "iphone": ("eager",),
}


# ------------------------------------------------------------------------------------ statistics
def summarize(samples_ms: Sequence[float]) -> Tuple[float, float, float]:
    """(median, interquartile range, coefficient of variation) of per-run times in milliseconds."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    mean = a.mean()
    cv = float(a.std() / mean) if mean > 0 else 0.0
    return float(med), float(q3 - q1), cv


def reduction_ci(a_ms: Sequence[float], b_ms: Sequence[float], n: int = 2000, seed: int = 0) -> Tuple[float, float, float]:
    """How much faster B is than A, in percent of A's median (``100 * (1 - median(b) / median(a))``), with a
    bootstrap 95% interval: (point, low, high). The interval is over the runs of one side-by-side measurement;
    it does not cover a machine whose state drifts between measurements (repeat those to see it)."""
    a, b = np.asarray(a_ms, dtype=np.float64), np.asarray(b_ms, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("no samples")
    rng = np.random.default_rng(seed)
    ma = np.median(rng.choice(a, (n, a.size)), axis=1)
    mb = np.median(rng.choice(b, (n, b.size)), axis=1)
    lo, hi = np.percentile(100.0 * (1.0 - mb / ma), [2.5, 97.5])
    return float(100.0 * (1.0 - np.median(b) / np.median(a))), float(lo), float(hi)


def time_runs(step: Callable[[], Any], runs: int, warmup: int,
              clock: Callable[[], float] = time.perf_counter) -> List[float]:
    """Wall-clock milliseconds of ``runs`` calls of ``step`` after ``warmup`` untimed calls.

    For CPU work that returns when it is done (torch CPU, ONNX Runtime, Core ML predict)."""
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(runs):
        t0 = clock()
        step()
        samples.append((clock() - t0) * 1e3)
    return samples


def time_runs_cuda(step: Callable[[], Any], runs: int, warmup: int, cuda: Any = None) -> List[float]:
    """Milliseconds of ``runs`` calls of ``step`` on the current CUDA stream, measured with CUDA events.

    Kernels launch asynchronously, so a host clock would time the launches, not the work: each run is
    bracketed by two events on the stream, and the host synchronises once (after warm-up and after the
    last run) before reading ``elapsed_time`` — no per-run synchronisation stalls the queue."""
    cuda = torch.cuda if cuda is None else cuda
    for _ in range(warmup):
        step()
    cuda.synchronize()
    starts = [cuda.Event(enable_timing=True) for _ in range(runs)]
    ends = [cuda.Event(enable_timing=True) for _ in range(runs)]
    for i in range(runs):
        starts[i].record()
        step()
        ends[i].record()
    cuda.synchronize()
    return [float(s.elapsed_time(e)) for s, e in zip(starts, ends)]


def time_interleaved(steps: Dict[str, Callable[[], Any]], runs: int, warmup: int, block: int = 5,
                     seed: int = 0, clock: Callable[[], float] = time.perf_counter) -> Dict[str, List[float]]:
    """Wall-clock milliseconds of ``runs`` calls of each step, interleaved in blocks of ``block`` calls.

    Comparing two models one after the other on a shared machine compares the load at two moments as
    much as the models; interleaving small blocks, in a shuffled order each round, spreads any change in
    load over all contenders alike."""
    import random

    rng = random.Random(seed)
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()
    samples: Dict[str, List[float]] = {n: [] for n in names}
    while any(len(s) < runs for s in samples.values()):
        rng.shuffle(names)
        for name in names:
            step = steps[name]
            for _ in range(min(block, runs - len(samples[name]))):
                t0 = clock()
                step()
                samples[name].append((clock() - t0) * 1e3)
    return samples


#: targets ``measure_side_by_side`` times: interleaved in one process on the host, one model after the other
#: on Core ML devices
SIDE_BY_SIDE_TARGETS = ("cpu", "onnxruntime", "cuda", "coreml", "iphone")


def measure_side_by_side(models: Dict[str, nn.Module], shape: Sequence[int], target: str = "cpu", *, runs: int = 20,
                         warmup: int = 3, threads: Optional[int] = None, runtime: str = "eager",
                         block: int = 2) -> Dict[str, List[float]]:
    """Per-run milliseconds of each deploy graph in ``models`` on one input ``shape``, timed in interleaved
    blocks of ``block`` runs (``time_interleaved``), in one process.

    A ratio of two models is only as good as the conditions both were timed under. Timed one after the
    other, each model meets its own machine state: torch eager at 1024 px page-faults every tensor over
    glibc's 32 MB mmap limit on every run (~0.3 s of ~1.5 s for PoolFormer-S12 on the 2-core VM), how much
    depends on what ran before, and the PoolFormer-S12 RepMixer-vs-pool reduction measured 8-30% in separate
    runs. Interleaved, both models share that state; ``allocator.keep_freed_memory`` removes most of it
    (docs/LATENCY_MODEL.md)."""
    from ..runtime import make_runner, resolve_runtime
    from .allocator import keep_freed_memory

    if target not in SIDE_BY_SIDE_TARGETS:
        raise DeviceError(f"side-by-side timing runs on {', '.join(SIDE_BY_SIDE_TARGETS)}, not '{target}'")
    if runs < 1 or warmup < 0 or block < 1:
        raise DeviceError(f"runs and block must be >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup}, block={block})")
    if target in ("coreml", "iphone"):
        # one model at a time: each is exported to its own package, and a phone runs nothing else meanwhile
        check_target(target)
        x = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(0))
        timer = _measure_coreml if target == "coreml" else _measure_iphone
        return {name: timer(model, x, runs, warmup, "ALL", {}) for name, model in models.items()}
    device = "cuda" if target == "cuda" else "cpu"
    if device == "cuda":
        _check_cuda()
    rt = "onnxruntime" if target == "onnxruntime" else resolve_runtime(runtime, device)
    threads = DEFAULT_CPU_THREADS if threads is None and device == "cpu" else threads
    keep_freed_memory()
    x = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(0))
    runners: Dict[str, Any] = {}
    with torch_threads(threads), contextlib.ExitStack() as closing:
        for name, model in models.items():
            runners[name] = closing.enter_context(contextlib.closing(make_runner(model, x, rt, device)))
        steps = {}
        for name, runner in runners.items():
            xin = runner.prepare(x)
            if device == "cuda":
                steps[name] = lambda r=runner, v=xin: (r(v), torch.cuda.synchronize())
            else:
                steps[name] = lambda r=runner, v=xin: r(v)
        return time_interleaved(steps, runs, warmup, block=block)


# ------------------------------------------------------------------------------------ entry point
def measure_latency(spec, target: str = "cpu", *, model: Optional[nn.Module] = None, runs: int = 100,
                    warmup: int = 10, batch: Optional[int] = None,
                    resolution: Union[None, int, Tuple[int, int]] = None, deploy: bool = True,
                    runtime: str = "eager", weights: Any = None, threads: Optional[int] = None,
                    compute_units: str = "ALL", precision: str = "fp32", calibration: Any = None) -> LatencyResult:
    """Measure ``spec`` on ``target``; ``model`` may be given instead of building the spec: a train-time
    model built from it (lowered here unless ``deploy=False``) or a deploy graph (used as it is).

    ``deploy`` times the reparameterized deploy graph (default), otherwise the eval-mode train-time
    graph. ``batch`` defaults to 8 on CUDA and 1 elsewhere; ``resolution`` to the spec's input size.
    ``threads`` sets torch's (and ONNX Runtime's) intra-op threads for CPU targets; by default
    ``DEFAULT_CPU_THREADS`` (1), because on a shared or virtualised machine a second thread makes
    batch-1 timings swing (measured on this project's 2-core VM, idle: CV 1.9-13% with 2 threads
    run to run, 1.0-3.7% with 1). ``precision="int8"`` (ONNX Runtime on the CPU) times the deploy graph quantized
    with archc's int8 recipe, calibrated on ``calibration`` images (default: seeded random ones, which is fine
    for timing: the quantized graph's ops do not depend on the calibrated ranges).
    """
    from ..runtime import inference_model, input_shape, resolve_runtime

    if target not in MEASURED_TARGETS:
        raise DeviceError(f"'{target}' is not a measured target; valid: {', '.join(MEASURED_TARGETS)}")
    if runs < 1 or warmup < 0:
        raise DeviceError(f"runs must be >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    allowed = TARGET_RUNTIMES[target]
    if runtime not in allowed:
        raise DeviceError(f"runtime '{runtime}' is not available on target '{target}'; valid: {', '.join(allowed)}")
    check_target(target)  # before any model work: say what is missing as early as possible
    batch = batch or DEFAULT_BATCH.get(target, 1)
    if target in ("coreml", "iphone") and batch != 1:
        raise DeviceError(f"target '{target}' measures batch 1 (the package's image input); use --batch 1")
    shape = input_shape(spec, batch, resolution)
    if precision != "fp32":
        if target not in ("cpu", "onnxruntime") or (target == "cpu" and runtime != "onnxruntime"):
            raise DeviceError(f"precision {precision} is measured in ONNX Runtime on the CPU: use --target onnxruntime")
        if not deploy:
            raise DeviceError(f"precision {precision} quantizes the deploy graph; the train graph stays fp32")
        if calibration is None:
            from ..quant.recipe import random_calibration
            calibration = random_calibration(shape)
    m = inference_model(spec, weights, deploy=deploy, model=model)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    detail: Dict[str, Any] = {"deploy": deploy, "spec": getattr(spec, "name", None), "load_before": _loadavg(),
                              "precision": precision}
    if threads is None and target in ("cpu", "onnxruntime"):
        threads = DEFAULT_CPU_THREADS
    if threads is not None and threads < 1:
        raise DeviceError(f"threads must be >= 1 (got {threads})")
    with torch_threads(threads):
        if target in ("cpu", "onnxruntime"):
            rt = "onnxruntime" if target == "onnxruntime" else resolve_runtime(runtime, "cpu")
            samples = _measure_torch(m, x, rt, "cpu", runs, warmup, detail, precision, calibration)
        elif target == "cuda":
            samples = _measure_torch(m, x, resolve_runtime(runtime, "cuda"), "cuda", runs, warmup, detail)
        elif target == "coreml":
            samples = _measure_coreml(m, x, runs, warmup, compute_units, detail)
        else:
            samples = _measure_iphone(m, x, runs, warmup, compute_units, detail)
    detail["load_after"] = _loadavg()
    med, iqr, cv = summarize(samples)
    return LatencyResult(target=target, ms=med, kind="measured", batch=batch, resolution=(shape[2], shape[3]),
                         iqr_ms=iqr, cv=cv, runs=runs, detail=detail)


def _loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------------------- availability checks
def check_target(target: str) -> None:
    """Raise ``DeviceError`` naming what is missing for ``target`` on this machine."""
    if target == "cuda":
        _check_cuda()
    elif target == "coreml":
        _check_macos("coreml", "Core ML prediction")
        _check_coremltools("coreml")
    elif target == "iphone":
        _check_iphone_tools()


def _check_cuda() -> None:
    if torch.version.cuda is None:
        raise DeviceError(f"target 'cuda' needs a CUDA build of torch and an NVIDIA GPU; this torch "
                          f"({torch.__version__}) is built without CUDA")
    if not torch.cuda.is_available():
        raise DeviceError(f"target 'cuda' found no usable NVIDIA GPU (torch {torch.__version__} with CUDA "
                          f"{torch.version.cuda}; check the driver and CUDA_VISIBLE_DEVICES)")


def _check_macos(target: str, what: str) -> None:
    if platform.system() != "Darwin":
        raise DeviceError(f"target '{target}' needs macOS ({what} runs only there through coremltools); "
                          f"this machine runs {platform.system()}. Export with `archc export --format coreml` "
                          "and measure on a Mac, or use a predicted profile such as --target iphone12pro")


def _check_coremltools(target: str, minimum: Tuple[int, int] = (8, 0)) -> Any:
    from ..export.ct_import import import_coremltools
    ct = import_coremltools(DeviceError, f"target '{target}'")
    if _version_tuple(ct.__version__) < minimum:
        raise DeviceError(f"target '{target}' needs coremltools >= {'.'.join(map(str, minimum))}; "
                          f"installed: {ct.__version__}")
    return ct


def _version_tuple(v: str) -> Tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _iphone_device() -> Tuple[Any, Any]:
    """The connected iPhone to benchmark on (``ARCHC_IOS_DEVICE`` picks one by name or id) and the
    code-signing credentials for coremltools' model-runner app."""
    ct = _check_coremltools("iphone", (8, 3))
    try:
        from coremltools.models.ml_program.experimental import remote_device
    except ImportError as exc:
        raise DeviceError(f"target 'iphone' needs coremltools' experimental remote-device tools "
                          f"(coremltools >= 8.3; installed {ct.__version__}): {exc}") from exc
    try:
        devices = remote_device.Device.get_connected_devices(remote_device.DeviceType.IPHONE)
    except Exception as exc:  # devicectl missing or failing: coremltools raises ValueError / its own error
        raise DeviceError(f"target 'iphone': could not list devices with devicectl: {exc}") from exc
    wanted = os.environ.get("ARCHC_IOS_DEVICE")
    if wanted:
        devices = [d for d in devices if wanted in (d.name, d.udid, d.identifier)]
    if not devices:
        which = f" named '{wanted}'" if wanted else ""
        raise DeviceError(f"target 'iphone': no connected iPhone{which} (connect a development iPhone by cable, "
                          "unlock it, enable Developer Mode and trust this Mac)")
    team = os.environ.get("ARCHC_IOS_TEAM", "")
    profile = os.environ.get("ARCHC_IOS_PROFILE")
    if not team and not profile:
        raise DeviceError("target 'iphone' needs code-signing for coremltools' model-runner app: set ARCHC_IOS_TEAM "
                          "to your Apple development team id (or ARCHC_IOS_PROFILE and ARCHC_IOS_BUNDLE_ID)")
    creds = remote_device.AppSigningCredentials(development_team=team, provisioning_profile_uuid=profile,
                                                bundle_identifier=os.environ.get("ARCHC_IOS_BUNDLE_ID"))
    return devices[0], creds


def _check_iphone_tools() -> None:
    _check_macos("iphone", "benchmarking on an attached iPhone")
    _check_coremltools("iphone", (8, 3))
    if shutil.which("xcrun") is None or shutil.which("xcodebuild") is None:
        raise DeviceError("target 'iphone' needs Xcode (xcrun and xcodebuild not found on PATH; install Xcode "
                          "and run `xcode-select --install`)")
    if shutil.which("devicectl") is None:
        raise DeviceError("target 'iphone' needs Xcode's devicectl on PATH (coremltools calls it by name): add "
                          "the folder of `xcrun --find devicectl` to PATH")
    _iphone_device()


# ------------------------------------------------------------------------------------- torch / ORT
def _measure_torch(model: nn.Module, x: torch.Tensor, runtime: str, device: str, runs: int, warmup: int,
                   detail: Dict[str, Any], precision: str = "fp32", calibration: Any = None) -> List[float]:
    from ..runtime import make_runner
    from .allocator import keep_freed_memory

    detail["allocator"] = keep_freed_memory()
    runner = make_runner(model, x, runtime, device, precision, calibration)
    try:
        xin = runner.prepare(x)
        step = lambda: runner(xin)  # noqa: E731
        detail.update(runtime=runtime, threads=torch.get_num_threads(), device=device_name(device))
        if device == "cuda" and runtime != "onnxruntime":
            return time_runs_cuda(step, runs, warmup)
        return time_runs(step, runs, warmup)  # ONNX Runtime's run() returns when its outputs are on the host
    finally:
        runner.close()


def device_name(device: str = "cpu") -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    from ..machine import cpu_model
    return f"{cpu_model()} ({os.cpu_count()} cores)"


# ---------------------------------------------------------------------------------------- Core ML
def _export_package(model: nn.Module, x: torch.Tensor, workdir: Path) -> Path:
    from ..export.coreml_export import convert_coreml
    return convert_coreml(model, x, workdir / "model.mlpackage")


def _random_image_inputs(x: torch.Tensor) -> Dict[str, Any]:
    from PIL import Image
    gen = np.random.default_rng(0)
    img = gen.integers(0, 256, size=(x.shape[2], x.shape[3], 3), dtype=np.uint8)
    return {"image": Image.fromarray(img)}


def _measure_coreml(model: nn.Module, x: torch.Tensor, runs: int, warmup: int, compute_units: str,
                    detail: Dict[str, Any]) -> List[float]:
    ct = _check_coremltools("coreml")
    if x.shape[0] != 1:
        raise DeviceError("target 'coreml' measures batch 1 (the package's image input); use --batch 1")
    units = _compute_units(ct, compute_units)
    with tempfile.TemporaryDirectory(prefix="archc-coreml-") as tmp:
        path = _export_package(model, x, Path(tmp))
        mlmodel = ct.models.MLModel(str(path), compute_units=units)
        inputs = _random_image_inputs(x)
        detail.update(runtime=f"Core ML MLModel.predict ({compute_units})", device=platform.platform())
        return time_runs(lambda: mlmodel.predict(inputs), runs, warmup)


def _compute_units(ct: Any, name: str) -> Any:
    try:
        return getattr(ct.ComputeUnit, name)
    except AttributeError:
        valid = [u.name for u in ct.ComputeUnit]
        raise DeviceError(f"unknown Core ML compute units '{name}'; valid: {', '.join(valid)}") from None


# ----------------------------------------------------------------------------------------- iPhone
def _measure_iphone(model: nn.Module, x: torch.Tensor, runs: int, warmup: int, compute_units: str,
                    detail: Dict[str, Any]) -> List[float]:
    """Benchmark on a connected development iPhone with coremltools' ModelRunner app.

    coremltools builds and installs its ``modelrunner`` app on the phone (signed with the team in
    ``ARCHC_IOS_TEAM``, or a provisioning profile in ``ARCHC_IOS_PROFILE`` + ``ARCHC_IOS_BUNDLE_ID``), loads
    the package there, and ``MLModelBenchmarker`` reports the on-device predict durations.
    """
    ct = _check_coremltools("iphone", (8, 3))
    if x.shape[0] != 1:
        raise DeviceError("target 'iphone' measures batch 1 (the package's image input); use --batch 1")
    from coremltools.models.ml_program.experimental import perf_utils
    device, creds = _iphone_device()
    units = _compute_units(ct, compute_units)
    with tempfile.TemporaryDirectory(prefix="archc-iphone-") as tmp:
        path = _export_package(model, x, Path(tmp))
        mlmodel = ct.models.MLModel(str(path), compute_units=units, skip_model_load=True)

        async def bench() -> List[float]:
            ready = await device.prepare_for_model_debugging(credentials=creds)
            benchmarker = perf_utils.MLModelBenchmarker(model=mlmodel, device=ready)
            if warmup:
                await benchmarker.benchmark_predict(iterations=warmup)
            measurement = await benchmarker.benchmark_predict(iterations=runs)
            return [float(s) for s in measurement.samples]

        samples = asyncio.run(bench())
    detail.update(runtime=f"Core ML on device ({compute_units}), coremltools MLModelBenchmarker",
                  device=f"{device.name} (iOS {device.os_version})")
    return samples
