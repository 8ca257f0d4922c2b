"""Measure the ``archc calibrate --measure`` sample in K pinned single-thread shards, on a many-core machine.

    python benchmarks/calibrate_shards.py --shard I/K --cache DIR [--n 40 --resolutions 160,256,384 ...]

Draws exactly the sample ``archc calibrate --measure`` draws (same spaces, N, seed), keeps every K-th
architecture starting at I, and measures it with the same code into ``DIR/shard-I.jsonl``. Run K of these
at once, each pinned to its own core (``taskset -c I``), then fit from the joined caches without measuring
again:

    cat DIR/shard-*.jsonl > DIR/all.jsonl
    archc calibrate --measure --cache DIR/all.jsonl --device NAME ...   (same sample options)

Concurrent single-thread processes on separate cores still share caches and memory bandwidth, and that is
not a small effect: 15 shards on an idle 16-core Xeon measured 1.27x slower on median than one pinned process,
0.80x-2.03x point by point (docs/LATENCY_MODEL.md). Use ``--shard 0/1`` (one process) for ground truth, or
few shards far apart; say which was used with the figures.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import os
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard", required=True, help="I/K")
    ap.add_argument("--cache", required=True, help="folder for shard-I.jsonl")
    ap.add_argument("--space", action="append", default=[])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--resolutions", default="160,256,384")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="onnxruntime")
    ap.add_argument("--check-pair", default="specs/poolformer_s12.yaml,specs/poolformer_s12_repmixer.yaml")
    ap.add_argument("--check-resolutions", default="224,384,512,1024")
    args = ap.parse_args()
    os.chdir(ROOT)
    import warnings
    warnings.filterwarnings("ignore")
    from archc.latency.calibrate import Sampled, arch_hash, measure_all, sample_spaces
    from archc.spec import load_spec
    i, k = (int(t) for t in args.shard.split("/"))
    spaces = args.space or ["search/fastvit.yaml", "search/metaformer.yaml"]
    samples = sample_spaces(spaces, args.n, args.seed)[i::k]
    res = [int(r) for r in args.resolutions.split(",")]
    cache = Path(args.cache) / f"shard-{i}.jsonl"
    t0 = time.time()
    measure_all(samples, res, target=args.target, cache=cache, runs=args.runs, warmup=args.warmup,
                progress=lambda what, j, n: print(f"shard {i}: [{j}/{n}] {what} {time.time() - t0:.0f}s", flush=True))
    if i == k - 1 and args.check_pair:  # the last shard also measures the (unfitted) check pair
        a, b = (load_spec(p) for p in args.check_pair.split(","))
        measure_all([Sampled(a, "check", arch_hash(a)), Sampled(b, "check", arch_hash(b))],
                    [int(r) for r in args.check_resolutions.split(",")], target=args.target, cache=cache,
                    runs=args.runs, warmup=args.warmup)
    print(f"shard {i}: done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
