"""Which subnets a training step visits: the sandwich rule (BigNAS) over a search space.

Every step trains the *largest* subnet (each numeric choice at its maximum: depth, width, width multiplier,
MLP ratio, kernel), the *smallest* (each at its minimum) and ``n`` uniformly random ones. Nominal choices
(the mixer, the positional encoding) have no order: in the largest and the smallest they are drawn at random
too, so every mixer path is trained at every size. A draw that breaks a rule of the space (attention needs
whole heads, ...) is drawn again. The draws come from ``(seed, step)`` alone, so a resumed run visits the
same subnets as an unbroken one.
"""
from __future__ import annotations

import itertools
import random
from typing import Any, Callable, Dict, FrozenSet, List, Tuple

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from ..space import InfeasiblePoint, SearchSpace, spec_from_values
from ..spec.model import Spec
from .shared import SupernetError

TRIES = 200


def choices(dist) -> List[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n = int(round((dist.high - dist.low) / dist.step))
        return [dist.low + i * dist.step for i in range(n + 1)]
    raise SupernetError(f"a supernet needs finite choices; {dist!r} is continuous (give it a step)")


def ordered(values: List[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def draw(space: SearchSpace, rng: random.Random, kind: str) -> Dict[str, Any]:
    """One point: ``kind`` is ``largest``, ``smallest`` or ``random``."""
    values = {}
    for p in space.params:
        cs = choices(p.distribution)
        if kind != "random" and ordered(cs):
            values[p.name] = max(cs) if kind == "largest" else min(cs)
        else:
            values[p.name] = rng.choice(cs)
    return values


def feasible(space: SearchSpace, rng: random.Random, kind: str, name: str) -> Tuple[Dict[str, Any], Spec]:
    """A point of ``kind`` that the space's rules accept, with its spec."""
    for _ in range(TRIES):
        values = draw(space, rng, kind)
        try:
            return values, spec_from_values(space, values, name=name)
        except InfeasiblePoint:
            continue
    raise SupernetError(f"no {kind} point of space '{space.name}' passed its rules in {TRIES} draws")


def sandwich(space: SearchSpace, seed: int, step: int, n_random: int) -> List[Tuple[str, Spec]]:
    """The subnets of one step, largest first (the teacher of the others)."""
    rng = random.Random(seed * 1_000_003 + step)
    kinds = ["largest", "smallest"] + ["random"] * n_random
    return [(kind, feasible(space, rng, kind, f"{space.name}_{kind}")[1]) for kind in kinds]


def covering(space: SearchSpace, key_set: Callable[[Spec], FrozenSet[str]], seed: int = 0,
             n_random: int = 2) -> List[Spec]:
    """Points whose union holds every path key of the space at its largest shape.

    Bases: largest points whose nominal choices are cycled (base ``r`` takes choice ``r`` of each, so every
    mixer appears in every stage) and ``n_random`` with random ones. From each base: every single choice
    changed in turn, then every pair of the numeric changes that alter the key set (``key_set`` of a spec:
    a kernel size, a width multiplier that makes a patch embedding depthwise), since such keys reach their
    largest shape only where the other choices stay at their largest."""
    rng = random.Random(seed)
    nominal = [p for p in space.params if not ordered(choices(p.distribution))]
    cycles = max((len(choices(p.distribution)) for p in nominal), default=1)
    bases = []
    for r in range(cycles):
        base = draw(space, rng, "largest")
        base.update({p.name: choices(p.distribution)[r % len(choices(p.distribution))] for p in nominal})
        bases.append(base)
    bases += [draw(space, rng, "largest") for _ in range(n_random)]

    def spec(values):
        try:
            return spec_from_values(space, values, name=f"{space.name}_cover")
        except InfeasiblePoint:
            return None

    out: List[Spec] = []
    for base in bases:
        base_spec = spec(base)
        base_keys = key_set(base_spec) if base_spec is not None else None
        changers = []
        for p in space.params:
            cs = choices(p.distribution)
            for c in cs:
                s = spec({**base, p.name: c})
                if s is None:
                    continue
                out.append(s)
                if ordered(cs) and c != base[p.name] and (base_keys is None or key_set(s) != base_keys):
                    changers.append((p.name, c))
        for (a, ca), (b, cb) in itertools.combinations(changers, 2):
            if a != b:
                s = spec({**base, a: ca, b: cb})
                if s is not None:
                    out.append(s)
    if not out:
        raise SupernetError(f"space '{space.name}' has no point that passes its rules")
    return out
