"""The spec language: YAML stage layouts -> frozen, checked ``Spec`` objects."""
from .dump import arch_key, save_spec, spec_to_dict, spec_to_yaml
from .jsonschema import spec_json_schema
from .load import load_spec, parse_key_path, parse_override
from .model import Spec, StageSpec
from .registry import ACTIVATIONS, MIXERS, NORMS
from .rules import sized_to_input, stage_resolutions

__all__ = [
    "Spec", "StageSpec", "arch_key",
    "load_spec", "parse_key_path", "parse_override", "save_spec", "spec_to_dict", "spec_to_yaml",
    "spec_json_schema", "sized_to_input", "stage_resolutions", "MIXERS", "ACTIVATIONS", "NORMS",
]
