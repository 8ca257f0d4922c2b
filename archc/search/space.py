"""Moved to ``archc.space`` (the space language serves calibration and slimming as well as the search);
every public name stays importable here."""
from ..space import *  # noqa: F401,F403
from ..space import __all__  # noqa: F401
