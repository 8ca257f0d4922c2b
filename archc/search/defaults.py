"""The search's user-facing choices and defaults, in a module without Optuna or torch, so that `archc search
--help` lists them without loading either (``sampler`` and ``storage`` use them)."""

SAMPLERS = ("tpe", "nsga2", "random")
DEFAULT_STORAGE = "sqlite:///runs/search.db"
