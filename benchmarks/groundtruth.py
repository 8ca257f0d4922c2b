"""A trained ground truth on Fashion-MNIST: architectures in equal-latency bands, each trained with one recipe
and several seeds, one JSONL row per trained point. Resumable and cached: rerun it and it goes on.

    python3 benchmarks/groundtruth.py                      # sample + measure, plan, train what is missing
    python3 benchmarks/groundtruth.py --workers 2          # two 1-thread training processes side by side
    python3 benchmarks/groundtruth.py --point fv-017 --seed 1   # retrain one point, print its row (no write)
    python3 benchmarks/groundtruth.py --status             # what is done, per band

Steps, each cached in ``archc/data/groundtruth/`` (committed as it grows):

1. ``candidates.jsonl``: ``--fastvit`` points drawn at random (seeded) from ``search/fmnist_fastvit.yaml`` and
   ``--mobileone`` from ``search/fmnist_mobileone.yaml``, each with its deploy graph's latency measured by archc
   on this CPU (torch eager, 1 thread, batch 1, 32x32, median of 50 runs), one process, before any training.
2. ``plan.json``: per family, three latency bands centred on the 20th, 50th and 80th percentile of its
   latencies, each +-10% wide; per band ``--per-band`` FastViT or ``--mobileone-per-band`` MobileOne points (a
   seeded choice among those inside; the closest ones where too few are inside).
3. ``fashion_mnist_groundtruth.jsonl``: one row per (point, seed), trained by ``archc.train.fit`` with the
   recipe below (what ``archc train`` runs), test top-1 on the official 10k test set (reported only).

Rows are appended under a file lock as each point finishes; a point in flight when the run is stopped is
trained again next time. Each worker pins one torch thread (two threads on a busy 2-core machine run a train
step many times slower).
"""
from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archc.machine import cpu_flags, cpu_model as cpu_name  # noqa: E402  (names kept: supernet_groundtruth)

OUT = ROOT / "archc" / "data" / "groundtruth"
CANDIDATES = OUT / "candidates.jsonl"
PLAN = OUT / "plan.json"
ROWS = OUT / "fashion_mnist_groundtruth.jsonl"
PREFIX = {"fastvit": "fv", "mobileone": "mo"}
SPACES = {"fastvit": "search/fmnist_fastvit.yaml", "mobileone": "search/fmnist_mobileone.yaml"}
#: the one recipe of every row (``archc train`` flags in brackets)
RECIPE = dict(data="fashion-mnist", epochs=2, batch=64, resolution=32, lr=2e-3, weight_decay=0.05,
              warmup_fraction=0.1, label_smoothing=0.1, clip_grad=5.0, val_images=5000, ema=None)
LATENCY = dict(target="cpu", runtime="eager", threads=1, batch=1, runs=50, warmup=10)


def read_jsonl(path: Path):
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill: it is trained again
                pass
    return rows


def append_jsonl(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
        fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------ 1. candidates
def sample_candidates(n_fastvit: int, n_mobileone: int, seed: int) -> list:
    import optuna
    import torch
    from archc.latency.fit import arch_key
    from archc.latency.measure import measure_latency
    from archc.space import InfeasiblePoint, load_space, spec_from_trial
    from archc.spec import spec_to_dict
    from archc.errors import ArchcError
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = read_jsonl(CANDIDATES)
    seen = {c["arch"] for c in done}
    for family, want in (("fastvit", n_fastvit), ("mobileone", n_mobileone)):
        have = sum(c["family"] == family for c in done)
        space = load_space(ROOT / SPACES[family])
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        tries = 0
        while have < want and tries < 20 * want:
            tries += 1
            trial = study.ask()
            try:
                spec = spec_from_trial(trial, space, name=f"{PREFIX[family]}-{have:03d}")
            except (InfeasiblePoint, ArchcError):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            study.tell(trial, 0.0)
            key = arch_key(spec, None)
            if key in seen:
                continue
            t0 = time.perf_counter()
            lat = measure_latency(spec, LATENCY["target"], runs=LATENCY["runs"], warmup=LATENCY["warmup"],
                                  threads=LATENCY["threads"], batch=LATENCY["batch"], runtime=LATENCY["runtime"])
            row = {"id": spec.name, "family": family, "arch": key, "spec": spec_to_dict(spec),
                   "latency_ms": round(lat.ms, 5), "latency_iqr_ms": round(lat.iqr_ms, 5),
                   "params": sum(p.numel() for p in __import__("archc").build(spec).parameters())}
            append_jsonl(CANDIDATES, row)
            done.append(row)
            seen.add(key)
            have += 1
            print(f"candidate {row['id']}: {row['latency_ms']:.3f} ms, {row['params']:,} params "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return done


# ------------------------------------------------------------------------------------------ 2. plan
def make_plan(cands: list, per_band: int, mo_per_band: int, seed: int) -> dict:
    """Three latency bands per family, centred on its 20th, 50th and 80th latency percentile, +-10% wide.
    Per family, because MobileOne's deploy graphs (plain conv chains) run 2-3x faster than FastViT's here at
    any size the spaces hold: a band shared by both would hold almost none of one of them."""
    import numpy as np
    if PLAN.exists():
        return json.loads(PLAN.read_text())
    rng = np.random.default_rng(seed)
    bands = []
    for family, n in (("fastvit", per_band), ("mobileone", mo_per_band)):
        pool = [c for c in cands if c["family"] == family]
        lat = sorted(c["latency_ms"] for c in pool)
        taken = set()
        for q in (0.2, 0.5, 0.8):
            centre = float(np.quantile(lat, q))
            lo, hi = centre / 1.1, centre * 1.1
            free = [c for c in pool if c["id"] not in taken]
            inside = [c for c in free if lo <= c["latency_ms"] <= hi]
            if len(inside) >= n:
                pick = [inside[i] for i in sorted(rng.choice(len(inside), n, replace=False))]
            else:  # too few inside: the closest ones, and the band says how wide it really is
                pick = sorted(free, key=lambda c: abs(np.log(c["latency_ms"] / centre)))[:n]
            taken.update(c["id"] for c in pick)
            lats = [c["latency_ms"] for c in pick]
            bands.append({"band": f"{PREFIX[family]}{q * 100:.0f}", "family": family, "centre_ms": round(centre, 5),
                          "nominal_ms": [round(lo, 5), round(hi, 5)], "inside": len(inside),
                          "actual_ms": [round(min(lats), 5), round(max(lats), 5)],
                          "points": [c["id"] for c in pick]})
    plan = {"bands": bands, "seeds": [0, 1], "recipe": RECIPE, "latency": LATENCY,
            "machine": {"cpu": cpu_name(), "flags": cpu_flags()}, "date": dt.date.today().isoformat()}
    PLAN.write_text(json.dumps(plan, indent=1) + "\n")
    return plan


def work_list(plan: dict) -> list:
    """(band, id, seed) in an order that keeps a partial set balanced: bands round-robin, both seeds of a
    point together."""
    order = []
    for i in range(max(len(b["points"]) for b in plan["bands"])):
        for b in plan["bands"]:
            if i < len(b["points"]):
                order += [(b["band"], b["points"][i], s) for s in plan["seeds"]]
    return order


# ----------------------------------------------------------------------------------------- 3. train
_DATA = {}


def train_point(cand: dict, band: int, seed: int) -> dict:
    import torch
    import archc
    from archc.train import TrainConfig
    from archc.train.fit import fit
    from archc.train.score import open_data
    torch.set_num_threads(1)
    r = RECIPE
    cfg = TrainConfig(data=r["data"], batch=r["batch"], resolution=r["resolution"], lr=r["lr"],
                      weight_decay=r["weight_decay"], warmup_fraction=r["warmup_fraction"],
                      label_smoothing=r["label_smoothing"], clip_grad=r["clip_grad"], seed=seed,
                      val_images=r["val_images"], threads=1).check()
    if "data" not in _DATA:
        _DATA["data"] = open_data(cfg)
    spec = archc.load_spec(cand["spec"])
    res = fit(spec, _DATA["data"], cfg, epochs=r["epochs"], ema=r["ema"])
    return {"id": cand["id"], "arch": cand["arch"], "spec": cand["spec"], "family": cand["family"], "band": band,
            "seed": seed, "val_top1": res.val_top1, "val_top1_deploy": res.val_top1_deploy,
            "test_top1": res.test_top1, "top1_unit": "percent", "latency_ms": cand["latency_ms"],
            "latency_target": f"cpu ({cpu_name()}; {cpu_flags()}), torch eager, 1 thread, batch 1, 32x32, deploy graph",
            "params": res.params, "train_seconds": res.train_seconds, "epochs": res.epochs, "steps": res.steps,
            "train_loss_last": res.history[-1].train_loss, "date": dt.datetime.now().isoformat(timespec="seconds"),
            "command": f"python3 benchmarks/groundtruth.py --point {cand['id']} --seed {seed}"}


def worker(index: int, workers: int, jobs: list, cands: dict, parent: int = None) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    if parent is not None:
        from archc.process import die_with_parent
        die_with_parent(parent)  # a stopped run leaves no orphan training on
    for k, (band, pid, seed) in enumerate(jobs):
        if k % workers != index:
            continue
        done = {(r["id"], r["seed"]) for r in read_jsonl(ROWS)}
        if (pid, seed) in done:
            continue
        t0 = time.perf_counter()
        row = train_point(cands[pid], band, seed)
        append_jsonl(ROWS, row)
        print(f"[w{index}] {pid} seed {seed} (band {band}): val {row['val_top1']:.2f}% test {row['test_top1']:.2f}% "
              f"{row['latency_ms']:.3f} ms, {time.perf_counter() - t0:.0f} s", flush=True)


def status(plan: dict) -> None:
    rows = read_jsonl(ROWS)
    done = {(r["id"], r["seed"]) for r in rows}
    for b in plan["bands"]:
        n = sum((p, s) in done for p in b["points"] for s in plan["seeds"])
        print(f"band {b['band']} ({b['actual_ms'][0]:.3f}-{b['actual_ms'][1]:.3f} ms, {b['inside']} sampled inside): {n}/"
              f"{len(b['points']) * len(plan['seeds'])} trained points")
    secs = sum(r["train_seconds"] for r in rows)
    print(f"{len(rows)} rows, {secs / 3600:.2f} h of 1-thread training")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fastvit", type=int, default=150, help="FastViT candidates to sample and time")
    ap.add_argument("--mobileone", type=int, default=60, help="MobileOne candidates to sample and time")
    ap.add_argument("--per-band", type=int, default=17, help="FastViT points per latency band")
    ap.add_argument("--mobileone-per-band", type=int, default=4, help="MobileOne points per latency band")
    ap.add_argument("--seed", type=int, default=None, help="with --point: the training seed")
    ap.add_argument("--point", default=None, help="retrain one point by id and print its row (writes nothing)")
    ap.add_argument("--workers", type=int, default=1, help="training processes, one torch thread each")
    ap.add_argument("--status", action="store_true")
    args = ap.parse_args(argv)
    if args.point:
        cands = {c["id"]: c for c in read_jsonl(CANDIDATES)}
        plan = json.loads(PLAN.read_text())
        band = next(b["band"] for b in plan["bands"] if args.point in b["points"])
        print(json.dumps(train_point(cands[args.point], band, args.seed or 0), indent=1))
        return 0
    if args.status:
        status(json.loads(PLAN.read_text()))
        return 0
    print(f"machine: {cpu_name()}; flags: {cpu_flags()}; {os.cpu_count()} cores; {dt.date.today()}", flush=True)
    cands = sample_candidates(args.fastvit, args.mobileone, seed=0)
    plan = make_plan(cands, args.per_band, args.mobileone_per_band, seed=0)
    jobs = work_list(plan)
    by_id = {c["id"]: c for c in cands}
    if args.workers == 1:
        worker(0, 1, jobs, by_id)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=worker, args=(i, args.workers, jobs, by_id, os.getpid()))
                 for i in range(args.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    status(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
