"""The supernet's inherited accuracy ranked against the trained ground truth (FastViT rows), beside ``params``
and ``naswot``, per latency band, with bootstrap intervals and top-1 regret. Writes
``archc/data/groundtruth/supernet_eval.json`` and prints a Markdown table for docs/ACCURACY_SIGNALS.md.

    archc supernet train fmnist_fastvit --data fashion-mnist --out runs/supernet-fmnist-s0      # ~40 min, 1 core
    python3 benchmarks/supernet_groundtruth.py runs/supernet-fmnist-s0 [runs/supernet-fmnist-s1] [--out FILE]

A second supernet directory (another --seed) adds the seed-to-seed agreement of the supernet scores.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv) -> int:
    import torch
    from archc.proxies.groundtruth import default_file, noise_ceiling, rank_signal, read_groundtruth, signal_scores
    from archc.rankstats import kendall_tau_b
    from archc.spec import load_spec
    from archc.supernet.score import SupernetScore
    from groundtruth import cpu_flags, cpu_name
    torch.set_num_threads(1)
    argv = list(argv)
    path = ROOT / "archc" / "data" / "groundtruth" / "supernet_eval.json"
    if "--out" in argv:  # keep an earlier evaluation beside a new one
        i = argv.index("--out")
        path = Path(argv[i + 1])
        del argv[i:i + 2]
    dirs = [Path(a) for a in argv] or [ROOT / "runs" / "supernet-fmnist-s0"]
    out = {"machine": {"cpu": cpu_name(), "flags": cpu_flags()}, "date": dt.date.today().isoformat(),
           "command": "python3 benchmarks/supernet_groundtruth.py " + " ".join(map(str, dirs))}
    for truth in ("test", "val"):
        archs = [a for a in read_groundtruth(default_file(), truth) if a.family == "fastvit"]
        res = {"n": len(archs), "noise_ceiling": noise_ceiling(archs), "signals": {}}
        all_scores = []
        for d in dirs:
            scorer = SupernetScore(d)
            t0 = time.perf_counter()
            scores = {a.arch: float(scorer(load_spec(a.spec))) for a in archs}
            per = (time.perf_counter() - t0) / len(archs)
            all_scores.append(scores)
            ev = rank_signal(f"supernet:{d.name}", archs, scores, per)
            res["signals"][ev.signal] = {**ev.__dict__, "seconds_per_candidate": round(per, 3),
                                         "supernet": scorer.describe(), "train_seconds": scorer.state["seconds"],
                                         "build_seconds": scorer.state.get("build_seconds")}
        for name in ("params", "naswot"):
            t0 = time.perf_counter()
            scores = signal_scores(archs, name)
            ev = rank_signal(name, archs, scores, time.perf_counter() - t0)
            res["signals"][name] = ev.__dict__
        if len(all_scores) > 1:
            a, b = all_scores[0], all_scores[1]
            res["supernet_seed_agreement_tau"] = round(kendall_tau_b([a[k] for k in a], [b[k] for k in a]), 4)
        out[truth] = res
    gt = [json.loads(line) for line in default_file().read_text().splitlines() if line.strip()]
    fv = [r["train_seconds"] for r in gt if r["family"] == "fastvit"]
    out["groundtruth_mean_train_seconds_fastvit"] = round(sum(fv) / len(fv), 1)
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    res = out["test"]
    print("| signal | tau-b all [95% CI] | " + " | ".join(f"{b['band']} tau / regret" for b in
                                                          next(iter(res['signals'].values()))['bands']) + " | s/cand |")
    for name, ev in res["signals"].items():
        cells = " | ".join(f"{b['kendall_tau']:.2f} / {b['regret']:.2f}" for b in ev["bands"])
        print(f"| {name} | {ev['kendall_tau']:.3f} [{ev['kendall_tau_ci'][0]:.2f}, {ev['kendall_tau_ci'][1]:.2f}] | "
              f"{cells} | {ev.get('seconds_per_candidate', ev['seconds'])} |")
    print(json.dumps({k: v for k, v in out.items() if k not in ("test", "val")}, indent=1))
    print("noise ceiling", res["noise_ceiling"].get("kendall_tau"), "seed agreement",
          res.get("supernet_seed_agreement_tau"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
