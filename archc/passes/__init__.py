"""Reparameterization as a compiler pass over torch.fx graphs (rules as data, weight algebra as pure functions)."""
from .reparam import LEVELS, apply_rules, matching_rules, reparameterize
from .rules import RULES, Rule
from .verify import Equivalence, check_equivalence, constant_multiplies, invariant_violations

__all__ = ["LEVELS", "RULES", "Rule", "Equivalence", "apply_rules", "check_equivalence", "constant_multiplies",
           "invariant_violations", "matching_rules", "reparameterize"]
