"""Power, noncentral t and the one-budget adjustment against Monte Carlo and by hand (issue 27)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from mulsupcon_ld.report import power, stats

DRAWS = 200_000
DFS = (3, 4, 5, 7, 9)
NCPS = (1, 3, 5, 7, 10, 15, 20, 25)


def _t_draws(df: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Z and S = √(V/df) for T = (Z + λ)/S."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(DRAWS), np.sqrt(rng.chisquare(df, DRAWS) / df)


@pytest.mark.parametrize("df", DFS)
def test_power_matches_monte_carlo_at_small_df(df):
    # the levels the claims use (α·½ over 178 claims) and the plain 5%; noncentralities 1–25, where scipy's
    # nct returns NaN in the lower tail and the old normal fallback made power jump
    z, s = _t_draws(df, seed=df)
    for level in (0.05, 0.05 / 2 / 178):
        crit = st.t.ppf(1 - level / 2, df)
        for ncp in NCPS:
            t = (z + ncp) / s
            simulated = float(np.mean(np.abs(t) > crit))
            assert power.power(ncp, 1.0, df, level) == pytest.approx(simulated, abs=0.02), (level, ncp)


@pytest.mark.parametrize("df", DFS)
def test_noncentral_t_matches_monte_carlo_and_scipy(df):
    z, s = _t_draws(df, seed=100 + df)
    for ncp in (-25, -7, 1, 7, 25):
        for x in (-20.0, -5.0, 0.0, 5.0, 20.0):
            simulated = float(np.mean((z + ncp) / s <= x))
            cdf, sf = power.nct_cdf(x, df, ncp), power.nct_sf(x, df, ncp)
            assert cdf == pytest.approx(simulated, abs=0.005) and cdf + sf == pytest.approx(1.0, abs=1e-9)
            exact = st.nct.cdf(x, df, ncp)
            if not math.isnan(exact):  # where scipy answers, to the integral's accuracy
                assert cdf == pytest.approx(exact, abs=1e-8)


@pytest.mark.parametrize("df", (3, 5, 9))
def test_detectable_difference_has_80_percent_power_by_simulation(df):
    # the finding: Monte Carlo gave 0.66–0.79 at the reported MDD; now 0.80
    level = 0.05 / 2 / 178
    mdd = power.detectable_difference(1.0, df, level)
    z, s = _t_draws(df, seed=200 + df)
    simulated = float(np.mean(np.abs((z + mdd) / s) > st.t.ppf(1 - level / 2, df)))
    assert simulated == pytest.approx(0.80, abs=0.02)
    # continuous in δ: no jump where scipy's nct used to fail
    grid = np.linspace(0.5 * mdd, 1.5 * mdd, 201)
    values = np.array([power.power(d, 1.0, df, level) for d in grid])
    assert (np.diff(values) > 0).all() and np.abs(np.diff(values)).max() < 0.02


def test_exclusion_power_paired_by_simulation():
    # 4 pairs, per-run sd 1, our true difference 3 below the margin; the test also allows the paper's Δ one run
    # of noise (k = 1): se_k = √(1/4 + 1), df 3, one-sided at 1%. Simulate the test itself.
    n, gap, level, k = 4, 3.0, 0.01, 1
    rng = np.random.default_rng(7)
    d = rng.normal(-gap, 1.0, size=(DRAWS, n))
    se_k = d.std(axis=1, ddof=1) * math.sqrt(1 / n + 1 / k)
    simulated = float(np.mean(st.t.cdf(d.mean(axis=1) / se_k, n - 1) < level))
    assert power.exclusion_power(gap, n, level, sd_diff=1.0, k=k) == pytest.approx(simulated, abs=0.01)
    # with the printed Δ exact (k = inf) the same data reject more often
    assert power.exclusion_power(gap, n, level, sd_diff=1.0) > power.exclusion_power(gap, n, level, sd_diff=1.0, k=1)


def test_seeds_to_exclude():
    # per-run sd 1 at level 2.5%: the statistic tends to −gap/(σ/√k), so a gap below z(0.975) = 1.96 is never
    # excluded at k = 1, however many seeds; a gap of 3 is, from some n on (and sooner with k = 5)
    assert power.seeds_to_exclude(1.9, 0.025, sd_diff=1.0) == math.inf
    n = power.seeds_to_exclude(3.0, 0.025, sd_diff=1.0)
    assert 2 < n < 1000
    assert power.exclusion_power(3.0, int(n), 0.025, 1.0, k=1) >= 0.8 > power.exclusion_power(3.0, int(n) - 1,
                                                                                              0.025, 1.0, k=1)
    assert power.seeds_to_exclude(3.0, 0.025, sd_diff=1.0, k=5) < n
    assert power.seeds_to_exclude(-0.1, 0.025, sd_diff=1.0) == math.inf  # ours above the margin: never
    assert math.isnan(power.seeds_to_exclude(math.nan, 0.025, sd_diff=1.0))
    # Welch: n per side, one run of a − b has sd √(sd_a² + sd_b²) = √2, so the never-threshold is 1.96·√2
    assert power.seeds_to_exclude(2.7, 0.025, sd_a=1.0, sd_b=1.0) == math.inf
    assert power.seeds_to_exclude(3.0, 0.025, sd_a=1.0, sd_b=1.0) < math.inf


def test_se_df_against_k_runs_by_hand():
    # paired, 5 pairs, sd 2: k = inf → 2/√5 on 4 df; k = 1 → 2·√(1/5 + 1) on 4 df (the same σ estimated)
    assert stats.se_df_vs_runs(5, 5, sd_diff=2.0) == pytest.approx((2 / math.sqrt(5), 4))
    assert stats.se_df_vs_runs(5, 5, sd_diff=2.0, k=1) == pytest.approx((2 * math.sqrt(1.2), 4))
    # Welch, n 3 / 5, sd 1 / 2: k = inf is Welch's own se and df (scipy's ttest_ind agrees below)
    va, vb = 1 / 3, 4 / 5
    assert stats.se_df_vs_runs(3, 5, sd_a=1.0, sd_b=2.0) == pytest.approx(
        (math.sqrt(va + vb), (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 4)))
    a, b = np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0, 4.0, 6.0, 8.0]) / math.sqrt(2.5)
    assert stats.se_df_vs_runs(3, 5, sd_a=a.std(ddof=1), sd_b=b.std(ddof=1))[1] == pytest.approx(
        st.ttest_ind(a, b, equal_var=False).df)
    # k = 1: each side's variance term grows by one run: va = 1·(1/3 + 1), vb = 4·(1/5 + 1)
    va, vb = 4 / 3, 4.8
    assert stats.se_df_vs_runs(3, 5, sd_a=1.0, sd_b=2.0, k=1) == pytest.approx(
        (math.sqrt(va + vb), (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 4)))


def test_weighted_holm_and_sequences_by_hand():
    # equal weights are Holm (the NaN is an untested member: m = 4): 4·0.01, then 3·0.03 and max(0.09, 2·0.04)
    p = [0.01, 0.04, 0.03, math.nan]
    assert stats.weighted_holm(p, [0.25] * 4)[:3] == pytest.approx(stats.holm(p, m=4)[:3])
    assert stats.weighted_holm(p, [0.25] * 4)[:3] == pytest.approx([0.04, 0.09, 0.09])
    # weights ½, ¼, ¼: p/w = 0.02, 0.04, 0.08 → 1·0.01/½, ½·0.01/¼ = 0.02 → max 0.02, ¼·0.02/¼ = 0.02
    assert stats.weighted_holm([0.01, 0.01, 0.02], [0.5, 0.25, 0.25]) == pytest.approx([0.02, 0.02, 0.02])
    # a family of total 1 of which only ½ is listed: the rest counts as untested (p = 1)
    assert stats.weighted_holm([0.01], [0.5]) == pytest.approx([0.02])
    # sequences: slot 0 (w ½) tests 0.001, then 0.02; slot 1 (w ½) tests 0.01. Smallest p/w first, W = 1:
    # slot 0's first (0.002), whose weight passes to its second; then slot 1 (0.02 < 0.04), released (W = ½);
    # then slot 0's second: ½·0.02/½ = 0.02
    first, then = stats.holm_with_sequences([0.001, 0.01], [0.5, 0.5], [0.02, math.nan])
    assert first == pytest.approx([0.002, 0.02]) and then[0] == pytest.approx(0.02) and math.isnan(then[1])
    # without a second hypothesis the slot is released at once (plain weighted Holm)
    assert stats.holm_with_sequences([0.001, 0.01], [0.5, 0.5], [math.nan, math.nan])[0] == pytest.approx(
        [0.002, 0.01])
    # a slot whose first test is never rejected keeps its weight: its second test's adjusted p ≥ the first's
    first, then = stats.holm_with_sequences([0.3, 0.001], [0.5, 0.5], [0.0001, math.nan])
    assert then[0] >= first[0] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        stats.weighted_holm([0.1, 0.2], [0.6, 0.6])


def test_holm_with_sequences_keeps_the_familywise_error_rate():
    # 40 claims, all nulls true (the worst case for the budget): two-sided p uniform; the printed-Δ and k = 1
    # tests of a claim are dependent (the same difference over different se), all at the boundary of their null
    rng = np.random.default_rng(11)
    m, reps, errors = 40, 4000, 0
    for _ in range(reps):
        z = rng.standard_normal(m)
        two = 2 * st.norm.sf(np.abs(rng.standard_normal(m)))
        printed, k1 = st.norm.cdf(z), st.norm.cdf(z / math.sqrt(1 + 0.5))
        first, then = stats.holm_with_sequences(list(two) + list(printed), [0.5 / m] * (2 * m),
                                                [math.nan] * m + list(k1))
        errors += min(first) < 0.05 or np.nanmin(then) < 0.05
    assert errors / reps < 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
