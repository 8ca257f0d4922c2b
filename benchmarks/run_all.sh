#!/usr/bin/env bash
# Every CPU figure in docs/BENCHMARKS.md (export/latency sections), in one go; logs and JSON to $OUT.
# Needs the anchor venv for the timm comparisons (tools/anchor-venv.sh in ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/archc-bench}
THREADS=${THREADS:-1}
ANCHOR=${ANCHOR:-/tmp/archc-anchor-venv/bin/python}
mkdir -p "$OUT"
export PYTHONPATH=.
$ANCHOR benchmarks/bench_vs_timm.py --threads "$THREADS" --runs 300 --warmup 20 \
    --runtimes channels_last,compile,onnxruntime --timm-onnx --json "$OUT/vs_timm.json" | tee "$OUT/vs_timm.txt"
$ANCHOR benchmarks/profile_ops.py --variant t8 --threads "$THREADS" | tee "$OUT/ops_t8.txt"
$ANCHOR benchmarks/profile_ops.py --variant sa12 --threads "$THREADS" | tee "$OUT/ops_sa12.txt"
python benchmarks/kernel_floor.py --threads "$THREADS" --json "$OUT/kernel_floor.json" | tee "$OUT/kernel_floor.txt"
python benchmarks/runtime_options.py --specs t8,sa12 --threads "$THREADS" --runs 200 --json "$OUT/runtime_options.json" \
    | tee "$OUT/runtime_options.txt"
python benchmarks/train_vs_deploy.py --threads "$THREADS" --runs 40 --warmup 3 --json "$OUT/train_vs_deploy.json" \
    | tee "$OUT/train_vs_deploy.txt"
python benchmarks/resolution_sweep.py --threads "$THREADS" --runs 20 --warmup 2 \
    --plot docs/img/resolution_sweep_cpu.png --json "$OUT/sweep.json" | tee "$OUT/sweep.txt"
python -m archc bench specs/t8.yaml specs/sa12.yaml --target cpu | tee "$OUT/cli_bench.txt"
