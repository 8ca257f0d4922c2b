"""ONNX opset 17 (GELU as an Erf subgraph, fused by ONNX Runtime into com.microsoft Gelu) vs opset 20
(the Gelu op): whole deploy graphs in ONNX Runtime on CPU, interleaved rounds so load drifts hit both.

    PYTHONPATH=$PWD python3 benchmarks/onnx_opset_gelu.py --threads 1 --rounds 7 --specs fastvit_t8,fastvit_sa12
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import finish, md_table, ratio_ci, start, stats  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", default="fastvit_t8,fastvit_sa12")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (each: runs per opset)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    m = start(args.threads)
    import onnx
    import onnxruntime as ort
    import archc
    from archc.export.onnx_export import export_onnx
    from archc.testing import randomize_
    report = {"machine": m, "results": []}
    rows = []
    for name in args.specs.split(","):
        spec = archc.load_spec(name)
        deploy = archc.reparameterize(randomize_(archc.build(spec), seed=0).eval())
        x = torch.randn(1, spec.in_chans, *spec.input_size)
        sessions, ops = {}, {}
        for opset in (17, 20):
            path = os.path.join(tempfile.mkdtemp(), f"{name}_{opset}.onnx")
            export_onnx(deploy, x, path, opset=opset)
            ops[opset] = Counter(n.op_type for n in onnx.load(path).graph.node)
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
            sessions[opset] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        xi = x.numpy()
        outs = {o: s.run(None, {"image": xi})[0] for o, s in sessions.items()}
        diff = float(np.abs(outs[17] - outs[20]).max())
        samples = {17: [], 20: []}
        for _ in range(args.rounds):
            for opset, s in sessions.items():
                for _ in range(3):
                    s.run(None, {"image": xi})
                for _ in range(args.runs):
                    t = time.perf_counter()
                    s.run(None, {"image": xi})
                    samples[opset].append((time.perf_counter() - t) * 1e3)
        s17, s20 = stats(samples[17]), stats(samples[20])
        ci = ratio_ci(samples[20], samples[17])
        report["results"].append({"spec": name, "opset17": s17, "opset20": s20, "ratio_20_over_17_ci95": ci,
                                  "max_abs_diff": diff, "gelu_nodes_20": ops[20].get("Gelu", 0),
                                  "nodes_17": sum(ops[17].values()), "nodes_20": sum(ops[20].values())})
        rows.append((name, f"{sum(ops[17].values())} / {sum(ops[20].values())}", f"{s17['median_ms']:.2f} ({100 * s17['cv']:.1f}%)",
                     f"{s20['median_ms']:.2f} ({100 * s20['cv']:.1f}%)",
                     f"{s20['median_ms'] / s17['median_ms']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]", f"{diff:.1e}"))
    print(md_table(["spec (256x256)", "ONNX nodes 17 / 20", "opset 17 median ms (CV)", "opset 20 median ms (CV)",
                    "20 / 17 [95% CI]", "max |diff|"], rows))
    return finish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
