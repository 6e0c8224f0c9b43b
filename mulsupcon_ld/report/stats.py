"""Statistics of the report: a mean's 95% confidence interval, two-sample comparisons, Holm.

Everything is scipy.stats' t machinery; nothing here knows about tables or claims.

- :func:`mean_ci`: Student-t interval of one configuration's mean over seeds.
- :func:`compare`: ``a − b`` with its 95% CI and a two-sided p-value. **Paired** t-test on the
  seeds both sides hold (at least 2; the other seeds are left out): in this project a seed fixes the
  initial weights and the order of every batch (``train.seed_everything``, ``augment.epoch_seed``),
  so runs sharing a seed share those random draws, the two sides are dependent and the pairing is
  real. **Welch's** t-test (unequal variances) only for disjoint seed sets (or no seeds given);
  exactly one shared seed is untestable (dependent, yet no pairs to estimate a variance from), and so
  is a difference whose spread (one run's sd of a − b) is below :data:`SPREAD_FLOOR`.
- :func:`se_df_vs_runs`: standard error and degrees of freedom of our difference minus an
  independent mean of ``k`` runs with our spread (the paper's Δ, :mod:`.verdicts`).
- :func:`holm`, :func:`weighted_holm`: Holm's step-down adjustment, equal or weighted. scipy has no
  Holm (``false_discovery_control`` is Benjamini–Hochberg/Yekutieli) and statsmodels is not a
  dependency, so it is the few lines below.
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
    """``a − b`` over the seeds the test used: sizes, means, the difference, its 95% CI, the
    two-sided p-value, the test, and what power and one-sided tests need (standard error, degrees
    of freedom, the spreads)."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # "paired t (seeds 0,1,2)" | "paired t on the 3 common seeds (…)" | "Welch t" | "" when untestable
    reason: str = ""  # why there is no test
    se: float = math.nan  # standard error of diff
    df: float = math.nan  # degrees of freedom of the t reference
    sd_a: float = math.nan  # sample standard deviations (Welch)
    sd_b: float = math.nan
    sd_diff: float = math.nan  # standard deviation of the paired differences (paired)

    @property
    def paired(self) -> bool:
        return self.test.startswith("paired")


#: spreads below this fraction of the values' magnitude are rounding noise, not variance
#: ([.1, .1, .0999999999999999] is a constant difference)
RELATIVE_TOLERANCE = 1e-9
#: the smallest standard deviation of one run's difference a − b that is tested (metric units; the
#: metrics live in [0, 1] and the paper prints 3 decimals): below a tenth of the printed resolution
#: the runs are near-deterministic, the t statistic divides by what is left of rounding and
#: nondeterministic kernels, and its p-value (1e-11 for spreads of 1e-6) says nothing about seeds
SPREAD_FLOOR = 1e-4


def _no_spread(x: np.ndarray, scale: float) -> bool:
    return float(np.ptp(x)) <= RELATIVE_TOLERANCE * max(scale, np.finfo(float).tiny)


def _below_floor(sd: float) -> str:
    """Why a run's spread ``sd`` of a − b is too small to test, or ``""``."""
    return f"sd of a − b {sd:.2g} < {SPREAD_FLOOR:g}: near-constant difference, no test" if sd < SPREAD_FLOOR else ""


def compare(a: Sequence[float], b: Sequence[float], seeds_a: Sequence[int] | None = None,
            seeds_b: Sequence[int] | None = None, confidence: float = CONFIDENCE) -> Comparison:
    """Compare the means of ``a`` and ``b`` (see the module docstring for paired vs Welch)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(xa) < 2 or len(xb) < 2:
        return _untestable(xa, xb, " and ".join(f"n = {len(x)} on side {side}" for side, x in (("a", xa), ("b", xb))
                                                if len(x) < 2) + ": no variance estimate, no test")
    if seeds_a is None or seeds_b is None:
        return _welch(xa, xb, confidence)
    common = sorted(set(seeds_a) & set(seeds_b))
    if not common:
        return _welch(xa, xb, confidence)
    if len(common) < 2:  # shared runs make the sides dependent, one pair gives no variance
        return _untestable(xa, xb, f"only seed {common[0]} on both sides: too few to pair, not independent")
    by_a = dict(zip(seeds_a, xa))
    by_b = dict(zip(seeds_b, xb))
    pa, pb = np.array([by_a[s] for s in common]), np.array([by_b[s] for s in common])
    seeds = ",".join(map(str, common))
    if len(common) == len(xa) == len(xb):
        test = f"paired t (seeds {seeds})"
    else:
        test = f"paired t on the {len(common)} common seeds ({seeds}; of {len(xa)} / {len(xb)})"
    return _paired(pa, pb, test, confidence)


def _base(xa: np.ndarray, xb: np.ndarray) -> dict:
    mean_a = float(xa.mean()) if len(xa) else math.nan
    mean_b = float(xb.mean()) if len(xb) else math.nan
    return dict(n_a=len(xa), n_b=len(xb), mean_a=mean_a, mean_b=mean_b, diff=mean_a - mean_b)


def _untestable(xa: np.ndarray, xb: np.ndarray, reason: str, test: str = "") -> Comparison:
    return Comparison(**_base(xa, xb), ci_low=math.nan, ci_high=math.nan, p_value=math.nan, test=test, reason=reason)


def _scale(xa: np.ndarray, xb: np.ndarray) -> float:
    return float(max(np.abs(xa).max(), np.abs(xb).max()))


def _paired(xa: np.ndarray, xb: np.ndarray, test: str, confidence: float) -> Comparison:
    from scipy import stats

    d = xa - xb
    if _no_spread(d, _scale(xa, xb)):  # constant difference: t undefined
        return _untestable(xa, xb, "identical paired differences: no variance, no test")
    sd = float(d.std(ddof=1))
    if _below_floor(sd):
        return _untestable(xa, xb, _below_floor(sd))
    res = stats.ttest_rel(xa, xb)
    ci = res.confidence_interval(confidence)
    return Comparison(**_base(xa, xb), ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(res.pvalue),
                      test=test, se=sd / math.sqrt(len(d)), df=float(res.df), sd_diff=sd)


def _welch(xa: np.ndarray, xb: np.ndarray, confidence: float) -> Comparison:
    from scipy import stats

    scale = _scale(xa, xb)
    if _no_spread(xa, scale) and _no_spread(xb, scale):
        return _untestable(xa, xb, "no spread on either side: no test")
    sd_a, sd_b = float(xa.std(ddof=1)), float(xb.std(ddof=1))
    if _below_floor(math.hypot(sd_a, sd_b)):  # one run of a − b has variance sd_a² + sd_b²
        return _untestable(xa, xb, _below_floor(math.hypot(sd_a, sd_b)))
    res = stats.ttest_ind(xa, xb, equal_var=False)
    ci = res.confidence_interval(confidence)
    return Comparison(**_base(xa, xb), ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(res.pvalue),
                      test="Welch t", se=math.sqrt(sd_a ** 2 / len(xa) + sd_b ** 2 / len(xb)), df=float(res.df),
                      sd_a=sd_a, sd_b=sd_b)


def se_df_vs_runs(n_a: int, n_b: int, sd_diff: float = math.nan, sd_a: float = math.nan, sd_b: float = math.nan,
                  k: float = math.inf) -> tuple[float, float]:
    """Standard error and degrees of freedom of ``diff − Δ``: ``diff`` our difference of the means,
    ``Δ`` an independent mean of ``k`` runs of a − b with our per-run spread (``k = inf``: Δ exact,
    our own test's se and df).

    - Paired (``sd_diff`` given, ``n_a = n_b`` pairs): ``se = sd_diff·√(1/n + 1/k)``, ``df = n − 1``.
      Exact: both terms scale the one variance σ² of a difference, estimated by ``sd_diff²`` on n − 1 df.
    - Welch: ``va = sd_a²(1/n_a + 1/k)``, ``vb = sd_b²(1/n_b + 1/k)`` (one run of a − b has variance
      ``sd_a² + sd_b²``), ``se = √(va + vb)``, Welch–Satterthwaite ``df = (va + vb)² / (va²/(n_a − 1) +
      vb²/(n_b − 1))``: each term still rests on one side's variance estimate only.
    """
    if not math.isnan(sd_diff):
        return sd_diff * math.sqrt(1 / n_a + 1 / k), float(n_a - 1)
    va, vb = sd_a ** 2 * (1 / n_a + 1 / k), sd_b ** 2 * (1 / n_b + 1 / k)
    return math.sqrt(va + vb), (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))


def holm(p_values: Sequence[float], m: int | None = None) -> list[float]:
    """Holm step-down adjusted p-values over a family of ``m`` hypotheses (default: the non-NaN
    p-values). NaN stays NaN: an untested hypothesis of a fixed family counts as p = 1, which ranks
    last and so never changes the others' adjustment beyond the ``m`` in the multipliers.

    Sorted ascending p₍₁₎ ≤ … ≤ p₍ₖ₎ (k tested): adj₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1) p₍ⱼ₎).
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    k = len(idx)
    m = k if m is None else m
    if m < k:
        raise ValueError(f"a family of {m} hypotheses cannot hold {k} p-values")
    if k == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(k)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out.tolist()


def weighted_holm(p_values: Sequence[float], weights: Sequence[float], total: float = 1.0) -> list[float]:
    """Weighted Holm (Holm 1979, Sect. 5) adjusted p-values: hypothesis i gets the share ``weights[i]``
    of α; ``total`` is the weight of the whole family, including hypotheses not listed (they count as
    p = 1, as NaN does). Compare each adjusted p with α: the familywise error rate stays at α under
    any dependence (a closed test of weighted Bonferroni tests).

    Sorted by p/w ascending, with W₍ⱼ₎ = total − the weights sorted before j:
    adj₍ᵢ₎ = max_{j ≤ i} min(1, W₍ⱼ₎ p₍ⱼ₎ / w₍ⱼ₎). Equal weights 1/m give :func:`holm`.
    """
    return holm_with_sequences(p_values, weights, [math.nan] * len(p_values), total)[0]


def holm_with_sequences(first: Sequence[float], weights: Sequence[float], then: Sequence[float],
                        total: float = 1.0) -> tuple[list[float], list[float]]:
    """Weighted Holm where a hypothesis may be followed by a second one that inherits its share:
    slot i tests ``first[i]``; once that is rejected its whole weight passes to ``then[i]`` (NaN: no
    second hypothesis, the weight is released to the other slots, as in Holm). A slot's weight is
    released only when its last hypothesis is rejected. Returns the adjusted p-values of ``first``
    and of ``then`` (NaN where untested), each to be compared with α.

    This is a Bonferroni-based graphical procedure (Bretz et al., Stat. Med. 2009): weights
    ``w/W`` over the slots still holding weight, the edge first → then carrying all of a slot's
    weight and every released weight shared among the remaining slots in proportion to theirs.
    Such procedures are closed tests and keep the familywise error rate at α under any dependence.
    Adjusted p-values by the same sequentially rejective algorithm: repeatedly take the slot with
    the smallest ``p·W/w`` (its current hypothesis), adjusted p = the running maximum of that value.
    """
    p1, w = np.asarray(first, dtype=float), np.asarray(weights, dtype=float)
    p2 = np.asarray(then, dtype=float)
    if not len(p1) == len(w) == len(p2) or (w <= 0).any() or w.sum() > total * (1 + 1e-12):
        raise ValueError("one positive weight per hypothesis, summing to at most the family's total")
    out1, out2 = np.full(len(p1), math.nan), np.full(len(p1), math.nan)
    current = p1.copy()   # each slot's hypothesis under test: first, then (stage 1), or done (NaN)
    stage = np.zeros(len(p1), dtype=int)
    remaining, running = float(total), 0.0
    while True:
        live = np.flatnonzero(~np.isnan(current))
        if len(live) == 0:
            break
        i = live[np.argmin(current[live] / w[live])]
        running = max(running, min(1.0, remaining * current[i] / w[i]))
        (out1 if stage[i] == 0 else out2)[i] = running
        if stage[i] == 0 and not math.isnan(p2[i]):
            current[i], stage[i] = p2[i], 1     # the slot's weight passes to its second hypothesis
        else:
            current[i], stage[i] = math.nan, 2  # released: the other slots share it
            remaining -= w[i]
    return out1.tolist(), out2.tolist()
