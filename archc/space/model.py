"""The compiled form of a search space: its keys, its parameters (Optuna distributions) and its fixed
values, and the error a point that breaks a rule raises."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from ..errors import ArchcError
from ..spec.yamlsrc import PathKey
from .keys import PARTS, STAGE_KEY_TABLE

#: every stage key, in the order a stage's parameters are suggested and listed (the table in keys.py)
STAGE_KEYS = tuple(k.name for k in STAGE_KEY_TABLE)
#: top-level spec keys a space may fix or vary (scalars only)
SPEC_KEYS = ("input_size", "num_classes", "in_chans", "activation", "norm", "layer_scale_init", "drop_path_rate",
             "drop_rate")
#: spec fields that are training settings, not architecture: a start point may differ from the
#: space's base in these (e.g. Apple trains SA36/MA36 with layer scale 1e-6)
TRAINING_FIELDS = ("layer_scale_init", "drop_path_rate", "drop_rate")
POS_ENC_CHOICES = next(p for p in PARTS if p.field == "pos_enc").choices()
_TOP_KEYS = ("name", "description", "base", "spec", "shared", "stage_defaults", "stages", "rules", "start_from")
_RULE_KEYS = {
    "attention_in_last": "attention only in the last k stages (shapes the mixer choices)",
    "widths_non_decreasing": "every stage at least as wide as the one before (checked per point)",
}

Target = Tuple[Optional[int], str]  # (stage index or None for the whole spec, space key)


class InfeasiblePoint(ArchcError):
    """A point of a space breaks a rule (of the space or of the spec language); it is not built."""

    def __init__(self, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__("infeasible point: " + "; ".join(self.reasons))


@dataclass(frozen=True)
class Param:
    """One Optuna parameter: its name, distribution and where its value goes in the spec."""

    name: str
    distribution: BaseDistribution
    targets: Tuple[Target, ...]
    origin: PathKey  # key path in the space file, for messages

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(self.name, d.choices)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(self.name, d.low, d.high, step=d.step, log=d.log)

    def canonical(self, value: Any) -> Any:
        """The distribution's own representation of ``value`` (``2.0`` -> choice ``2``), or raise ValueError."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            for c in d.choices:
                if (c is value) if isinstance(c, bool) or isinstance(value, bool) else (c == value):
                    return c
            raise ValueError(f"{value!r} is not one of {list(d.choices)}")
        if isinstance(d, IntDistribution):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool) and d._contains(value):
                return value
            raise ValueError(f"{value!r} is not in {d.low}..{d.high} step {d.step}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and d._contains(float(value)):
            return float(value)
        raise ValueError(f"{value!r} is not in {d.low}..{d.high}")


@dataclass(frozen=True)
class SearchSpace:
    """A compiled search space: the base spec, the parameters, the fixed values and the rules."""

    name: str
    file: str
    base: Dict[str, Any]                      # the base spec, every key explicit (spec_to_dict)
    params: Tuple[Param, ...]
    fixed: Dict[Target, Any]
    rules: Dict[str, Any]
    start_from: Tuple[str, ...] = ()           # spec files to enqueue first (resolved paths)
    description: str = ""

    @property
    def n_stages(self) -> int:
        return len(self.base["stages"])

    def distributions(self) -> Dict[str, BaseDistribution]:
        return {p.name: p.distribution for p in self.params}

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def fingerprint(self) -> str:
        """A hash of everything that decides which spec a point maps to (not the file's layout)."""
        blob = json.dumps({
            "base": self.base,
            "params": [(p.name, optuna.distributions.distribution_to_json(p.distribution), p.targets)
                       for p in self.params],
            "fixed": sorted((repr(k), v) for k, v in self.fixed.items()),
            "rules": self.rules,
        }, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def size(self) -> float:
        """Number of distinct points (inf for float ranges)."""
        n = 1.0
        for p in self.params:
            d = p.distribution
            if isinstance(d, CategoricalDistribution):
                n *= len(d.choices)
            elif isinstance(d, IntDistribution):
                n *= (d.high - d.low) // d.step + 1
            else:
                return math.inf
        return n


