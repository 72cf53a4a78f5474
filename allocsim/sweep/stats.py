"""Mean, standard deviation and a 95 % confidence interval per point and metric.

Over a point's replicates (runs that have the metric; NaN values, such as the first
failure of a caller that never failed, are left out and counted):

``t``
    Student's t interval: ``mean ± t(0.975, n-1) · s / √n``, with ``s`` the sample
    standard deviation (``ddof=1``). The default.
``bootstrap``
    For a rate (:func:`allocsim.sweep.metrics.is_rate`) whose mean is within 0.05 of 0
    or 1, or whose t interval would cross 0 or 1: the 2.5th and 97.5th percentiles of
    the means of 10,000 resamples with replacement, drawn from a generator seeded by the
    point and the metric's name (the same interval every time). With few replicates it
    is narrow (with 3, about their range): read it with ``n``.
``none``
    Fewer than two values: no interval.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from allocsim.sweep.metrics import is_rate

CONFIDENCE = 0.95
NEAR_BOUND = 0.05
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    """A metric's statistics at one point."""

    n: int
    missing: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    method: str


def interval(values: np.ndarray, name: str, point: int) -> Interval:
    """The statistics of one metric's values at one point (see the module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    ok = values[~np.isnan(values)]
    n, missing = len(ok), len(values) - len(ok)
    if n == 0:
        return Interval(0, missing, math.nan, math.nan, math.nan, math.nan, "none")
    mean = float(ok.mean())
    if n < 2:
        return Interval(n, missing, mean, math.nan, math.nan, math.nan, "none")
    std = float(ok.std(ddof=1))
    half = float(sps.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * std / math.sqrt(n)
    if is_rate(name) and (mean <= NEAR_BOUND or mean >= 1 - NEAR_BOUND
                          or mean - half < 0 or mean + half > 1):
        seed = int.from_bytes(hashlib.sha256(f"{point}:{name}".encode()).digest()[:8], "big")
        rng = np.random.default_rng(seed)
        means = rng.choice(ok, size=(BOOTSTRAP_RESAMPLES, n), replace=True).mean(axis=1)
        lo, hi = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
        return Interval(n, missing, mean, std, float(lo), float(hi), "bootstrap")
    return Interval(n, missing, mean, std, mean - half, mean + half, "t")


def summarize(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per point and metric from the tidy table of :mod:`allocsim.sweep.runner`.

    ``rows`` has ``point``, the swept ``keys``, ``metric`` and ``value``; the result has
    the point, its keys, the metric, and ``n``, ``missing``, ``mean``, ``std``,
    ``ci_low``, ``ci_high``, ``method``.
    """
    out = []
    for (point, metric), group in rows.groupby(["point", "metric"], sort=True):
        iv = interval(group["value"].to_numpy(), str(metric), int(point))
        first = group.iloc[0]
        out.append({"point": int(point), **{k: first[k] for k in keys}, "metric": metric,
                    "n": iv.n, "missing": iv.missing, "mean": iv.mean, "std": iv.std,
                    "ci_low": iv.ci_low, "ci_high": iv.ci_high, "method": iv.method})
    columns = ["point", *keys, "metric", "n", "missing", "mean", "std", "ci_low", "ci_high",
               "method"]
    return pd.DataFrame(out, columns=columns)
