"""Rank statistics: Kendall's tau-b and Spearman's rho (scipy's, ties handled), and inversion counts.

Generic: they judge zero-cost proxies (against published and trained accuracy) and latency models (against
measured latency). scipy computes them; ``inversions`` (pairs a prediction orders wrongly) is archc's own count.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from scipy import stats


def _pair(x: Sequence[float], y: Sequence[float], what: str):
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"{what} needs two 1-D sequences of equal length")
    return a, b


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``); NaN if a ranking is constant."""
    a, b = _pair(x, y, "kendall_tau_b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN, which is the answer
        return float(stats.kendalltau(a, b, variant="b").statistic)


def rankdata(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties get the average of the ranks they span (``scipy.stats.rankdata``)."""
    return stats.rankdata(np.asarray(x, dtype=float), method="average")


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (``scipy.stats.spearmanr``, tie-averaged ranks); NaN if a ranking is constant."""
    a, b = _pair(x, y, "spearman_rho")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a, b).statistic)


def inversions(pred: Sequence[float], truth: Sequence[float]) -> int:
    """Pairs whose (strictly different) true values ``pred`` orders the other way round or ties."""
    a, b = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    i, j = np.triu_indices(len(a), k=1)
    db = np.sign(b[i] - b[j])
    da = np.sign(a[i] - a[j])
    return int(np.sum((db != 0) & (da != db)))
