"""Rank statistics (numpy only): Kendall's tau-b and Spearman's rho, with ties handled.

Used to judge zero-cost proxies against published accuracy and latency models against published
latency. Written out because scipy is not an archc dependency; tests check them on known rankings.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)); NaN if undefined."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("kendall_tau_b needs two 1-D sequences of equal length")
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    s = float(np.sum(da * db))
    n_a, n_b = float(np.sum(da != 0)), float(np.sum(db != 0))
    if n_a == 0 or n_b == 0:
        return float("nan")
    return float(s / np.sqrt(n_a * n_b))


def rankdata(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties get the average of the ranks they span (as scipy's ``rankdata``)."""
    a = np.asarray(x, dtype=float)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=float)
    sorted_a = a[order]
    start = 0
    for k in range(1, len(a) + 1):
        if k == len(a) or sorted_a[k] != sorted_a[start]:
            ranks[order[start:k]] = (start + k + 1) / 2.0  # mean of ranks start+1 .. k
            start = k
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks; NaN if a ranking is constant."""
    ra, rb = rankdata(x), rankdata(y)
    if len(ra) != len(rb):
        raise ValueError("spearman_rho needs two sequences of equal length")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    return float(np.sum(ra * rb) / den) if den > 0 else float("nan")


def inversions(pred: Sequence[float], truth: Sequence[float]) -> int:
    """Pairs whose (strictly different) true values ``pred`` orders the other way round or ties."""
    a, b = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    i, j = np.triu_indices(len(a), k=1)
    db = np.sign(b[i] - b[j])
    da = np.sign(a[i] - a[j])
    return int(np.sum((db != 0) & (da != db)))
