"""Power of the claims' t-tests: the smallest difference our seeds detect, the seeds a test needs.

A t statistic whose numerator has mean δ is noncentral t with noncentrality λ = δ/se:
``T = (Z + λ)/S`` with ``Z`` standard normal and ``S = √(V/ν)``, ``V`` chi-square on ν degrees of
freedom. Its distribution function is computed here by one integral over ``S``,

    P(T ≤ t) = ∫ Φ(t·s − λ) g_ν(s) ds,   P(T > t) = ∫ Φ(λ − t·s) g_ν(s) ds,

(``g_ν`` the density of ``S``; :func:`nct_cdf`, :func:`nct_sf`) with ``scipy.integrate.quad``.
``scipy.stats.nct`` is not used: it returns NaN in the lower tail at the small df and large
noncentralities our α/m levels reach (df 3–9, λ 7–25), and the normal limit that stood in for it
made power jump and the root finders land on the jump. ``tests/test_power.py`` checks the
integral against Monte Carlo there.

The spreads are the ones we observed (a plug-in estimate: with 3–5 seeds they are themselves
uncertain). statsmodels, which has ``TTestPower``, is not a dependency.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

from .stats import se_df_vs_runs

#: the power asked of a claim's test
POWER = 0.80
#: seeds per side beyond which "needs more" is all we say
MAX_SEEDS = 1000
#: probability left out in each tail of S's range (the integral's truncation error is at most twice this)
_TAIL = 1e-14


def _log_density_s(s: float, df: float) -> float:
    """log g_ν(s), the density of S = √(V/ν): g(s) = 2νs · f_χ²(νs²; ν)."""
    v = df * s * s
    return (math.log(2 * df * s) + (df / 2 - 1) * math.log(v) - v / 2 - (df / 2) * math.log(2)
            - math.lgamma(df / 2))


def _phi(x: float) -> float:
    """Standard normal distribution function (erfc keeps both tails accurate)."""
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _integral(f: Callable[[float], float], df: float, kink: float | None) -> float:
    """∫ f(s) g_ν(s) ds by adaptive quadrature over S's range up to a 1e-14 tail on each side."""
    from scipy import integrate, stats

    low = math.sqrt(float(stats.chi2.ppf(_TAIL, df)) / df)
    high = math.sqrt(float(stats.chi2.isf(_TAIL, df)) / df)
    points = [x for x in (1.0, kink) if x is not None and low < x < high]
    value, _ = integrate.quad(lambda s: f(s) * math.exp(_log_density_s(s, df)), low, high, points=points or None,
                              epsabs=1e-12, epsrel=1e-10, limit=400)
    return value


@lru_cache(maxsize=256)
def _mass(df: float) -> float:
    """∫ g_ν over the same range: 1 up to the log-density's rounding (1e-8 at ν = 1e7)."""
    return _integral(lambda s: 1.0, df, None)


def _expect(f: Callable[[float], float], df: float, kink: float | None) -> float:
    """E[f(S)], normalised by :func:`_mass` (absolute error about 1e-10; tiny tails are not relative-exact)."""
    return min(1.0, max(0.0, _integral(f, df, kink) / _mass(float(df))))


def nct_cdf(t: float, df: float, ncp: float) -> float:
    """P(T ≤ t) for the noncentral t with ``df`` degrees of freedom and noncentrality ``ncp``."""
    return _expect(lambda s: _phi(t * s - ncp), df, ncp / t if t else None)


def nct_sf(t: float, df: float, ncp: float) -> float:
    """P(T > t), integrated directly (no 1 − cdf cancellation)."""
    return _expect(lambda s: _phi(ncp - t * s), df, ncp / t if t else None)


def power(delta: float, se: float, df: float, level: float) -> float:
    """Probability that a two-sided t-test at ``level`` rejects when the true difference is ``delta``:
    ``P(T > c) + P(T < −c)``, ``c = t⁻¹(1 − level/2; df)``, T noncentral t with λ = delta/se."""
    from scipy import stats

    crit = float(stats.t.ppf(1 - level / 2, df))
    return nct_sf(crit, df, delta / se) + nct_cdf(-crit, df, delta / se)


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


def exclusion_power(gap: float, n: int, level: float, sd_diff: float = math.nan, sd_a: float = math.nan,
                    sd_b: float = math.nan, k: float = math.inf) -> float:
    """Power of the one-sided exclusion test (:func:`.verdicts.exclusion_p`) with ``n`` pairs (paired)
    or ``n`` seeds per side (Welch) when our true difference lies ``gap`` below the paper's margin.

    The test divides ``diff − margin`` by ``se_k`` (our se and the paper's ``k``-run noise,
    :func:`.stats.se_df_vs_runs`) and rejects below ``−c``, ``c = t⁻¹(1 − level; df)``. Since
    ``(diff − margin)/se`` is noncentral t with λ = −gap/se, the power is ``P(T < −c·se_k/se)``:
    exact when paired, the usual noncentral-t approximation for Welch.
    """
    from scipy import stats

    se, _ = se_df_vs_runs(n, n, sd_diff, sd_a, sd_b)
    se_k, df = se_df_vs_runs(n, n, sd_diff, sd_a, sd_b, k)
    crit = float(stats.t.ppf(1 - level, df))
    return nct_cdf(-crit * se_k / se, df, -gap / se)


def _spreads_ok(sd_diff: float, sd_a: float, sd_b: float) -> bool:
    spreads = [sd_diff] if not math.isnan(sd_diff) else [sd_a, sd_b]
    return not any(math.isnan(s) for s in spreads) and sum(spreads) > 0


def _fewest(enough: Callable[[int], bool], max_seeds: int) -> float:
    """The first n in 2..max_seeds with ``enough(n)`` (monotone in n), ``inf`` if none."""
    if not enough(max_seeds):
        return math.inf
    low, high = 2, max_seeds  # bisect for the first n that is enough
    if enough(low):
        return float(low)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return float(high)


def seeds_needed(delta: float, level: float, sd_diff: float = math.nan, sd_a: float = math.nan,
                 sd_b: float = math.nan, target: float = POWER, max_seeds: int = MAX_SEEDS) -> float:
    """The fewest seeds (pairs when ``sd_diff`` is given, else per side) for which the two-sided test
    detects ``delta`` with probability ``target``: ``inf`` beyond ``max_seeds``, NaN without a
    positive ``delta`` or a spread."""
    if not delta > 0 or not _spreads_ok(sd_diff, sd_a, sd_b):
        return math.nan
    return _fewest(lambda n: power(delta, *se_df_vs_runs(n, n, sd_diff, sd_a, sd_b), level) >= target, max_seeds)


def seeds_to_exclude(gap: float, level: float, sd_diff: float = math.nan, sd_a: float = math.nan,
                     sd_b: float = math.nan, k: float = 1, target: float = POWER,
                     max_seeds: int = MAX_SEEDS) -> float:
    """The fewest seeds (as :func:`seeds_needed`) at which the exclusion test with the paper's
    ``k``-run noise reaches ``target`` power if our true difference lies ``gap`` below the margin.
    ``inf`` beyond ``max_seeds`` — always when ``gap ≤ 0``, and when the paper's own noise hides
    the gap: as n grows the statistic tends to −gap/(σ/√k) (σ one run's sd of a − b), so no number of
    seeds excludes a gap below z₁₋ₗₑᵥₑₗ·σ/√k. NaN without a gap or a spread."""
    if math.isnan(gap) or not _spreads_ok(sd_diff, sd_a, sd_b):
        return math.nan
    if not gap > 0:
        return math.inf
    return _fewest(lambda n: exclusion_power(gap, n, level, sd_diff, sd_a, sd_b, k) >= target, max_seeds)
