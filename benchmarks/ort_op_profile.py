"""Where ONNX Runtime's CPU time goes, op by op: the evidence behind the latency model's terms.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/ort_op_profile.py --n 24 --resolutions 160,256 \
        --space search/fastvit.yaml --space search/metaformer.yaml --space search/mobileone.yaml \
        --space search/mci.yaml [--seed 1] [--out runs/ort_ops.jsonl]

Samples architectures the way ``archc calibrate --measure`` does, exports each deploy graph, runs it on one
thread with ONNX Runtime's profiler on, and keeps every node's median kernel time with its input and output
shapes (``--out``, JSONL, one line per architecture x resolution). Then prints, per op class, the share of
all kernel time and the cost per output element (ns) or per MAC (GMAC/s), split by whether the op's channel
count is a multiple of 16 (the NCHWc block of ONNX Runtime's MLAS kernels on AVX-512; 8 on AVX2).

Run it alone on the machine: concurrent work inflates some points (docs/LATENCY_MODEL.md). Existing lines
in ``--out`` are summarised again without measuring (``--summarize-only``). ``--pair A.yaml,B.yaml`` instead
prints two specs' kernel time per op class side by side at each resolution.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, os.path.dirname(__file__))
from _common import describe_machine, machine, md_table  # noqa: E402


def profile_one(model, res: int, runs: int, warmup: int):
    """(median end-to-end ms, [node records]) of ``model`` at ``res`` on one ONNX Runtime thread."""
    import onnxruntime as ort
    import torch

    from archc.export.onnx_export import export_onnx
    x = torch.randn(1, 3, res, res)
    work = tempfile.mkdtemp(prefix="archc-ortprof-")
    try:
        path = export_onnx(model, x, os.path.join(work, "m.onnx"), dynamic_batch=False)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        feed = {"image": x.numpy()}
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(warmup):
            sess.run(None, feed)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append((time.perf_counter() - t0) * 1e3)
        opts.enable_profiling, opts.profile_file_prefix = True, os.path.join(work, "prof")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    durs, info = collections.defaultdict(list), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            durs[e["name"]].append(e["dur"])
            a = e["args"]
            info[e["name"]] = {"op": a["op_name"], "ins": a["input_type_shape"], "outs": a["output_type_shape"]}
    nodes = [dict(name=k, us=statistics.median(v[warmup:] or v), **info[k]) for k, v in durs.items()]
    return statistics.median(times), nodes


def _shape(entry):
    return list(entry.values())[0]


def op_class(node):
    """(class, channels, MACs or None, output elements) of one profiled node."""
    ins = [_shape(i) for i in node["ins"]]
    out = _shape(node["outs"][0]) if node["outs"] else []
    elems = math.prod(out) if out else 0
    if node["op"] in ("Conv", "FusedConv") and len(ins) >= 2 and len(ins[1]) == 4:
        x, w = ins[0], ins[1]
        groups = max(1, x[1] // max(1, w[1]))
        macs = elems * w[1] * w[2] * w[3]
        if groups > 1:
            return f"depthwise {w[2]}x{w[3]}", x[1], macs, elems
        if x[1] <= 4:
            return "conv from the image (stem)", x[1], macs, elems
        return ("pointwise conv" if w[2] == 1 else f"dense conv {w[2]}x{w[3]}"), x[1], macs, elems
    channels = ins[0][1] if ins and len(ins[0]) == 4 else 0
    return node["op"], channels, None, elems


def summarize(records, block: int = 16):
    per = collections.defaultdict(lambda: {"us": 0.0, "n": 0, "rates": []})
    total = 0.0
    for r in records:
        for n in r["nodes"]:
            cls, ch, macs, elems = op_class(n)
            aligned = "-" if not ch else ("yes" if ch % block == 0 else "no")
            d = per[(cls, aligned)]
            d["us"] += n["us"]
            d["n"] += 1
            total += n["us"]
            if n["us"] > 0 and elems:
                d["rates"].append(macs / n["us"] / 1e3 if macs else n["us"] * 1e3 / elems)
            d["macs"] = macs is not None
    rows = []
    for (cls, aligned), d in sorted(per.items(), key=lambda kv: -kv[1]["us"]):
        if not d["rates"]:
            continue
        med = statistics.median(d["rates"])
        unit = "GMAC/s" if d["macs"] else "ns/output element"
        rows.append([cls, aligned, d["n"], f"{100 * d['us'] / total:.1f}%", f"{med:.3g} {unit}"])
    return rows


def compare_pair(paths, resolutions, runs: int, warmup: int) -> int:
    """Per op class, the kernel milliseconds of two specs' deploy graphs at each resolution (e.g. where the
    PoolFormer-S12 pair's RepMixer-vs-pool gap comes from in ONNX Runtime)."""
    from archc import load_spec
    from archc.runtime import inference_model
    print(describe_machine(machine()))
    for res in resolutions:
        per, e2e = [], []
        for path in paths:
            ms, nodes = profile_one(inference_model(load_spec(path, {"input_size": res}), None, deploy=True), res,
                                    runs, warmup)
            classes = collections.Counter()
            for n in nodes:
                classes[op_class(n)[0]] += n["us"] / 1e3
            per.append(classes)
            e2e.append(ms)
        a, b = per
        print(f"\n{res} px: end to end {e2e[0]:.1f} vs {e2e[1]:.1f} ms ({100 * (1 - e2e[1] / e2e[0]):.1f}% less), "
              f"kernels {sum(a.values()):.1f} vs {sum(b.values()):.1f} ms")
        keys = sorted(set(a) | set(b), key=lambda k: -max(a[k], b[k]))[:10]
        print(md_table(["op class", f"{Path(paths[0]).stem} ms", f"{Path(paths[1]).stem} ms"],
                       [[k, f"{a[k]:.2f}", f"{b[k]:.2f}"] for k in keys]))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", action="append", default=None)
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--resolutions", default="160,256")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--block", type=int, default=16, help="channel block the alignment column is judged against")
    p.add_argument("--out", default="runs/ort_ops.jsonl")
    p.add_argument("--summarize-only", action="store_true")
    p.add_argument("--pair", metavar="A.yaml,B.yaml", help="instead: kernel time per op class of two specs, side by side")
    a = p.parse_args()
    if a.pair:
        return compare_pair(a.pair.split(","), [int(r) for r in a.resolutions.split(",")], a.runs, a.warmup)
    out = Path(a.out)
    if not a.summarize_only:
        from archc.deploy import deploy_model
        from archc.latency.calibrate import sample_spaces
        spaces = a.space or ["search/fastvit.yaml", "search/metaformer.yaml", "search/mobileone.yaml", "search/mci.yaml"]
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as f:
            for s in sample_spaces(spaces, a.n, seed=a.seed):
                model = deploy_model(s.spec, verify=False).eval()
                for res in (int(r) for r in a.resolutions.split(",")):
                    ms, nodes = profile_one(model, res, a.runs, a.warmup)
                    f.write(json.dumps({"arch": s.arch, "family": s.family, "res": res, "median_ms": ms,
                                        "machine": machine(), "nodes": nodes}) + "\n")
                    f.flush()
                    print(f"{s.spec.name} @ {res}: {ms:.2f} ms, kernels {sum(n['us'] for n in nodes) / 1e3:.2f} ms",
                          flush=True)
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    print(describe_machine(records[-1].get("machine") or machine()) if records else "")
    print(f"{len(records)} graphs from {out}; channel block {a.block}\n")
    print(md_table(["op class", f"channels % {a.block} == 0", "nodes", "share of kernel time", "median cost"],
                   summarize(records, a.block)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
