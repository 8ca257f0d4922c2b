"""archc's deploy graphs on a CUDA GPU against timm's reparameterized models (the paper's GPU protocol
shape: batch 8, median of 100 runs; fp32). Needs a CUDA build of torch and an NVIDIA GPU.

For each spec: the train model with archc's randomised BN statistics and layer scales, its deploy graph
(``archc.runtime.inference_model``), and, where timm imports and has the model, timm's model with the very
same state dict after ``reparameterize_model``. First a numerical check on the GPU with TF32 off (deploy vs
train, archc vs timm), then timing with CUDA events (``archc.latency.measure.time_runs_cuda``, the code
``archc bench --target cuda`` uses) for each runtime option, timm eager beside them in the same process::

    PYTHONPATH=. python3 benchmarks/cuda_bench.py --specs t8 sa12 --runtimes eager channels_last compile

Prints a Markdown table and writes JSON with ``--json-out``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from typing import Dict, List

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import finish, md_table, randomized, start, stats  # noqa: E402


def _timm_model(name: str, state: Dict[str, torch.Tensor]):
    try:
        import timm
        from timm.utils.model import reparameterize_model
    except Exception as e:  # timm is an anchor, not a dependency
        return None, f"timm not importable: {type(e).__name__}"
    for cand in (name, f"fastvit_{name}"):
        if cand in timm.list_models():
            m = timm.create_model(cand, pretrained=False).eval()
            try:
                m.load_state_dict(state, strict=True)
            except RuntimeError as e:
                return None, f"timm {cand}: state dict does not load ({str(e)[:80]})"
            return reparameterize_model(m).eval(), cand
    return None, f"timm has no model {name}"


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--specs", nargs="+", default=["t8", "sa12"], help="names under specs/ (without .yaml)")
    ap.add_argument("--runtimes", nargs="+", default=["eager", "channels_last", "compile"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--json-out")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"cuda_bench needs a CUDA build of torch and an NVIDIA GPU (torch {torch.__version__})")
        return 2
    from archc.latency.measure import time_runs_cuda
    from archc.runtime import make_runner

    m = start(None)
    m["gpu"] = torch.cuda.get_device_name(0)
    print(f"GPU: {m['gpu']}; batch {args.batch}, {args.runs} runs after {args.warmup} warm-up, fp32, "
          f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} for timing")
    rows, report = [], {"machine": m, "results": []}
    for name in args.specs:
        spec, train, deploy = randomized(name)
        res = spec.input_size
        x = torch.randn(args.batch, 3, *res, generator=torch.Generator().manual_seed(0)).cuda()
        timm_deploy, timm_name = _timm_model(name, train.state_dict())
        # numerics on the GPU, TF32 off so the comparison is of fp32 arithmetic
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad():
            t_out = copy.deepcopy(train).cuda()(x)
            d_out = copy.deepcopy(deploy).cuda()(x)
            scale = t_out.abs().max().item()
            check = {"deploy_vs_train_rel": (d_out - t_out).abs().max().item() / scale}
            if timm_deploy is not None:
                timm_deploy = timm_deploy.cuda()
                check["archc_vs_timm_rel"] = (d_out - timm_deploy(x)).abs().max().item() / scale
        torch.backends.cudnn.allow_tf32 = tf32
        entry = {"spec": name, "resolution": list(res), "timm": timm_name, "check": check, "timings": {}}
        contenders = {}
        if timm_deploy is not None:
            contenders["timm eager"] = (lambda mdl: (lambda: mdl(x)))(timm_deploy)
        for rt in args.runtimes:
            try:
                t0 = time.perf_counter()
                runner = make_runner(deploy, x.cpu(), rt, device="cuda")
                xin = runner.prepare(x)
                contenders[f"archc {rt}"] = (lambda r, xi: (lambda: r(xi)))(runner, xin)
                entry.setdefault("setup_s", {})[rt] = round(time.perf_counter() - t0, 1)
            except Exception as e:
                entry["timings"][f"archc {rt}"] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
        with torch.inference_mode():
            for label, fn in contenders.items():
                entry["timings"][label] = stats(time_runs_cuda(fn, args.runs, args.warmup))
        base = entry["timings"].get("timm eager", {}).get("median_ms")
        for label, st in entry["timings"].items():
            if "error" in st:
                rows.append([name, label, st["error"], "", "", ""])
                continue
            ratio = f"{st['median_ms'] / base:.3f}" if base else ""
            rows.append([name, label, f"{st['median_ms']:.3f}", f"{st['iqr_ms']:.3f}",
                         f"{args.batch * 1000 / st['median_ms']:.0f}", ratio])
        print(f"{name}: {check}")
        report["results"].append(entry)
    print(md_table(["spec", "contender", "median ms (batch)", "IQR ms", "images/s", "vs timm eager"], rows))
    return finish(report, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
