"""How much of a search space a latency profile calls "inside its data": sample architectures from each
space and count those whose deploy graph has op kinds or op patterns the profile's calibration never had.

    python benchmarks/pattern_coverage.py --profile iphone12pro --space search/fastvit.yaml --n 20 [--seed 3]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", required=True)
    p.add_argument("--space", action="append", required=True)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--resolution", type=int, default=None)
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    from archc.latency.calibrate import sample_spaces
    from archc.latency.predict import predict_latency
    for space in a.space:
        novel, outside = Counter(), 0
        samples = sample_spaces([space], a.n, seed=a.seed)
        for s in samples:
            r = predict_latency(s.spec, a.profile, a.resolution)
            outside += bool(r.caveats)
            novel.update(r.detail.get("unseen_op_patterns", []))
        print(f"{space}: {outside} of {len(samples)} outside the data of '{a.profile}'; most common unseen patterns: "
              + (", ".join(f"{k} ({v})" for k, v in novel.most_common(6)) or "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
