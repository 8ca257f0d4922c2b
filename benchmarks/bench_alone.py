"""One contender per process: timm's deploy graph or archc's under one runtime option, timed alone
(batch 1, 200 runs after 20 warm-up; threads: third argument, default 1). Complements bench_vs_timm.py, whose interleaving in one
process shares the allocator's state between contenders. Run in the anchor venv::

    PYTHONPATH=. /tmp/archc-anchor-venv/bin/python benchmarks/bench_alone.py t8 timm
    PYTHONPATH=. /tmp/archc-anchor-venv/bin/python benchmarks/bench_alone.py t8 eager
"""
import sys, warnings, statistics; warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
import archc
from archc.runtime import inference_model, make_runner
from archc.testing import randomize_
from archc.latency.measure import time_interleaved
v, who = sys.argv[1], sys.argv[2]
spec=archc.load_spec(f"specs/{v}.yaml")
train=randomize_(archc.build(spec),seed=0).eval()
x=torch.randn(1,3,256,256)
if who=="timm":
    import timm; from timm.utils.model import reparameterize_model
    tm=timm.create_model(f"fastvit_{v}").eval(); tm.load_state_dict(train.state_dict())
    m=reparameterize_model(tm).eval()
    def f():
        with torch.inference_mode(): return m(x)
else:
    r=make_runner(inference_model(spec, model=train), x, who); xin=r.prepare(x)
    f=lambda: r(xin)
s=time_interleaved({who:f}, 200, 20, block=5)
print(v, who, torch.get_num_threads(), round(statistics.median(s[who]), 2))
