"""Statistics of the report: a mean's 95% confidence interval, two-sample comparisons, Holm.

Everything is scipy.stats' t machinery; nothing here knows about tables or claims.

- :func:`mean_ci`: Student-t interval of one configuration's mean over seeds.
- :func:`compare`: ``a − b`` with its 95% CI and a two-sided p-value. **Paired** t-test by seed when
  both sides hold the same seeds (at least 2): in this project a seed fixes the initial weights and
  the order of every batch (``train.seed_everything``, ``augment.epoch_seed``), so runs sharing a seed
  share those random draws and the pairing is real. Otherwise **Welch's** t-test (unequal variances).
- :func:`holm`: Holm's step-down adjustment. scipy has no Holm (``false_discovery_control`` is
  Benjamini–Hochberg/Yekutieli) and statsmodels is not a dependency, so it is the few lines below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(mean, low, high)``; the interval is NaN with fewer than 2 values or zero spread is kept
    (a zero-width interval for identical values)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    sem = float(x.std(ddof=1)) / math.sqrt(len(x))
    if sem == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def paper_vs_ci(paper: float | None, low: float, high: float) -> str:
    """Where the paper's value lies against our interval: ``consistent`` (inside), ``ours lower``
    (paper above it), ``ours higher`` (paper below it); ``""`` without a paper value or an interval."""
    if paper is None or any(math.isnan(v) for v in (paper, low, high)):
        return ""
    if paper > high:
        return "ours lower"
    if paper < low:
        return "ours higher"
    return "consistent"


@dataclass(frozen=True)
class Comparison:
    """``a − b``: sizes, means, the difference, its 95% CI, the two-sided p-value and the test."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # "paired t (seeds 0,1,2)" | "Welch t" | "" when untestable
    reason: str = ""  # why there is no test


def compare(a: Sequence[float], b: Sequence[float], seeds_a: Sequence[int] | None = None,
            seeds_b: Sequence[int] | None = None, confidence: float = CONFIDENCE) -> Comparison:
    """Compare the means of ``a`` and ``b`` (see the module docstring for paired vs Welch)."""
    from scipy import stats

    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = len(xa), len(xb)
    mean_a = float(xa.mean()) if n_a else math.nan
    mean_b = float(xb.mean()) if n_b else math.nan
    base = dict(n_a=n_a, n_b=n_b, mean_a=mean_a, mean_b=mean_b, diff=mean_a - mean_b)
    nan = dict(ci_low=math.nan, ci_high=math.nan, p_value=math.nan, test="")
    if n_a < 2 or n_b < 2:
        small = [f"n = {n} on side {side}" for side, n in (("a", n_a), ("b", n_b)) if n < 2]
        return Comparison(**base, **nan, reason=" and ".join(small) + ": no variance estimate, no test")
    paired = (seeds_a is not None and seeds_b is not None and len(set(seeds_a)) == n_a
              and sorted(seeds_a) == sorted(seeds_b))
    if paired:
        order_a, order_b = np.argsort(seeds_a), np.argsort(seeds_b)
        xa, xb = xa[order_a], xb[order_b]
        if np.all(xa - xb == (xa - xb)[0]):  # constant difference: t undefined
            return Comparison(**base, **nan, reason="identical paired differences: no variance, no test")
        res = stats.ttest_rel(xa, xb)
        test = f"paired t (seeds {','.join(str(s) for s in sorted(seeds_a))})"
    else:
        if xa.std() == 0 and xb.std() == 0:
            return Comparison(**base, **nan, reason="no spread on either side: no test")
        res = stats.ttest_ind(xa, xb, equal_var=False)
        test = "Welch t"
    ci = res.confidence_interval(confidence)
    return Comparison(**base, ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(res.pvalue),
                      test=test)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaN stays NaN and is not counted in the family).

    Sorted ascending p₍₁₎ ≤ … ≤ p₍ₘ₎: adj₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1) p₍ⱼ₎).
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out.tolist()
