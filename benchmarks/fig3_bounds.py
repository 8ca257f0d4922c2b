"""What MACs and bytes alone allow for the paper's Fig. 3 pair on the iPhone, from archc's deploy graphs.

    python benchmarks/fig3_bounds.py [--profile iphone12pro] [--resolutions 224,256,384,512,1024]

The FastViT paper measures RepMixer 25.1% (384 px) and 43.9% (1024 px) faster than pooling in the
PoolFormer-S12 skeleton on an iPhone 12 Pro. Every iPhone calibration point archc may fit is at 224/256 px.
This script asks how far a cost model built from MACs and memory traffic could get there at all:

- the pair's MAC and traffic ratios (fp16, as Core ML runs it): a graph bound purely by one of them is
  faster by at most ``1 - B/A`` of that quantity;
- the profile's own prediction;
- a what-if with a DRAM price taken from the A14's datasheet rather than fitted: every op moving more than
  the 16 MB system-level cache streams at LPDDR4X-4266 x 64 bit = 34.1 GB/s, added to the prediction.

None of this is fitted to Fig. 3; it says what the published data cannot teach a model.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, os.path.dirname(__file__))

from _common import md_table  # noqa: E402

FIG3 = {384: 25.1, 1024: 43.9}
#: Apple A14: 16 MB system-level cache; iPhone 12 Pro: LPDDR4X-4266 on a 64-bit bus
SLC_MB, DRAM_MB_PER_MS = 16.0, 34.1


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--profile", default="iphone12pro")
    p.add_argument("--resolutions", default="224,256,384,512,1024")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    import archc
    from archc.analysis.profile import example_input, profile_graph
    from archc.latency.features import deploy_graph, node_table
    from archc.latency.predict import predict_latency

    rows = []
    for res in (int(r) for r in args.resolutions.split(",")):
        per = []
        for name in ("poolformer_s12", "poolformer_s12_repmixer"):
            spec = archc.load_spec(ROOT / "specs" / f"{name}.yaml", overrides={"input_size": res})
            table = node_table(profile_graph(deploy_graph(spec)[0], example_input((res, res))))
            mb = table.mbytes / 2  # fp16
            per.append({"gmac": table.macs.sum(), "mb": mb.sum(), "dram_ms": (mb * (mb > SLC_MB)).sum() / DRAM_MB_PER_MS,
                        "pred": predict_latency(spec, args.profile, res).ms})
        a, b = per
        with_dram = (a["pred"] + a["dram_ms"], b["pred"] + b["dram_ms"])
        rows.append((res, f"{a['gmac']:.2f} / {b['gmac']:.2f}", f"{100 * (1 - b['gmac'] / a['gmac']):.1f}%",
                     f"{a['mb']:.0f} / {b['mb']:.0f}", f"{100 * (1 - b['mb'] / a['mb']):.1f}%",
                     f"{a['pred']:.2f} / {b['pred']:.2f}", f"{100 * (1 - b['pred'] / a['pred']):.1f}%",
                     f"{100 * (1 - with_dram[1] / with_dram[0]):.1f}%",
                     f"{FIG3[res]:.1f}%" if res in FIG3 else "—"))
    print(md_table(["px", "GMAC pool / RepMixer", "MAC-bound ceiling", "MB fp16 pool / RepMixer",
                    "bytes-bound ceiling", f"{args.profile} ms", "predicted", "+ datasheet DRAM", "paper (Fig. 3)"],
                   rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
