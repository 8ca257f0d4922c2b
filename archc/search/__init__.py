"""Latency-constrained architecture search on Optuna, and ablation tables.

    space = load_space("search/fastvit.yaml")              # YAML -> static Optuna space
    spec = spec_from_trial(optuna.trial.FixedTrial(point), space)
    run = run_search(SearchConfig(latency_ms=1.5))          # what `archc search` does

See search/README.md for the space format, the rules and the trial accounting.
"""
from .census import Census, census
from .runner import SearchConfig, SearchRun, run_search
from ..space import (InfeasiblePoint, SearchSpace, load_space, point_from_spec, spec_from_trial, spec_from_values,
                    start_points)

__all__ = ["Census", "InfeasiblePoint", "SearchConfig", "SearchRun", "SearchSpace", "census", "load_space",
           "point_from_spec", "run_search", "spec_from_trial", "spec_from_values", "start_points"]
