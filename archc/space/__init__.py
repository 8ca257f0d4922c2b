"""The space language: search spaces, a YAML file under ``search/`` compiled to a *static* Optuna space.

A space names a base spec (everything it does not vary comes from there), then per stage and for
the whole spec which keys vary. Each key is fixed (a scalar), a choice (a list) or a range
(``{low, high, step, log}``). Every trial suggests the same parameters with the same distributions
(inactive ones included, e.g. ``pos_enc_kernel`` of a stage without positional encoding), so
multivariate TPE and NSGA-II see one fixed space.

Rules are handled in one of two ways (documented in search/README.md):

- rules decidable per key *shape the choices* when the space is compiled: ``attention_in_last: k``
  removes ``attention`` from the mixer choices of the other stages; a non-integer ``width_mult`` in
  a stage whose patch embedding is ``replk`` (a grouped conv) can never be valid and is an error;
- rules that depend on several parameters (``widths_non_decreasing``, whole attention heads,
  replk widths that are multiples of the previous width, ...) are checked per point: a violating
  point raises :class:`InfeasiblePoint`; the search records such a trial as PRUNED with a positive
  ``rules`` constraint (so the samplers learn to avoid the region) without building it.
"""
from .compile import compile_space, load_space, resolve_space_path
from .match import PointMatch, describe_point, point_from_spec, start_points
from .model import (POS_ENC_CHOICES, SPEC_KEYS, STAGE_KEYS, TRAINING_FIELDS, InfeasiblePoint, Param, SearchSpace)
from .points import assemble, key_values, spec_from_trial, spec_from_values, suggest_values

__all__ = ["compile_space", "load_space", "resolve_space_path", "PointMatch", "describe_point", "point_from_spec",
           "start_points", "POS_ENC_CHOICES", "SPEC_KEYS", "STAGE_KEYS", "TRAINING_FIELDS", "InfeasiblePoint", "Param",
           "SearchSpace", "assemble", "key_values", "spec_from_trial", "spec_from_values", "suggest_values"]
