#!/usr/bin/env bash
# Full CPU calibration sample on a quiet many-core machine: K pinned single-thread shards (see
# benchmarks/calibrate_shards.py). Usage: OUT=dir K=12 LIMIT=400 bash benchmarks/device_calibrate.sh
set -u
K=${K:-12}; LIMIT=${LIMIT:-400}; OUT=${OUT:-runs/calibrate/shards}
mkdir -p "$OUT"
python3 -c "import torch, onnxruntime, scipy, optuna, onnx; print('torch', torch.__version__, 'ort', onnxruntime.__version__)" || exit 3
lscpu | grep -E "Model name|^CPU\(s\)" ; uptime
export OMP_NUM_THREADS=1
for i in $(seq 0 $((K-1))); do
  PYTHONPATH=$PWD timeout "$LIMIT" taskset -c "$i" python3 benchmarks/calibrate_shards.py --shard "$i/$K" --cache "$OUT" > "$OUT/log-$i.txt" 2>&1 &
done
wait
tail -n 2 "$OUT"/log-*.txt | grep -v "^$" | tail -n 30
wc -l "$OUT"/shard-*.jsonl | tail -1
