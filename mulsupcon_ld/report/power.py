"""Power of the claims' t-tests: the smallest difference our seeds detect, the seeds a difference needs.

scipy has the noncentral t distribution but no power routine (statsmodels, which has
``TTestPower``, is not a dependency), so the few lines below are written by hand on
``scipy.stats.nct``. A two-sided t-test at ``level`` with ``df`` degrees of freedom rejects when
``|t| > c = t⁻¹(1 − level/2; df)``; with a true difference δ and standard error ``se`` the statistic
is noncentral t with noncentrality δ/se, so the power is ``P(T > c) + P(T < −c)``. The spreads are
the ones we observed (a plug-in estimate: with 3–5 seeds they are themselves uncertain).
"""

from __future__ import annotations

import math

#: the power asked of a claim's test
POWER = 0.80
#: seeds per side beyond which "needs more" is all we say
MAX_SEEDS = 1000


def power(delta: float, se: float, df: float, level: float) -> float:
    """Probability that a two-sided t-test at ``level`` rejects when the true difference is ``delta``."""
    from scipy import stats

    crit = float(stats.t.ppf(1 - level / 2, df))
    ncp = delta / se
    p = float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
    if math.isnan(p):  # scipy's nct fails far in the tails (large df and ncp): the normal limit is exact there
        p = float(stats.norm.sf(crit - ncp) + stats.norm.cdf(-crit - ncp))
    return p


def detectable_difference(se: float, df: float, level: float, target: float = POWER) -> float:
    """The smallest positive true difference detected with probability ``target`` (NaN without an
    estimate of the standard error)."""
    from scipy import optimize

    if not (se > 0 and df > 0) or any(math.isnan(x) for x in (se, df)):
        return math.nan
    high = se
    while power(high, se, df, level) < target:  # power grows with δ: bracket, then solve
        high *= 2
    return float(optimize.brentq(lambda d: power(d, se, df, level) - target, 0.0, high, xtol=se * 1e-9))


def _se_df(n: int, sd_diff: float, sd_a: float, sd_b: float) -> tuple[float, float]:
    """Standard error and df with ``n`` pairs (paired) or ``n`` seeds per side (Welch)."""
    if not math.isnan(sd_diff):
        return sd_diff / math.sqrt(n), n - 1
    va, vb = sd_a ** 2 / n, sd_b ** 2 / n
    return math.sqrt(va + vb), (va + vb) ** 2 / (va ** 2 / (n - 1) + vb ** 2 / (n - 1))


def seeds_needed(delta: float, level: float, sd_diff: float = math.nan, sd_a: float = math.nan,
                 sd_b: float = math.nan, target: float = POWER, max_seeds: int = MAX_SEEDS) -> float:
    """The fewest seeds (pairs when ``sd_diff`` is given, else per side) for which the test detects
    ``delta`` with probability ``target``: ``inf`` beyond ``max_seeds``, NaN without a positive
    ``delta`` or a spread."""
    spreads = [sd_diff] if not math.isnan(sd_diff) else [sd_a, sd_b]
    if not delta > 0 or any(math.isnan(s) for s in spreads) or not sum(spreads) > 0:
        return math.nan

    def enough(n: int) -> bool:
        return power(delta, *_se_df(n, sd_diff, sd_a, sd_b), level) >= target

    if not enough(max_seeds):
        return math.inf
    low, high = 2, max_seeds  # power grows with n: bisect for the first n that is enough
    if enough(low):
        return float(low)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return float(high)
