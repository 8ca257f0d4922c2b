"""A latency profile against measurements it was never fitted on: a second, independent calibration sample.

    python benchmarks/profile_transfer.py --profile amd-epyc-ort-1t --cache runs/calibrate/amd/seed1.jsonl

``--cache`` is the JSONL an ``archc calibrate --measure`` run wrote (another ``--seed``: other architectures),
with its ``<cache>_specs/`` folder beside it. Every point is predicted by ``--profile`` and compared with its
measurement: MAPE, worst miss, Kendall tau, and how many misses exceed the error the prediction states.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, os.path.dirname(__file__))
from _common import describe_machine, machine, md_table  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", required=True)
    p.add_argument("--cache", required=True)
    a = p.parse_args()
    from archc.latency.predict import predict_latency
    from archc.proxies.rank import kendall_tau_b
    cache = Path(a.cache)
    specs = cache.parent / (cache.stem + "_specs")
    rows, meas, pred, fams = [], [], [], {}
    beyond_stated = 0
    for line in cache.read_text().splitlines():
        r = json.loads(line)
        if "arch" not in r:
            continue  # a --check-pair record (two models side by side), not a calibration point
        spec = specs / f"{r['arch']}.yaml"
        if not spec.is_file():
            continue
        res = predict_latency(spec, a.profile, resolution=int(r["resolution"]))
        err = (res.ms - r["ms"]) / r["ms"] * 100
        beyond_stated += abs(err) > res.error_bound_pct
        meas.append(r["ms"])
        pred.append(res.ms)
        fams.setdefault(r["family"], []).append(abs(err))
        rows.append((r["family"], r["name"], r["resolution"], r["ms"], res.ms, err, res.expected_error_pct,
                     res.error_bound_pct))
    m, q = np.array(meas), np.array(pred)
    ape = np.abs(q - m) / m * 100
    print(describe_machine(machine()))
    print(f"profile {a.profile} on {len(m)} points of {cache} (never fitted on them)\n")
    worst = sorted(rows, key=lambda r: -abs(r[5]))[:8]
    print(md_table(["family", "point", "resolution", "measured ms", "predicted ms", "error", "stated: expected / band"],
                   [[f, n, res, f"{x:.3f}", f"{y:.3f}", f"{e:+.1f}%", f"±{s:.1f}% / ±{b:.1f}%"]
                    for f, n, res, x, y, e, s, b in worst]))
    print(f"\nMAPE {ape.mean():.2f}% (max {ape.max():.1f}%), Kendall tau {kendall_tau_b(q, m):.3f}; "
          + ", ".join(f"{f} {np.mean(v):.1f}%" for f, v in sorted(fams.items()))
          + f"; misses beyond the stated band: {beyond_stated} of {len(m)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
