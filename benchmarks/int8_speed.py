"""int8 vs fp32 speed in ONNX Runtime, by model, input size, batch and activation type: where int8 pays on this CPU.

    python3 benchmarks/int8_speed.py [--models fastvit_t8,mobileone_s0,runs/fv-083.yaml] [--resolutions 32,256]
                                     [--batches 1,32] [--runs 60]

Speed does not depend on the weights' values, so each model is its deploy graph with seeded random weights
(BatchNorm statistics randomised so folding is not trivial), exported to ONNX and quantized by
``archc.quant.quantize_onnx_int8`` (QDQ, per-tensor, MinMax on 32 seeded random images), with int8 weights and
both activation types ONNX Runtime offers: S8S8 (archc's default, the accurate one) and U8S8 (what MLAS' x86
kernels take natively). fp32, S8S8 and U8S8 sessions (one thread each) are timed interleaved in one process; the
ratio fp32/int8 of medians gets a paired bootstrap 95% interval (scipy). Prints a markdown table with the CPU and
its flags (VNNI / AMX decide whether int8 GEMMs are fast).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archc.export.onnx_export import export_onnx  # noqa: E402
from archc.latency.measure import time_interleaved  # noqa: E402
from archc.machine import cpu_description  # noqa: E402
from archc.quant import quantize_onnx_int8  # noqa: E402
from archc.runtime import inference_model  # noqa: E402
from archc.spec import load_spec  # noqa: E402
from archc.testing import randomize_  # noqa: E402


def ratio_ci(a: np.ndarray, b: np.ndarray) -> tuple:
    from scipy.stats import bootstrap
    ci = bootstrap((a, b), lambda p, q: np.median(p) / np.median(q), paired=True, vectorized=False,
                   n_resamples=2000, random_state=0).confidence_interval
    return float(np.median(a) / np.median(b)), float(ci.low), float(ci.high)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="runs/fv-083.yaml,fastvit_t8,mobileone_s0")
    ap.add_argument("--resolutions", default="32,256", help="input sizes (each model at each)")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import onnxruntime as ort
    rows = []
    for name in args.models.split(","):
        for res in (int(r) for r in args.resolutions.split(",")):
            spec = load_spec(name, {"input_size": res})
            torch.manual_seed(0)
            from archc.builder import build
            train = build(spec).eval()
            randomize_(train, seed=0)
            model = inference_model(spec, model=train)
            gen = np.random.default_rng(0)
            calib = gen.standard_normal((32, spec.in_chans, res, res)).astype(np.float32)
            with tempfile.TemporaryDirectory() as tmp:
                fp32 = export_onnx(model, torch.from_numpy(calib[:1]), Path(tmp) / "m.onnx")
                paths = {"fp32": fp32}
                for act in ("s8", "u8"):
                    paths[act] = quantize_onnx_int8(fp32, Path(tmp) / f"{act}.onnx", calib, calibration="minmax",
                                                    per_channel=False, activations=act).path
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                            for k, p in paths.items()}
                for batch in (int(b) for b in args.batches.split(",")):
                    x = gen.standard_normal((batch, spec.in_chans, res, res)).astype(np.float32)
                    fns = {k: (lambda s=s: s.run(None, {"image": x})) for k, s in sessions.items()}
                    t = {k: np.array(v) for k, v in time_interleaved(fns, runs=args.runs, warmup=5).items()}
                    s8 = ratio_ci(t["fp32"], t["s8"])
                    u8 = ratio_ci(t["fp32"], t["u8"])
                    rows.append((spec.name, res, batch, float(np.median(t["fp32"])), float(np.median(t["s8"])),
                                 float(np.median(t["u8"])), s8, u8))
                    print(f"{spec.name} {res}px batch {batch}: fp32 {rows[-1][3]:.3f} ms, S8S8 {rows[-1][4]:.3f} ms "
                          f"({s8[0]:.2f}x), U8S8 {rows[-1][5]:.3f} ms ({u8[0]:.2f}x)", file=sys.stderr, flush=True)
    print(f"{datetime.date.today().isoformat()}; {cpu_description()}; onnxruntime {ort.__version__}, 1 thread; "
          f"median of {args.runs} interleaved runs; speed-up = fp32 / int8 [95% paired bootstrap]\n")
    print("| model | px | batch | fp32 ms | S8S8 ms | S8S8 speed-up | U8S8 ms | U8S8 speed-up |\n|---|---|---|---|---|---|---|---|")
    for name, res, batch, f, s, u, s8, u8 in rows:
        print(f"| {name} | {res} | {batch} | {f:.3f} | {s:.3f} | {s8[0]:.2f}x [{s8[1]:.2f}, {s8[2]:.2f}] | {u:.3f} | "
              f"{u8[0]:.2f}x [{u8[1]:.2f}, {u8[2]:.2f}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
