"""Latency-driven slimming (EfficientFormer, Li et al. 2022, Sec. 4): train a supernet over a space's
choices with Gumbel-softmax path weights, then greedily give up the choice that costs the least importance
per millisecond saved until the latency budget holds. The authors never released this search; this is a
CPU-sized reading of the paper, and docs/SLIMMING.md lists where it differs and why.

The result is a point of the space (a spec ``archc build`` takes), the trace of every step (what went, the
importance it cost, the latency before and after) and a plot of the trace.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from optuna.distributions import CategoricalDistribution, IntDistribution

from ..errors import SearchError
from ..spec import Spec, stage_resolutions
from ..train import TrainConfig
from ..space import InfeasiblePoint, SearchSpace, spec_from_values
from .supernet import PATH_3D, PATH_4D, PATH_SKIP, StageChoices, SuperNet

#: the per-stage keys slimming can vary
SLIM_KEYS = ("depth", "width", "meta3d")
LatencyFn = Callable[[Spec], float]


@dataclass
class Step:
    """One slimming step: the action, the importance it gave up, the latency before and after."""

    step: int
    action: str
    stage: int
    block: Optional[int]
    importance: float
    latency_before_ms: float
    latency_after_ms: float
    values: Dict[str, Any]

    @property
    def saved_ms(self) -> float:
        return self.latency_before_ms - self.latency_after_ms


@dataclass
class SlimResult:
    spec: Spec
    latency_ms: float
    budget_ms: float
    steps: List[Step]
    importances: Dict[str, Any]
    start_values: Dict[str, Any]
    start_latency_ms: float
    train_seconds: float
    train_steps: int
    train_loss_first: float
    train_loss_last: float
    info: Dict[str, Any] = field(default_factory=dict)

    def trace(self) -> Dict[str, Any]:
        return {"budget_ms": self.budget_ms, "latency_ms": self.latency_ms, "start_values": self.start_values,
                "start_latency_ms": self.start_latency_ms, "final_values": self.steps[-1].values if self.steps
                else self.start_values, "train": {"seconds": round(self.train_seconds, 2), "steps": self.train_steps,
                                                  "loss_first": self.train_loss_first,
                                                  "loss_last": self.train_loss_last},
                "importances": self.importances, "steps": [dict(dataclasses.asdict(s), saved_ms=s.saved_ms)
                                                           for s in self.steps], **self.info}


# ----------------------------------------------------------------------------------- the space's choices
def stage_choices(space: SearchSpace) -> List[StageChoices]:
    """Each stage's depth bounds, width choices and Meta3D bounds; a SearchError if the space varies any
    other key or is not made of ``meta4d`` stages."""
    out = []
    for i in range(space.n_stages):
        mixer = space.base["stages"][i]["mixer"]
        if (mixer["type"] if isinstance(mixer, dict) else mixer) != "meta4d":
            raise SearchError(f"{space.file}: slimming needs meta4d (EfficientFormer) stages; stages[{i}] is "
                              f"{mixer!r}")
        got: Dict[str, Tuple] = {}
        for key in SLIM_KEYS:
            fixed = space.fixed.get((i, key))
            name = f"stages[{i}].{key}"
            dist = space.distributions().get(name)
            if dist is None:
                base = space.base["stages"][i]
                value = fixed if fixed is not None else (base["mixer"].get("meta3d", 0) if key == "meta3d"
                                                         else base[key])
                got[key] = (value, value) if key != "width" else (value,)
            elif isinstance(dist, IntDistribution) and dist.step == 1 and key != "width":
                got[key] = (dist.low, dist.high)
            elif isinstance(dist, CategoricalDistribution) and key == "width":
                got[key] = tuple(sorted(dist.choices))
            else:
                raise SearchError(f"{space.file}: {name}: slimming takes depth as a range with step 1, width as "
                                  f"a list and meta3d as a range; got {dist!r}")
        out.append(StageChoices(got["depth"], got["width"], got["meta3d"]))
    varied = {p.name.split(".")[-1] for p in space.params}
    extra = sorted(varied - set(SLIM_KEYS))
    if extra:
        raise SearchError(f"{space.file}: slimming varies only {', '.join(SLIM_KEYS)}; the space also varies "
                          f"{', '.join(extra)}")
    return out


# -------------------------------------------------------------------------------------------- training
def build_supernet(space: SearchSpace, choices: List[StageChoices], num_classes: int, resolution: int) -> SuperNet:
    from ..spec import load_spec
    base = load_spec(space.base)
    widest = spec_from_values(space, _values(choices, [c.depth[1] for c in choices],
                                             [c.widths[-1] for c in choices], [c.meta3d[1] for c in choices]))
    sized = dataclasses.replace(widest, input_size=(resolution, resolution))
    mixers = [s.mixer for s in base.stages]
    return SuperNet(choices, stage_resolutions(sized), num_classes, [s.mlp_ratio for s in base.stages],
                    [m.pool_size for m in mixers], [s.downsample is not None for s in base.stages],
                    stem_width=None, layer_scale=base.layer_scale_init or 1e-5)


def train_supernet(net: SuperNet, train_set, cfg: TrainConfig, *, arch_lr: float = 3e-3,
                   tau: Tuple[float, float] = (5.0, 0.5), progress=None) -> Tuple[float, float, int, float]:
    """Weights (AdamW, warmup + cosine) and architecture parameters (Adam) on the same batches; the
    Gumbel temperature anneals geometrically from ``tau[0]`` to ``tau[1]``. Returns first/last loss, steps,
    seconds."""
    from ..train.loop import batches, prepare, warmup_cosine
    steps = cfg.total_steps(len(train_set))
    torch.manual_seed(cfg.seed)
    net.train()
    opt = torch.optim.AdamW(_weight_groups(net, cfg.weight_decay), lr=cfg.lr)
    arch = torch.optim.Adam(net.arch_parameters(), lr=arch_lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, cfg.warmup(steps)))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    stream = iter(batches(train_set, cfg))
    losses: List[float] = []
    t0 = time.perf_counter()
    for step in range(steps):
        net.tau = tau[0] * (tau[1] / tau[0]) ** (step / max(1, steps - 1))
        x, y = next(stream)
        loss = criterion(net(prepare(x, train_set)), torch.as_tensor(y))
        if not torch.isfinite(loss):
            raise SearchError(f"supernet loss became {float(loss.detach())} at step {step + 1}; lower --train-lr")
        opt.zero_grad(set_to_none=True)
        arch.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            nn.utils.clip_grad_norm_(net.weight_parameters(), cfg.clip_grad)
        opt.step()
        arch.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, steps, losses[-1])
    del stream
    tenth = max(1, steps // 10)
    return sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth, steps, time.perf_counter() - t0


def _weight_groups(net: SuperNet, weight_decay: float) -> List[dict]:
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if name.endswith("alpha"):
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("gamma", "attention_biases")) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# -------------------------------------------------------------------------------------------- slimming
@dataclass
class _State:
    """The architecture being slimmed: per stage the kept block positions with their path, and the width."""

    blocks: List[List[Tuple[int, str]]]  # (supernet position, PATH_4D or PATH_3D), in order
    widths: List[int]

    def values(self, choices: List[StageChoices]) -> Dict[str, Any]:
        depths = [len(b) for b in self.blocks]
        meta3d = [sum(1 for _, p in b if p == PATH_3D) for b in self.blocks]
        return _values(choices, depths, self.widths, meta3d)


def _values(choices, depths, widths, meta3d) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for i, c in enumerate(choices):
        if c.depth[0] != c.depth[1]:
            out[f"stages[{i}].depth"] = depths[i]
        if len(c.widths) > 1:
            out[f"stages[{i}].width"] = widths[i]
        if c.meta3d[0] != c.meta3d[1]:
            out[f"stages[{i}].meta3d"] = meta3d[i]
    return out


def check_reachable(space: SearchSpace, choices: List[StageChoices], budget_ms: float, latency: LatencyFn) -> None:
    """SearchError if even the smallest point of the space (fewest blocks, narrowest widths, fewest Meta3D blocks)
    is over the budget: slimming only removes from the widest point, so it could not get below that one."""
    depths = [c.depth[0] for c in choices]
    smallest = _values(choices, depths, [c.widths[0] for c in choices],
                       [min(c.meta3d[0], d) for c, d in zip(choices, depths)])
    try:
        spec = spec_from_values(space, smallest, name=f"{space.name}_smallest")
    except InfeasiblePoint:
        return  # the all-smallest combination breaks a rule: nothing cheap to check, slimming will say
    ms = latency(spec)
    if ms is not None and ms > budget_ms:
        raise SearchError(f"{space.file}: cannot reach {budget_ms:g} ms: the smallest point of the space takes "
                          f"{ms:.3f} ms ({json.dumps(smallest)}); raise --latency-ms or widen the space")


def initial_state(choices: List[StageChoices], imp: Dict[str, Any]) -> _State:
    """The widest, deepest point; in a stage that may hold Meta3D blocks, the longest suffix of positions
    that prefer Meta3D to Meta4D (within the space's meta3d bounds) is Meta3D: the supernet's MetaPath."""
    blocks = []
    for i, c in enumerate(choices):
        n = c.depth[1]
        probs = imp["blocks"][i]
        k = 0
        while k < n and probs[n - 1 - k].get(PATH_3D, 0.0) >= probs[n - 1 - k][PATH_4D]:
            k += 1
        k = min(max(k, c.meta3d[0]), c.meta3d[1])
        blocks.append([(j, PATH_3D if j >= n - k else PATH_4D) for j in range(n)])
    return _State(blocks, [c.widths[-1] for c in choices])


def _actions(state: _State, choices: List[StageChoices], imp: Dict[str, Any], rules: Dict[str, Any]):
    """Every one-step slimming of ``state``: (action, stage, block, importance given up, new state)."""
    for i, c in enumerate(choices):
        kept = state.blocks[i]
        n3 = sum(1 for _, p in kept if p == PATH_3D)
        # drop one block position (the least important one of each path type)
        if len(kept) > c.depth[0]:
            for path in (PATH_4D, PATH_3D):
                cands = [(imp["blocks"][i][j][path] - imp["blocks"][i][j][PATH_SKIP], j) for j, p in kept if p == path]
                if not cands or (path == PATH_3D and n3 - 1 < c.meta3d[0]):
                    continue
                cost, j = min(cands)
                new = [b for b in kept if b[0] != j]
                if sum(1 for _, p in new if p == PATH_3D) > len(new):
                    continue
                yield f"drop {path} block", i, j, cost, _replace(state, i, blocks=new)
        # the first Meta3D block becomes Meta4D (fewer 3D blocks)
        if n3 > c.meta3d[0]:
            pos = next(j for j, p in kept if p == PATH_3D)
            probs = imp["blocks"][i][pos]
            new = [(j, PATH_4D if j == pos else p) for j, p in kept]
            yield "meta3d -> meta4d", i, pos, probs[PATH_3D] - probs[PATH_4D], _replace(state, i, blocks=new)
        # narrow the stage to the next smaller width choice
        w = state.widths[i]
        smaller = [v for v in c.widths if v < w]
        if smaller:
            nw = smaller[-1]
            if rules.get("widths_non_decreasing") and i > 0 and nw < state.widths[i - 1]:
                continue
            yield f"width {w} -> {nw}", i, None, imp["widths"][i][w], _replace(state, i, width=nw)


def _replace(state: _State, i: int, blocks=None, width=None) -> _State:
    b = [list(x) for x in state.blocks]
    ws = list(state.widths)
    if blocks is not None:
        b[i] = blocks
    if width is not None:
        ws[i] = width
    return _State(b, ws)


def slim(space: SearchSpace, choices: List[StageChoices], imp: Dict[str, Any], budget_ms: float,
         latency: LatencyFn, progress=None) -> Tuple[Spec, float, List[Step], Dict[str, Any], float]:
    """Greedy slimming from the widest point: repeatedly apply the action with the least importance given up
    per millisecond saved (latency from ``latency(spec)``) until the budget holds.

    An action's saving is re-predicted only when the last step can have changed it (a block dropped or
    converted: the stage's width action; a width change: its stage's actions and the next stage's width);
    otherwise the saving from the step that last predicted it is reused: latency is close to additive over
    stages and blocks of one shape, and re-predicting every neighbour of every point is slow (measured on the
    shared 2-core VM at load average 11: the 16 predictions of the first step on the shipped space, 9 min). The chosen action is always confirmed with the new
    point's real latency, so the budget check is exact; only the ranking uses reused savings."""
    state = initial_state(choices, imp)
    cache: Dict[str, float] = {}

    def lat(values: Dict[str, Any]) -> Optional[float]:
        key = json.dumps(values, sort_keys=True)
        if key not in cache:
            try:
                cache[key] = latency(spec_from_values(space, values))
            except InfeasiblePoint:
                cache[key] = math.nan
        return None if math.isnan(cache[key]) else cache[key]

    start_values = state.values(choices)
    current = lat(start_values)
    if current is None:
        raise SearchError(f"{space.file}: the widest point of the space breaks its rules; slimming starts there")
    start = current
    steps: List[Step] = []
    saved: Dict[Tuple[str, int, Any], float] = {}  # action -> ms it saved when last evaluated
    everything = {(i, kind) for i in range(len(choices)) for kind in ("drop", "meta3d", "width")}
    fresh = set(everything)  # (stage, action kind) whose savings are re-evaluated at this step
    while current > budget_ms:
        options = []
        for action, i, j, cost, new in _actions(state, choices, imp, space.rules):
            key = (action, i)  # "drop a Meta4D block of stage i" saves the same whichever block it is
            if (i, action.split()[0]) in fresh or key not in saved:
                after = lat(new.values(choices))
                saved[key] = -math.inf if after is None else current - after
            if saved[key] > 0:
                options.append((max(cost, 0.0) / saved[key], action, i, j, cost, new))
        options.sort(key=lambda o: o[0])
        chosen = None
        for _, action, i, j, cost, new in options:  # the estimate may be stale: confirm with the real latency
            after = lat(new.values(choices))
            if after is not None and after < current:
                chosen = (action, i, j, cost, new, after)
                break
            saved[(action, i)] = -math.inf
        if chosen is None:
            if fresh != everything:
                fresh = set(everything)
                continue
            raise SearchError(f"{space.file}: cannot reach {budget_ms:g} ms: the smallest point slimming reaches "
                              f"takes {current:.3f} ms ({json.dumps(state.values(choices))})")
        action, i, j, cost, state, after = chosen
        steps.append(Step(len(steps) + 1, action, i, j, round(cost, 6), current, after, state.values(choices)))
        if progress:
            progress(steps[-1])
        current = after
        # what this step can have changed: a dropped or converted block changes only what its stage's width
        # costs (one more block of the same shape saves what the last one did); a width change changes
        # every saving of its stage and the next stage's width (its downsample's input)
        fresh = ({(i, k) for k in ("drop", "meta3d", "width")} | {(i + 1, "width")} if action.startswith("width")
                 else {(i, "width")})
    values = state.values(choices)
    return spec_from_values(space, values, f"{space.name}_slim"), current, steps, start_values, start


def plot_trace(result: SlimResult, path: Path) -> Path:
    """Latency and cumulative importance given up against the slimming step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = [0] + [s.step for s in result.steps]
    lat = [result.start_latency_ms] + [s.latency_after_ms for s in result.steps]
    cum, total = [0.0], 0.0
    for s in result.steps:
        total += max(s.importance, 0.0)
        cum.append(total)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, lat, marker="o", label="latency (ms)")
    ax.axhline(result.budget_ms, color="red", linestyle="--", label=f"budget {result.budget_ms:g} ms")
    ax.set_xlabel("slimming step")
    ax.set_ylabel("latency (ms)")
    ax2 = ax.twinx()
    ax2.plot(xs, cum, color="gray", marker=".", label="importance given up")
    ax2.set_ylabel("cumulative importance given up")
    ax.set_title(f"latency-driven slimming: {len(result.steps)} steps")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_slim(space: SearchSpace, budget_ms: float, latency: LatencyFn, cfg: TrainConfig, *,
             progress=None, step_progress=None) -> SlimResult:
    """Train the supernet on ``cfg``'s data, then slim to ``budget_ms``."""
    from ..train.score import open_data
    choices = stage_choices(space)
    check_reachable(space, choices, budget_ms, latency)  # seconds, before minutes of supernet training
    data = open_data(cfg)
    torch.manual_seed(cfg.seed)
    net = build_supernet(space, choices, len(data.classes), cfg.resolution)
    first, last, steps, seconds = train_supernet(net, data.train, cfg, progress=progress)
    imp = net.importances()
    spec, ms, trace, start_values, start = slim(space, choices, imp, budget_ms, latency, progress=step_progress)
    return SlimResult(spec, ms, budget_ms, trace, imp, start_values, start, seconds, steps, round(first, 4),
                      round(last, 4), {"data": data.description})


__all__ = ["SLIM_KEYS", "SlimResult", "Step", "build_supernet", "initial_state", "plot_trace", "run_slim", "slim",
           "stage_choices", "train_supernet"]
