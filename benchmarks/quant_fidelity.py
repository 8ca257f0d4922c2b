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

Remedies (``archc.quant.remedies``, skipped with ``--no-remedies``): cross-layer equalization (CLE) and empirical
bias correction (BC) rewrite the fp32 deploy graph, which is then exported and quantized like the rows above
(MinMax and percentile, per-tensor and per-channel; BC matched to the row's weight mode, on the same calibration
images), and archc's default recipe is rerun on the remedied graph (the kept-in-float layer ranked on it, and left
uncorrected by BC). Every row is measured against the logits of the *unremedied* fp32 deploy graph; a "CLE fp32"
row checks that equalization left the function unchanged. Each BC row also reads back the int8 weights ONNX
Runtime wrote and counts those whose codes and scales equal BC's model of its quantizer.
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
from archc.quant.evaluate import torch_logits  # noqa: E402
from archc.train.calibration import quant_images  # noqa: E402
from archc.quant.onnx_int8 import run_onnx  # noqa: E402
from archc.runtime import inference_model  # noqa: E402
from archc.spec import load_spec  # noqa: E402

#: (label, calibration, per-channel weights, CLE, bias correction): the remedies' rows
REMEDY_CONFIGS = [(f"{label}, {mode} + {what}", calibration, per_channel, cle, bc)
                  for label, calibration in (("MinMax", "minmax"), ("percentile 99.999", "percentile"))
                  for mode, per_channel in (("per-tensor", False), ("per-channel", True))
                  for what, cle, bc in (("CLE", True, False), ("bias correction", False, True),
                                        ("CLE + bias correction", True, True))]

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


@torch.no_grad()
def activation_spread(graph, modules, images: np.ndarray) -> dict:
    """For each module: the largest over the smallest nonzero per-channel max |output| on ``images`` (what one
    per-tensor activation scale has to cover); CLE rescales exactly these outputs (each pair's conv1)."""
    peaks, hooks = {}, []
    for name in modules:
        def hook(m, args, out, name=name):
            r = out.detach().abs().amax(dim=(0, 2, 3))
            peaks[name] = torch.maximum(peaks[name], r) if name in peaks else r
        hooks.append(graph.get_submodule(name).register_forward_hook(hook))
    try:
        x = torch.from_numpy(images)
        for i in range(0, len(x), 64):
            graph(x[i:i + 64])
    finally:
        for h in hooks:
            h.remove()
    return {k: float(v.max() / v[v > 0].min()) if (v > 0).any() else 1.0 for k, v in peaks.items()}


def remedy_rows(model, fp32: Path, images, ref: np.ndarray, out: Path, name: str) -> tuple:
    """The remedies' rows (``REMEDY_CONFIGS`` and archc's default recipe on remedied graphs), and what each remedy
    did (its report), all measured against ``ref``, the unremedied fp32 deploy graph's logits."""
    import onnx

    from archc.quant.remedies import correct_bias, equalize, ort_weight_check
    from archc.quant.sensitivity import layer_sensitivity
    example = torch.from_numpy(images.images[:1])
    t0 = time.time()
    cle = equalize(model)
    reports = {"cle": {**cle.to_dict(), "seconds": round(time.time() - t0, 1)}}
    conv1s = [p.conv1 for p in cle.pairs]
    act_before = activation_spread(model, conv1s, images.calibration)
    act_after = activation_spread(cle.graph, conv1s, images.calibration)
    spread = {"weights": {k: list(v) for k, v in cle.spread.items()},
              "activations": {k: [act_before[k], act_after[k]] for k in act_before}}
    reports["cle"]["range_spread_before_after"] = spread
    graphs, onnx_files = {}, {}

    def graph(use_cle: bool, bc: bool, per_channel: bool, skip=()):
        key = (use_cle, bc, per_channel if bc else None, tuple(skip))
        if key not in graphs:
            base = cle.graph if use_cle else model
            if bc:
                t = time.time()
                r = correct_bias(base, images.calibration, per_channel=per_channel, skip=skip)
                reports[f"bc{'+cle' if use_cle else ''}.{'pc' if per_channel else 'pt'}{'.skip' if skip else ''}"] = {
                    **r.to_dict(), "seconds": round(time.time() - t, 1)}
                base = r.graph
            graphs[key] = base
            tag = f"{'cle' if use_cle else ''}{'bc' + ('pc' if per_channel else 'pt') if bc else ''}{len(onnx_files)}"
            onnx_files[key] = export_onnx(base, example, out / f"{name}.{tag}.fp32.onnx")
        return graphs[key], onnx_files[key]

    rows = []
    g, path = graph(True, False, False)
    rows.append({"config": "fp32 ONNX Runtime, after CLE (must equal fp32)",
                 **fidelity(ref, run_onnx(path, images.images), images.labels).to_dict()})
    print(f"CLE: {cle.changed} of {len(cle.pairs)} pairs rescaled, {cle.iterations} sweeps (converged: "
          f"{cle.converged}); fp32 after CLE: SQNR {rows[-1]['sqnr_db']:.1f} dB, "
          f"agreement {rows[-1]['agreement']:.2f}%", flush=True)
    if cle.pairs:
        worst_w = max(spread["weights"].items(), key=lambda kv: kv[1][0])
        worst_a = max(spread["activations"].items(), key=lambda kv: kv[1][1])
        print(f"CLE range spread (max/min per-channel range): weights, widest before: {worst_w[0]} "
              f"{worst_w[1][0]:.1f} -> {worst_w[1][1]:.1f}; conv1 outputs on the calibration images, widest after: "
              f"{worst_a[0]} {worst_a[1][0]:.1f} -> {worst_a[1][1]:.1f}", flush=True)
    for label, calibration, per_channel, use_cle, bc in REMEDY_CONFIGS:
        t0 = time.time()
        g, src = graph(use_cle, bc, per_channel)
        dst = src.with_name(src.name.replace(".fp32.", f".int8.{calibration}.{'pc' if per_channel else 'pt'}."))
        q = quantize_onnx_int8(src, dst, images.calibration, calibration=calibration, per_channel=per_channel)
        f = fidelity(ref, run_onnx(dst, images.images), images.labels)
        check = ort_weight_check(g, dst, per_channel) if bc else None
        rows.append({"config": f"int8 {label}", **f.to_dict(), "quantize_nodes": q.quantize_nodes,
                     "seconds": round(time.time() - t0, 1),
                     **({"bc_weights_match_ort": check} if check else {})})
        print(f"{rows[-1]['config']}: top-1 {f.top1:.2f}%, agreement {f.agreement:.2f}%, SQNR {f.sqnr_db:.1f} dB"
              + (f" (BC's int8 weights = ORT's: {check['exact']}/{check['compared']})" if check else ""), flush=True)
    # archc's default recipe (percentile, per-channel, the most sensitive layer in float) on the remedied graph: the
    # layer is ranked on that graph against the unremedied logits; with BC, that layer is left uncorrected (it is
    # not rounded) and the graph re-exported
    cal_ref = torch_logits(model, images.calibration)
    for what, use_cle, bc in (("CLE", True, False), ("bias correction", False, True),
                              ("CLE + bias correction", True, True)):
        t0 = time.time()
        g, src = graph(use_cle, bc, True)
        ranked = layer_sensitivity(src, images.calibration, images.calibration, cal_ref, calibration="percentile",
                                   per_channel=True)
        kept, node = ranked[0], ranked[0].node
        if bc:
            g, src = graph(use_cle, bc, True, skip=(kept.module,))
            node = next((n.name for n in onnx.load(str(src)).graph.node if f"{kept.module}.weight" in n.input), node)
        dst = src.with_name(src.name.replace(".fp32.", ".int8.default."))
        q = quantize_onnx_int8(src, dst, images.calibration, calibration="percentile", per_channel=True, exclude=[node])
        f = fidelity(ref, run_onnx(dst, images.images), images.labels)
        check = ort_weight_check(g, dst, True) if bc else None
        rows.append({"config": f"int8 archc default + {what}: `{kept.module}` in float", **f.to_dict(),
                     "quantize_nodes": q.quantize_nodes, "seconds": round(time.time() - t0, 1),
                     **({"bc_weights_match_ort": check} if check else {})})
        print(f"{rows[-1]['config']}: top-1 {f.top1:.2f}%, agreement {f.agreement:.2f}%, SQNR {f.sqnr_db:.1f} dB",
              flush=True)
    return rows, reports


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="an archc train --out folder (spec.yaml, best.pt)")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--eval-images", type=int, default=10000)
    ap.add_argument("--calibration-images", type=int, default=256)
    ap.add_argument("--runs", type=int, default=300, help="timed runs per precision")
    ap.add_argument("--batches", default="1,32", help="batch sizes to time fp32 vs int8 at (default: %(default)s)")
    ap.add_argument("--out", default="runs/quant")
    ap.add_argument("--no-remedies", action="store_true", help="skip the CLE / bias-correction rows")
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
    remedies = {}
    if not args.no_remedies:
        extra, remedies = remedy_rows(model, fp32, images, ref, out, spec.name)
        rows += extra
    timing = [speed(fp32, paths[("percentile", False)], images.images[:int(b)], args.runs)
              for b in args.batches.split(",")]
    doc = {"machine": cpu_description(), "date": datetime.date.today().isoformat(), "spec": spec.name,
           "weights": str(run / "best.pt"), "data": images.description, "rows": rows, "remedies": remedies,
           "speed_1thread": timing,
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
