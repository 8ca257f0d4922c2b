"""Latency-constrained architecture search on Optuna, and ablation tables.

    space = load_space("search/fastvit.yaml")              # YAML -> static Optuna space
    spec = spec_from_trial(optuna.trial.FixedTrial(point), space)
    run = run_search(SearchConfig(latency_ms=1.5))          # what `archc search` does

See search/README.md for the space format, the rules and the trial accounting. The names import on first use
(``archc.lazy``), so the CLI can read this package's constants without loading Optuna and torch.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

_PUBLIC = {"Census": "census", "census": "census", "SearchConfig": "runner", "SearchRun": "runner",
           "run_search": "runner"}
_SPACE = ("InfeasiblePoint", "SearchSpace", "load_space", "point_from_spec", "spec_from_trial", "spec_from_values",
          "start_points")

__all__ = sorted([*_PUBLIC, *_SPACE])

_attr, __dir__ = lazy_attributes(__name__, _PUBLIC, globals())


def __getattr__(name: str):
    if name in _SPACE:  # the space language lives in archc.space; kept importable from here
        from .. import space
        globals()[name] = value = getattr(space, name)
        return value
    return _attr(name)


if TYPE_CHECKING:
    from ..space import (InfeasiblePoint, SearchSpace, load_space, point_from_spec, spec_from_trial,
                         spec_from_values, start_points)
    from .census import Census, census
    from .runner import SearchConfig, SearchRun, run_search
