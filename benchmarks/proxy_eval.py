"""Rank every zero-cost proxy against the published FastViT top-1 over several seeds.

    python benchmarks/proxy_eval.py [--seeds 0,1,2] [--proxies all] [--json OUT.json]

``archc proxies --eval`` reports one seed; a proxy computed on random weights and random inputs is a
random variable, so this script repeats the evaluation for several seeds and prints, per proxy, the
Kendall tau-b and Spearman rho for each seed, their mean, and the time taken. The default proxy is
chosen from this table: highest mean tau-b, then highest mean rho, then lowest cost.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from archc.proxies import DEFAULT, PROXIES, PROXY_SETTINGS  # noqa: E402
from archc.proxies.evaluate import default_csv, evaluate, read_published  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--proxies", default="all")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--json", default=None, help="also write the raw results here")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = list(PROXIES) if args.proxies == "all" else args.proxies.split(",")
    csv = Path(args.csv) if args.csv else default_csv()
    points = read_published(csv, ROOT / "specs")
    started = time.time()
    raw = {n: [] for n in names}
    for seed in seeds:
        for r in evaluate(points, names, seed=seed):
            raw[r.proxy].append({"seed": seed, "kendall_tau": r.kendall_tau, "spearman_rho": r.spearman_rho,
                                 "seconds": r.seconds, "scores": r.scores})
            print(f"seed {seed} {r.proxy:10s} tau {r.kendall_tau:+.3f} rho {r.spearman_rho:+.3f} ({r.seconds:.1f} s)",
                  file=sys.stderr, flush=True)
    rows = []
    for n in names:
        taus = [x["kendall_tau"] for x in raw[n]]
        rhos = [x["spearman_rho"] for x in raw[n]]
        secs = statistics.mean(x["seconds"] for x in raw[n])
        rows.append((n, taus, rhos, secs))
    rows.sort(key=lambda r: (-statistics.mean(r[1]), -statistics.mean(r[2]), r[3]))
    print(f"Proxies vs published top-1, {len(points)} points ({csv.name}); seeds {args.seeds}; "
          f"{dt.date.today().isoformat()}, {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, torch threads {torch.get_num_threads()}; wall {time.time() - started:.0f} s\n")
    seed_cols = " | ".join(f"tau s{s}" for s in seeds)
    print(f"| proxy | batch | resolution | {seed_cols} | mean tau-b | mean rho | s per 12 points |")
    print("|---|---:|---:|" + "---:|" * len(seeds) + "---:|---:|---:|")
    for n, taus, rhos, secs in rows:
        st = PROXY_SETTINGS[n]
        res = "-" if n == "params" else (st.resolution or "spec")
        batch = "-" if n == "params" else st.batch
        print(f"| {n}{' (default)' if n == DEFAULT else ''} | {batch} | {res} | "
              + " | ".join(f"{t:+.3f}" for t in taus)
              + f" | **{statistics.mean(taus):+.3f}** | {statistics.mean(rhos):+.3f} | {secs:.1f} |")
    print(f"\nbest by the rule (mean tau-b, then mean rho, then cost): {rows[0][0]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": seeds, "csv": str(csv), "results": raw}, indent=1))


if __name__ == "__main__":
    main()
