"""int8 and fp16 fidelity of a trained archc model, and int8 vs fp32 speed in ONNX Runtime, side by side.

    python3 benchmarks/quant_fidelity.py --run runs/sanity-fv083 [--eval-images 10000] [--out runs/quant]

``--run`` is an ``archc train --out`` folder (spec.yaml, best.pt). Calibration: 256 class-balanced images of
Fashion-MNIST's training split; fidelity on the official test split. Each int8 configuration is quantized from
the same fp32 ONNX file; "naive" is per-tensor MinMax with no remedies; the last row is archc's default recipe
(percentile, per-channel, the most sensitive layer kept in float). Speed: one thread, at each batch of
``--batches`` (default 1 and 32: batch 1 is latency, where the quantize/dequantize steps around small ops weigh
most; a batch gives int8 GEMMs enough work for VNNI/AMX), fp32 and int8 sessions timed interleaved in one
process; the ratio's 95% interval is a paired bootstrap (scipy). The CPU's flags are recorded: int8 speed
depends on AVX-512 VNNI / AVX-VNNI / AMX.
Prints a markdown table (for docs/QUANTIZATION.md) and writes ``OUT/quant_fidelity.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archc.export.onnx_export import export_onnx  # noqa: E402
from archc.latency.measure import time_interleaved  # noqa: E402
from archc.machine import cpu_description  # noqa: E402
from archc.quant import fidelity, quantize_onnx_int8  # noqa: E402
from archc.quant.evaluate import quant_images, torch_logits  # noqa: E402
from archc.quant.onnx_int8 import run_onnx  # noqa: E402
from archc.runtime import inference_model  # noqa: E402
from archc.spec import load_spec  # noqa: E402

CONFIGS = [("naive: MinMax, per-tensor", "minmax", False), ("MinMax, per-channel", "minmax", True),
           ("percentile 99.999, per-tensor", "percentile", False),
           ("percentile 99.999, per-channel", "percentile", True), ("entropy, per-tensor", "entropy", False),
           ("entropy, per-channel", "entropy", True)]


def speed(fp32: Path, int8: Path, x: np.ndarray, runs: int) -> dict:
    """fp32 vs int8 ONNX Runtime sessions on input ``x`` (its batch), one thread, interleaved."""
    import onnxruntime as ort
    from scipy.stats import bootstrap

    def session(path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return lambda: s.run(None, {name: x})

    t = time_interleaved({"fp32": session(fp32), "int8": session(int8)}, runs=runs, warmup=20)
    a, b = np.array(t["fp32"]), np.array(t["int8"])
    ci = bootstrap((a, b), lambda p, q: np.median(p) / np.median(q), paired=True, vectorized=False,
                   n_resamples=2000, random_state=0).confidence_interval
    return {"batch": int(x.shape[0]), "fp32_ms": float(np.median(a)), "int8_ms": float(np.median(b)),
            "speedup": float(np.median(a) / np.median(b)), "speedup_ci95": [float(ci.low), float(ci.high)], "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="an archc train --out folder (spec.yaml, best.pt)")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--eval-images", type=int, default=10000)
    ap.add_argument("--calibration-images", type=int, default=256)
    ap.add_argument("--runs", type=int, default=300, help="timed runs per precision")
    ap.add_argument("--batches", default="1,32", help="batch sizes to time fp32 vs int8 at (default: %(default)s)")
    ap.add_argument("--out", default="runs/quant")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = load_spec(run / "spec.yaml")
    model = inference_model(spec, run / "best.pt")
    images = quant_images(args.data, spec.input_size[0], spec.in_chans, args.calibration_images, args.eval_images)
    fp32 = export_onnx(model, torch.from_numpy(images.images[:1]), out / f"{spec.name}.onnx")  # dynamic batch
    ref = torch_logits(model, images.images)
    rows = [{"config": "fp32 ONNX Runtime", **fidelity(ref, run_onnx(fp32, images.images), images.labels).to_dict()},
            {"config": "fp16 torch (simulated)",
             **fidelity(ref, torch_logits(model, images.images, torch.float16), images.labels).to_dict()}]
    paths = {}
    for label, calibration, per_channel in CONFIGS:
        t0 = time.time()
        path = out / f"{spec.name}.int8.{calibration}.{'pc' if per_channel else 'pt'}.onnx"
        q = quantize_onnx_int8(fp32, path, images.calibration, calibration=calibration, per_channel=per_channel)
        f = fidelity(ref, run_onnx(path, images.images), images.labels)
        rows.append({"config": f"int8 {label}", **f.to_dict(), "quantize_nodes": q.quantize_nodes,
                     "seconds": round(time.time() - t0, 1)})
        paths[(calibration, per_channel)] = path
        print(f"{rows[-1]['config']}: top-1 {f.top1:.2f}% (fp32 {f.top1_fp32:.2f}%), agreement {f.agreement:.2f}%, "
              f"SQNR {f.sqnr_db:.1f} dB", flush=True)
    # archc's default recipe (archc export --precision int8): percentile, per-channel, the most sensitive layer in float
    from archc.quant.sensitivity import layer_sensitivity
    t0 = time.time()
    ranked = layer_sensitivity(fp32, images.calibration, images.calibration, torch_logits(model, images.calibration),
                               calibration="percentile", per_channel=True)
    path = out / f"{spec.name}.int8.default.onnx"
    q = quantize_onnx_int8(fp32, path, images.calibration, calibration="percentile", per_channel=True,
                           exclude=[ranked[0].node])
    f = fidelity(ref, run_onnx(path, images.images), images.labels)
    rows.append({"config": f"int8 archc default: percentile, per-channel, `{ranked[0].module}` in float",
                 **f.to_dict(), "quantize_nodes": q.quantize_nodes, "seconds": round(time.time() - t0, 1)})
    print(f"{rows[-1]['config']}: top-1 {f.top1:.2f}%, agreement {f.agreement:.2f}%, SQNR {f.sqnr_db:.1f} dB", flush=True)
    timing = [speed(fp32, paths[("percentile", False)], images.images[:int(b)], args.runs)
              for b in args.batches.split(",")]
    doc = {"machine": cpu_description(), "date": datetime.date.today().isoformat(), "spec": spec.name,
           "weights": str(run / "best.pt"), "data": images.description, "rows": rows, "speed_1thread": timing,
           "command": "python3 " + " ".join(sys.argv)}
    (out / "quant_fidelity.json").write_text(json.dumps(doc, indent=1))
    print(f"\n{doc['machine']}, {doc['date']}; {images.description}\n")
    print("| configuration | top-1 | drop (points) | agreement | SQNR dB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['top1']:.2f}% | {r['drop']:+.2f} | {r['agreement']:.2f}% | {r['sqnr_db']:.1f} |")
    for t in timing:
        print(f"\nONNX Runtime batch {t['batch']}, 1 thread: fp32 {t['fp32_ms']:.3f} ms, int8 {t['int8_ms']:.3f} ms, "
              f"int8 speed-up {t['speedup']:.2f}x [{t['speedup_ci95'][0]:.2f}, {t['speedup_ci95'][1]:.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
