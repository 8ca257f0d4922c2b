"""Moved to ``archc.rankstats`` (rank statistics serve proxies and latency models alike); kept importable."""
from ..rankstats import inversions, kendall_tau_b, rankdata, spearman_rho  # noqa: F401
