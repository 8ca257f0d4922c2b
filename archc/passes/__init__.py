"""Reparameterization as a compiler pass over torch.fx graphs (rules as data, weight algebra as pure functions)."""
from .engine import apply_rules, matching_rules
from .reparam import LEVELS, reparameterize
from .rules import RULES, Rule
from .verify import Equivalence, check_equivalence, constant_multiplies, invariant_violations

__all__ = ["LEVELS", "RULES", "Rule", "Equivalence", "apply_rules", "check_equivalence", "constant_multiplies",
           "invariant_violations", "matching_rules", "reparameterize"]
