"""The floor under SA12's CPU latency: how fast the kernels that dominate it can run here.

Two questions behind issue 3's "best runtime <= 0.55x timm" target (docs/BENCHMARKS.md):

1. 1x1 convolutions (the ConvFFN's fc1/fc2: 8 C^2 HW per block, 1.61 G of SA12's 1.94 G MACs): GMAC/s on SA12's shapes for torch
   NCHW (THNN + MKL), torch channels_last (oneDNN), torch ``addmm`` on the flattened input, and ONNX
   Runtime's Conv (MLAS), each alone.
2. Exact GELU: ns per element for torch's ``F.gelu`` and ONNX Runtime's forms (opset-20 Gelu, the
   com.microsoft Gelu its fusion produces, the Erf subgraph), against Erf alone and Relu.

    python benchmarks/kernel_floor.py --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import finish, md_table, start  # noqa: E402

#: SA12's ConvFFN 1x1 conv shapes at 256x256 (in, out, spatial side), mlp_ratio 4: fc1/fc2 of each stage
SA12_1X1 = [(64, 256, 64), (256, 64, 64), (128, 512, 32), (512, 128, 32), (256, 1024, 16), (1024, 256, 16),
            (512, 2048, 8), (2048, 512, 8)]


def median_ms(fn, runs: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def ort_session(nodes, inputs, outputs, initializers=(), opset=17, domains=(), threads=1):
    import onnx
    import onnxruntime as ort
    from onnx import helper
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]
                              + [helper.make_opsetid(d, 1) for d in domains])
    model.ir_version = min(model.ir_version, 9)  # what this onnxruntime reads
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def gemm_rows(runs: int, threads: int):
    from onnx import TensorProto, helper, numpy_helper
    rows = []
    with torch.inference_mode():
        for cin, cout, side in SA12_1X1:
            x = torch.randn(1, cin, side, side)
            w = torch.randn(cout, cin, 1, 1) / cin ** 0.5
            b = torch.randn(cout)
            x_cl, w_cl = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
            w2, x2 = w.view(cout, cin), x.view(cin, side * side)
            sess = ort_session([helper.make_node("Conv", ["x", "w", "b"], ["y"])],
                               [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, side, side])],
                               [numpy_helper.from_array(w.numpy(), "w"), numpy_helper.from_array(b.numpy(), "b")],
                               threads=threads)
            xn = x.numpy()
            ref = F.conv2d(x, w, b).numpy()
            assert np.allclose(sess.run(None, {"x": xn})[0], ref, rtol=1e-4, atol=1e-4)
            macs = cin * cout * side * side
            ms = {"torch NCHW": median_ms(lambda: F.conv2d(x, w, b), runs),
                  "torch channels_last": median_ms(lambda: F.conv2d(x_cl, w_cl, b), runs),
                  "torch addmm": median_ms(lambda: torch.addmm(b[:, None], w2, x2), runs),
                  "ONNX Runtime Conv": median_ms(lambda: sess.run(None, {"x": xn}), runs)}
            rows.append([f"{cin}->{cout} @ {side}x{side}", f"{macs / 1e6:.1f}"]
                        + [f"{ms[k]:.3f} ms = {macs / ms[k] / 1e6:.0f}" for k in ms])
    return ["1x1 conv", "M MACs"] + [f"{k} (GMAC/s)" for k in ms], rows


def gelu_rows(runs: int, threads: int, shape=(1, 256, 64, 64)):
    from onnx import TensorProto, helper
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)) for n in ("x", "y")]
    consts = [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
              helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
              helper.make_tensor("r2", TensorProto.FLOAT, [], [2 ** -0.5])]
    node = helper.make_node
    forms = {
        "Relu (memory-bound reference)": ([node("Relu", ["x"], ["y"])], [], 17, ()),
        "Erf alone": ([node("Erf", ["x"], ["y"])], [], 17, ()),
        "Gelu, opset 20": ([node("Gelu", ["x"], ["y"])], [], 20, ()),
        "com.microsoft Gelu": ([node("Gelu", ["x"], ["y"], domain="com.microsoft")], [], 17, ("com.microsoft",)),
        "Erf subgraph (torch.onnx's export)": ([node("Mul", ["x", "r2"], ["a"]), node("Erf", ["a"], ["e"]),
                                                node("Add", ["e", "one"], ["c"]), node("Mul", ["x", "c"], ["d"]),
                                                node("Mul", ["d", "half"], ["y"])], consts, 17, ()),
    }
    x = torch.randn(shape)
    xn = x.numpy()
    n = x.numel()
    rows = []
    with torch.inference_mode():
        ms = median_ms(lambda: F.gelu(x), runs)
        rows.append(["torch F.gelu", f"{ms:.3f}", f"{ms * 1e6 / n:.2f}"])
    for name, (nodes, inits, opset, domains) in forms.items():
        sess = ort_session(nodes, [vi[0]], [vi[1]], inits, opset, domains, threads)
        ms = median_ms(lambda: sess.run(None, {"x": xn}), runs)
        rows.append([f"ONNX Runtime: {name}", f"{ms:.3f}", f"{ms * 1e6 / n:.2f}"])
    return ["op on 1x256x64x64", "median ms", "ns per element"], rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--json")
    args = p.parse_args()
    m = start(args.threads)
    print()
    header, rows = gemm_rows(args.runs, args.threads)
    print(md_table(header, rows) + "\n")
    header2, rows2 = gelu_rows(args.runs, args.threads)
    print(md_table(header2, rows2))
    return finish({"machine": m, "gemm": rows, "gelu": rows2}, args.json)


if __name__ == "__main__":
    sys.exit(main())
