"""Statistics, the claims registry and verdicts, the delta figure (hand-made runs, hand-computed numbers)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mulsupcon_ld.cli import main as cli_main
from mulsupcon_ld.pipeline import plan
from mulsupcon_ld.report import aggregate, claims, delta, forest, power, stats, tables, verdicts
from test_report import record, runs_frame


# ------------------------------------------------------------------------------------- statistics


def test_welch_by_hand():
    # a = 1,2,3; b = 4,5,6: var 1 each, se = √(2/3), t = −3/√(2/3) = −3.674, Welch df = 4;
    # t(0.975, 4) = 2.7764 → CI −3 ± 2.2669; two-sided p(|t| > 3.674, df 4) = 0.0213
    c = stats.compare([1, 2, 3], [4, 5, 6])
    assert c.test == "Welch t" and c.diff == -3
    assert (c.ci_low, c.ci_high) == pytest.approx((-3 - 2.7764 * math.sqrt(2 / 3), -3 + 2.7764 * math.sqrt(2 / 3)),
                                                  abs=1e-3)
    assert c.p_value == pytest.approx(0.0213, abs=5e-4)


def test_paired_by_seed_by_hand():
    # differences by seed 1, 2, 1 (b given in another seed order): mean 4/3, sd √(1/3), se 1/3, t = 4, df 2;
    # for df 2 the two-sided p is 1 − t/√(t² + 2) = 1 − 4/√18 = 0.05719; CI 4/3 ± 4.3027/3
    c = stats.compare([1, 2, 3], [2, 0, 0], seeds_a=[0, 1, 2], seeds_b=[2, 0, 1])
    assert c.test == "paired t (seeds 0,1,2)"
    assert c.p_value == pytest.approx(1 - 4 / math.sqrt(18), abs=1e-6)
    assert (c.ci_low, c.ci_high) == pytest.approx((4 / 3 - 4.3027 / 3, 4 / 3 + 4.3027 / 3), abs=1e-3)
    # disjoint seed sets: independent samples, Welch
    assert stats.compare([1, 2, 3], [2, 0, 0], seeds_a=[0, 1, 2], seeds_b=[3, 4, 5]).test == "Welch t"


def test_shared_seeds_are_paired_on_the_common_seeds():
    # a has seeds 0–4, b seeds 0–2 (in another order): the same numbers as above on the common seeds,
    # a's seeds 3 and 4 left out (they have no partner); Welch would treat dependent samples as independent
    c = stats.compare([1, 2, 3, 10, 20], [2, 0, 0], seeds_a=[0, 1, 2, 3, 4], seeds_b=[2, 0, 1])
    assert c.test == "paired t on the 3 common seeds (0,1,2; of 5 / 3)" and c.paired
    assert (c.n_a, c.n_b, c.mean_a, c.diff) == (3, 3, 2, pytest.approx(4 / 3))
    assert c.p_value == pytest.approx(1 - 4 / math.sqrt(18), abs=1e-6)
    assert c.se == pytest.approx(1 / 3) and c.df == 2 and c.sd_diff == pytest.approx(math.sqrt(1 / 3))
    # one shared seed: dependent, yet nothing to pair — no test rather than a wrong one
    one = stats.compare([1, 2, 3], [2, 0, 0], seeds_a=[0, 1, 2], seeds_b=[2, 5, 6])
    assert one.test == "" and math.isnan(one.p_value) and "only seed 2 on both sides" in one.reason


def test_constant_difference_up_to_rounding_is_untestable():
    # 0.3 − 0.2, 0.4 − 0.3, 0.5 − 0.4 differ only in the last bits of a double: a constant difference,
    # whose t statistic is 0/0, not a p of 1e-31
    a, b = [0.3, 0.4, 0.5], [0.2, 0.3, 0.4]
    assert len(set(x - y for x, y in zip(a, b))) > 1  # not exactly equal as floats
    c = stats.compare(a, b, seeds_a=[0, 1, 2], seeds_b=[0, 1, 2])
    assert math.isnan(c.p_value) and "identical paired differences" in c.reason
    # the same for Welch: no spread on either side up to rounding
    w = stats.compare([0.1, 0.1, 0.3 - 0.2], [0.2, 0.2, 0.2])
    assert math.isnan(w.p_value) and "no spread" in w.reason



def test_near_constant_differences_are_untestable():
    # differences 0.1, 0.1 − 1e-6, 0.1 + 1e-6: a spread of 1e-6 is no seed variance worth a t-test
    # (it would give p ≈ 1e-11); below SPREAD_FLOOR = 1e-4 (one run's sd of a − b) the claim is untestable
    a, b = [0.3, 0.4, 0.5], [0.2, 0.3 + 1e-6, 0.4 - 1e-6]
    c = stats.compare(a, b, seeds_a=[0, 1, 2], seeds_b=[0, 1, 2])
    assert math.isnan(c.p_value) and c.test == "" and "< 0.0001" in c.reason and "near-constant" in c.reason
    # Welch: one run of a − b varies by √(sd_a² + sd_b²), here about 1.4e-6
    w = stats.compare([0.5, 0.5 + 1e-6, 0.5 - 1e-6], [0.2, 0.2 - 1e-6, 0.2 + 1e-6])
    assert math.isnan(w.p_value) and "near-constant" in w.reason
    # just above the floor the test runs (sd of the differences 2e-4 → p finite and small)
    above = stats.compare(a, [0.2, 0.3 + 2e-4, 0.4 - 2e-4], seeds_a=[0, 1, 2], seeds_b=[0, 1, 2])
    assert 0 < above.p_value < 0.01 and above.sd_diff == pytest.approx(2e-4, rel=1e-6)
    # in the claims: untestable, no p-values, no power
    r = claims.evaluate_claims(_one("ld-vs-mulsupcon", dataset="yeast", metric="mAP", a_method="cld"),
                               _yeast_map_runs([0.01, 0.01 + 1e-6, 0.01 - 1e-6])).iloc[0]
    assert r["verdict"] == "untestable" and math.isnan(r["p_excl_k1"]) and math.isnan(r["mdd_80"])


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 (m = 3): 3·0.01, max(0.03, 2·0.03), max(0.06, 1·0.04); NaN is not in the family
    assert stats.holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(stats.holm([0.01, 0.04, 0.03, math.nan])[3])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_mean_ci_and_paper_position():
    mean, lo, hi = stats.mean_ci([0.70, 0.71])
    assert (lo, hi) == pytest.approx((0.705 - 12.7062 * 0.005, 0.705 + 12.7062 * 0.005), abs=1e-4)
    assert stats.paper_vs_ci(0.70, lo, hi) == "consistent"
    assert stats.paper_vs_ci(0.80, lo, hi) == "ours lower" and stats.paper_vs_ci(0.6, lo, hi) == "ours higher"
    assert math.isnan(stats.mean_ci([0.7])[1]) and stats.paper_vs_ci(0.7, *stats.mean_ci([0.7])[1:]) == ""


def test_holm_over_a_fixed_family():
    # m = 5 fixed in advance, 2 tested: 5·0.01, max(0.05, 4·0.02); untested stay NaN and count as p = 1
    assert stats.holm([0.02, math.nan, 0.01, math.nan, math.nan], m=5)[::2] == pytest.approx([0.08, 0.05, math.nan],
                                                                                            nan_ok=True)
    with pytest.raises(ValueError):
        stats.holm([0.1, 0.2], m=1)


def test_power_by_hand_and_by_simulation():
    from scipy import stats as st

    # one-sample/paired t, effect 1 sd, n = 10, two-sided 5%: 0.8031 (the textbook value); 9 pairs are not enough
    assert power.power(1, 1 / math.sqrt(10), 9, 0.05) == pytest.approx(0.8031, abs=1e-4)
    assert power.seeds_needed(1, 0.05, sd_diff=1.0) == 10
    assert power.seeds_needed(1, 0.05, sd_a=1.0, sd_b=1.0) == 17  # two groups, d = 1: 17 per group
    assert power.seeds_needed(1e-4, 0.05, sd_diff=1.0) == math.inf and math.isnan(power.seeds_needed(-1, 0.05, 1.0))
    # large df: the normal limit z(0.975) + z(0.8) = 2.8016 standard errors
    assert power.detectable_difference(1.0, 1e7, 0.05) == pytest.approx(1.95996 + 0.84162, abs=1e-4)
    # simulation: 4000 paired t-tests of 5 pairs with a true difference 2 sd at level 0.01
    rng = __import__("numpy").random.default_rng(0)
    d = rng.normal(2.0, 1.0, size=(4000, 5))
    rate = (st.ttest_1samp(d, 0, axis=1).pvalue < 0.01).mean()
    assert rate == pytest.approx(power.power(2.0, 1 / math.sqrt(5), 4, 0.01), abs=0.025)


def _yeast_map_runs(diffs):
    """CLD and MulSupCon on Yeast mAP, paired by seed, CLD − MulSupCon = ``diffs``."""
    return runs_frame(*(record("yeast", "mulsupcon", s, 0.45) for s in range(len(diffs))),
                      *(record("yeast", "cld", s, 0.45 + d) for s, d in enumerate(diffs)))


def test_paper_effect_excluded_by_hand():
    from scipy.stats import t

    # the paper prints Yeast mAP CLD 0.521 vs MulSupCon 0.480: Δ 0.041, at least 0.040 after rounding.
    # Ours: differences 0.01, −0.01, 0, 0.005, −0.005: mean 0, sd² = 2.5e-4 / 4 = 6.25e-5 on 4 df.
    # printed Δ exact: se² = sd²/5 = 1.25e-5, t = −0.040/se on 4 df;
    # the paper's Δ one run of our spread (k = 1): se² = sd²(1/5 + 1) = 7.5e-5, t = −0.040/√7.5e-5 = −8/√3;
    # k = 3: se² = sd²(1/5 + 1/3) = 1/30000, t = −4√3; k = 5: se² = sd²(2/5) = 2.5e-5, t = −8
    claim = _one("ld-vs-mulsupcon", dataset="yeast", metric="mAP", a_method="cld")
    r = claims.evaluate_claims(claim, _yeast_map_runs([0.01, -0.01, 0.0, 0.005, -0.005])).iloc[0]
    assert (r["paper_diff"], r["paper_diff_min"]) == pytest.approx((0.041, 0.040))
    p_printed = t.cdf(-0.040 / math.sqrt(1.25e-5), 4)
    assert r["p_printed"] == pytest.approx(p_printed, rel=1e-6)
    p = {1: t.cdf(-8 / math.sqrt(3), 4), 3: t.cdf(-4 * math.sqrt(3), 4), 5: t.cdf(-8, 4)}
    for k, pk in p.items():
        assert r[f"p_excl_k{k}"] == pytest.approx(pk, rel=1e-6)
    # one family of m = 1, two slots of ½ α: the exclusion slot tests the printed Δ (W = 1: 2 p), then passes its
    # share to the k-run test (W = 1: 2 p); the two-sided test (p = 1) comes last (W = ½: ½ · 1 / ½ = 1)
    assert r["p_printed_holm"] == pytest.approx(2 * p_printed, rel=1e-6)
    for k, pk in p.items():
        assert r[f"p_excl_k{k}_holm"] == pytest.approx(2 * pk, rel=1e-6)
    assert r["p_holm"] == pytest.approx(1.0) and r["verdict"] == "paper effect excluded"
    assert (r["level"], r["level_excl"]) == pytest.approx((0.025, 0.025))
    sd = math.sqrt(6.25e-5)
    assert r["mdd_80"] == pytest.approx(power.detectable_difference(sd / math.sqrt(5), 4, 0.025))
    # Δ / sd = 5.2 at level 0.025: 2 pairs (1 df, critical t 25.5, noncentrality 7.3) fall short, 3 suffice
    assert r["seeds_for_paper"] == power.seeds_needed(0.041, 0.025, sd_diff=sd) == 3
    # seeds to exclude: the k = 1 test's power reaches 80% at that n, not one before
    n = int(r["seeds_to_exclude"])
    assert power.exclusion_power(0.040, n, 0.025, sd_diff=sd, k=1) >= 0.8 > power.exclusion_power(
        0.040, n - 1, 0.025, sd_diff=sd, k=1)
    # the paper's Δ with its k = 1 interval: Δ ± t(0.975, 4)·sd
    half = t.ppf(0.975, 4) * sd
    assert (r["sd_run"], r["paper_ci_low"], r["paper_ci_high"]) == pytest.approx((sd, 0.041 - half, 0.041 + half))
    # three times the spread: the printed Δ is rejected (2 p < 0.05) but one run of the paper's could have
    # been that far from ours (2 p_k1 > 0.05): the weaker verdict
    mid = claims.evaluate_claims(claim, _yeast_map_runs([0.03, -0.03, 0.0, 0.015, -0.015])).iloc[0]
    assert mid["p_printed_holm"] == pytest.approx(2 * t.cdf(-0.040 / (3 * sd / math.sqrt(5)), 4), rel=1e-6)
    assert mid["p_printed_holm"] < 0.05 < mid["p_excl_k1_holm"] and mid["verdict"] == "printed Δ not reproduced"
    # ... and no number of seeds excludes a gap of 0.040 below z(1 − 0.025)·3 sd = 0.0465 at k = 1
    assert mid["seeds_to_exclude"] == math.inf
    # ten times the spread: the paper's Δ is within reach, nothing is decided
    wide = claims.evaluate_claims(claim, _yeast_map_runs([0.1, -0.1, 0.0, 0.05, -0.05])).iloc[0]
    assert wide["verdict"] == "inconclusive" and wide["p_printed"] > 0.05
    # our own questions have no paper Δ: never "excluded"; their two-sided test has the whole budget
    control = _one("control", dataset="yeast", metric="mAP")
    runs = runs_frame(*(record("yeast", "mulsupcon", s, 0.45) for s in range(5)),
                      *(record("yeast", "bce", s, 0.45 + d) for s, d in enumerate([0.01, -0.01, 0, 0.005, -0.005])))
    out = claims.evaluate_claims(control, runs).iloc[0]
    assert out["verdict"] == "inconclusive" and out["level"] == pytest.approx(0.05)
    assert math.isnan(out["p_excl_k1"]) and math.isnan(out["seeds_to_exclude"])


def test_summary_counts_with_the_sensitivity():
    # the Yeast mAP claim on three sets of runs (each its own family of m = 1): the spread of
    # test_paper_effect_excluded_by_hand (excluded at every k), twice it (t = −2.31 at k = 1: 2 p = 0.08, not
    # excluded; k = 3: t = −3.46, 2 p = 0.026; k = 5: t = −4, 2 p = 0.016: excluded) and ten times it
    claim = _one("ld-vs-mulsupcon", dataset="yeast", metric="mAP", a_method="cld")
    base = [0.01, -0.01, 0.0, 0.005, -0.005]
    frame = pd.concat([claims.evaluate_claims(claim, _yeast_map_runs([f * d for d in base])) for f in (1, 2, 10)])
    assert frame["verdict"].tolist() == ["paper effect excluded", "printed Δ not reproduced", "inconclusive"]
    counts = claims.verdict_counts(frame, ("kind", "dataset"))
    row = counts.loc["ld-vs-mulsupcon · Yeast"]
    assert (row["paper effect excluded"], row["printed Δ not reproduced"], row["inconclusive"]) == (1, 1, 1)
    assert [row[f"excluded, k = {k}"] for k in (1, 3, 5)] == [1, 2, 2]
    assert counts.loc["total", "excluded, k = 5"] == 2
    text = claims.render_claims(frame.assign(quote="q"))
    assert "one 5% familywise error budget per family for all its verdicts together" in text
    assert "| ld-vs-mulsupcon · Yeast" in text and "| 1 / 2 / 2 " in text


def test_verdict_order_and_notes():
    base = dict(runs=True, p_value=0.001, p_holm=0.5, p_excl_k1_holm=0.5, p_printed_holm=0.5, p_excl_k3_holm=0.5,
                diff=0.01, ci_low=0.002, ci_high=0.02, paper_diff_min=0.03, m=178)
    v = verdicts.verdict
    assert v({**base, "runs": False}) == "no runs" and v({**base, "p_value": math.nan}) == "untestable"
    assert v({**base, "p_holm": 0.01}) == "holds" and v({**base, "p_holm": 0.01, "diff": -0.01}) == "reversed"
    # the k = 1 test decides "paper effect excluded"; the printed-Δ test alone only "printed Δ not reproduced"
    assert v({**base, "p_excl_k1_holm": 0.01, "p_printed_holm": 0.001}) == "paper effect excluded"
    assert v({**base, "p_printed_holm": 0.01}) == "printed Δ not reproduced" and v(base) == "inconclusive"
    # the sensitivity: another k's test in its place
    assert v({**base, "p_printed_holm": 0.01, "p_excl_k3_holm": 0.01}, k=3) == "paper effect excluded"
    # reversed wins over excluded (a reversal excludes every positive Δ anyway)
    assert v({**base, "p_holm": 0.01, "diff": -0.01, "p_excl_k1_holm": 0.001}) == "reversed"
    # the unadjusted CI excludes 0 but the adjusted test does not: flagged
    m = "not significant in the family's 5% budget (m = 178)"
    assert verdicts.note({**base, "verdict": "inconclusive"}) == f"95% CI excludes 0, {m}"
    below = {**base, "ci_low": -0.01, "ci_high": 0.02, "verdict": "inconclusive"}
    assert verdicts.note(below) == f"95% CI below the paper's Δ, {m}"
    holds = {**base, "verdict": "holds"}
    assert verdicts.note({**holds, "p_excl_k1_holm": 0.01}) == "smaller than the paper's Δ (paper effect excluded too)"
    assert (verdicts.note({**holds, "p_printed_holm": 0.01})
            == "smaller than the printed Δ (printed Δ not reproduced too)")
    assert verdicts.note({**below, "ci_high": 0.04}) == ""


def test_families_are_fixed_by_the_registry():
    # m is each family's size in the registry: 178 paper claims; each question of ours its own family
    # (54 control claims, 60 vs ASL run by us); more runs never change it
    reg = claims.load_claims()
    sizes = verdicts.family_sizes(reg)
    assert sizes == {"paper": int((~reg["ours"]).sum()), "control": 54, "vs-asl": 60} and sizes["paper"] == 178
    claim = _one("ld-vs-mulsupcon", dataset="yeast", metric="mAP", a_method="cld")
    control = _one("control", dataset="yeast", metric="mAP")
    diffs = [0.02, 0.03, 0.025, 0.021, 0.028]
    runs = pd.concat([_yeast_map_runs(diffs),
                      runs_frame(*(record("yeast", "bce", s, 0.45 - d) for s, d in enumerate(diffs)))])
    out = claims.evaluate_claims(pd.concat([claim, control]), runs, sizes).set_index("kind")
    p = out["p_value"]
    assert p["ld-vs-mulsupcon"] == pytest.approx(p["control"])  # the same differences, two families
    # the paper's family gives its two-sided tests half of α (the rest to its exclusion tests), so the
    # smallest p is multiplied by m / ½; our control's tests have the whole 5%
    assert out.loc["ld-vs-mulsupcon", "p_holm"] == pytest.approx(min(1.0, 2 * sizes["paper"] * p["control"]))
    assert out.loc["control", "p_holm"] == pytest.approx(min(1.0, sizes["control"] * p["control"]))
    assert out.loc["ld-vs-mulsupcon", "level"] == pytest.approx(0.05 / 2 / sizes["paper"])
    assert out.loc["ld-vs-mulsupcon", "level_excl"] == pytest.approx(0.05 / 2 / sizes["paper"])
    more = pd.concat([runs, runs_frame(*(record("scene", m, s, 0.5 + 0.01 * s * (m == "cld"))
                                         for m in ("cld", "mulsupcon") for s in range(3)))])
    scene = _one("ld-vs-mulsupcon", dataset="scene", metric="HA", a_method="cld")
    again = claims.evaluate_claims(pd.concat([claim, control, scene]), more, sizes).set_index("claim_id")
    assert again.loc[claim["claim_id"].iloc[0], "m"] == sizes["paper"]
    assert (again["p_value"].notna()).sum() == 3


# ------------------------------------------------------------------------------------- registry


def test_registry_is_the_papers_claims():
    reg = claims.load_claims()
    built = claims.build_registry()
    pd.testing.assert_frame_equal(reg.astype(str), built.astype(str), check_dtype=False)
    assert reg["claim_id"].is_unique
    kinds = reg["kind"].value_counts()
    assert set(kinds.index) == {"ld-vs-mulsupcon", "cld-vs-rld", "ablation", "grid-trend", "control", "vs-asl"}
    assert kinds["ablation"] == 2 * 3 * 6  # Scene and PASCAL, three variants, six metrics
    paper = tables.load_paper()
    # every LD-vs-MulSupCon claim is one the paper's table prints ahead; e.g. Yeast mAP (Table 3) both LD variants
    yeast_map = reg[(reg["kind"] == "ld-vs-mulsupcon") & (reg["dataset"] == "yeast") & (reg["metric"] == "mAP")]
    assert set(yeast_map["a_method"]) == {"rld", "cld"}
    # Scene mAP: MulSupCon 0.859 is above RLD 0.825 and CLD 0.821, so no such claim
    assert reg[(reg["kind"] == "ld-vs-mulsupcon") & (reg["dataset"] == "scene") & (reg["metric"] == "mAP")].empty
    # Delicious HA: CLD = RLD = 0.982 printed: no CLD-vs-RLD claim
    assert reg[(reg["kind"] == "cld-vs-rld") & (reg["dataset"] == "delicious") & (reg["metric"] == "HA")].empty
    assert len(paper) == 622
    # grid trends come from the printed grid: PASCAL at β = 0.01, α = 1 is below α = 0.001 on every metric
    pascal = reg[(reg["kind"] == "grid-trend") & (reg["dataset"] == "pascal")]
    assert not (pascal["a_beta"] == "0.01").any() and (pascal["a_beta"] == "0.001").sum() == 6
    # our control: marked ours, MulSupCon vs bce
    control = reg[reg["kind"] == "control"]
    assert control["ours"].all() and not reg.loc[~reg["kind"].isin(["control", "vs-asl"]), "ours"].any()
    assert set(control["a_method"]) == {"mulsupcon"} and set(control["b_method"]) == {"bce"}
    # ours too: MulSupCon and CLD vs ASL run by us, on the five datasets of Tables 2–3, after every other claim
    asl = reg[reg["kind"] == "vs-asl"]
    assert asl["ours"].all() and set(asl["b_method"]) == {"asl"} and set(asl["a_method"]) == {"mulsupcon", "cld"}
    assert set(asl["dataset"]) == set(plan.TABLES["2"].datasets) and len(asl) == 5 * 6 * 2
    assert asl.index.min() > reg.index[reg["kind"] != "vs-asl"].max()  # earlier claim ids unchanged
    assert reg["quote"].str.len().min() > 20


def _one(kind_filter, **where):
    reg = claims.load_claims()
    sel = reg[reg["kind"] == kind_filter]
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel.head(1)


def test_reversed_holds_untestable_and_no_runs():
    # Scene ebF1: the paper says CLD > MulSupCon; here MulSupCon is far ahead on 3 paired seeds → reversed
    reversed_claim = _one("ld-vs-mulsupcon", dataset="scene", metric="ebF1", a_method="cld")
    runs = runs_frame(*(record("scene", "mulsupcon", s, 0.5, ebF1=0.80 + 0.001 * s) for s in (0, 1, 2)),
                      *(record("scene", "cld", s, 0.5, ebF1=0.70 + 0.002 * s) for s in (0, 1, 2)),
                      record("yeast", "cld", 0, 0.9), record("yeast", "mulsupcon", 0, 0.1))
    yeast = _one("ld-vs-mulsupcon", dataset="yeast", metric="HA", a_method="cld")
    bookmarks = _one("ld-vs-mulsupcon", dataset="bookmarks")
    out = claims.evaluate_claims(pd.concat([reversed_claim, yeast, bookmarks]), runs).set_index("claim_id")
    r = out.loc[reversed_claim["claim_id"].iloc[0]]
    assert r["verdict"] == "reversed" and r["test"] == "paired t (seeds 0,1,2)" and r["n_a"] == r["n_b"] == 3
    assert r["diff"] == pytest.approx(0.701 - 0.801 + 0.001) and r["ci_high"] < 0 and r["p_holm"] < 0.05
    # the family is the 3 claims passed (the registry here), not the one that could be tested
    # and its two slots (two-sided and exclusion, ½ / 3 of α each) step down in order of p / w: the printed-Δ
    # test first (W = 1: 6 p), whose share passes to the k = 1 test; the two-sided test next (still W = 1: 6 p,
    # the exclusion slot holds its weight); the k = 1 test last (W = 1 − 1/6: 5 p)
    assert r["m"] == 3 and r["p_printed"] / (1 / 6) < r["p_value"] / (1 / 6) < r["p_excl_k1"] / (1 / 6)
    assert r["p_printed_holm"] == pytest.approx(6 * r["p_printed"]) and r["p_holm"] == pytest.approx(6 * r["p_value"])
    assert r["p_excl_k1_holm"] == pytest.approx(5 * r["p_excl_k1"])
    n1 = out.loc[yeast["claim_id"].iloc[0]]  # one seed per side: no test, whatever the means
    assert n1["verdict"] == "untestable" and math.isnan(n1["p_value"]) and "n = 1 on side a and n = 1" in n1["reason"]
    assert out.loc[bookmarks["claim_id"].iloc[0], "verdict"] == "no runs"
    # the same data the other way round holds
    flipped = runs_frame(*(record("scene", "cld", s, 0.5, ebF1=0.80 + 0.001 * s) for s in (0, 1, 2)),
                         *(record("scene", "mulsupcon", s, 0.5, ebF1=0.70 + 0.002 * s) for s in (0, 1, 2)))
    assert claims.evaluate_claims(reversed_claim, flipped)["verdict"].iloc[0] == "holds"


def test_presets_never_mixed_and_bce_control():
    # runs.csv with a preset column: the paper preset wins, another preset is not pooled with it
    runs = runs_frame(*(record("yeast", "mulsupcon", s, 0.6 + 0.01 * s) for s in (0, 1)),
                      *(record("yeast", "bce", s, 0.5 + 0.01 * s) for s in (0, 1)),
                      *(record("yeast", "bce", s, 0.9) for s in (2, 3)))
    runs["preset"] = ["paper"] * 4 + ["mulsupcon-official"] * 2
    claim = _one("control", dataset="yeast", metric="mAP")
    r = claims.evaluate_claims(claim, runs).iloc[0]
    assert (r["n_a"], r["n_b"], r["preset"]) == (2, 2, "paper") and r["mean_b"] == pytest.approx(0.505)
    # Table 2 shows our control row, never with a paper value
    t2 = tables.table_frame("2", runs, tables.load_paper(), 0.02)
    control = t2[t2["row"] == "BCE (no pretraining, ours)"]
    assert len(control) == 4 * 5 and control["paper"].isna().all()
    assert control.loc[control["dataset"] == "yeast", "ours_mean"].tolist() == pytest.approx([0.505] * 4)
    md = tables.render_markdown("2", t2, 0.02)
    assert "| BCE (no pretraining, ours)" in md and "our controls" in md
    no_bce = runs[runs["method"] != "bce"].drop(columns="preset")
    t2 = tables.table_frame("2", no_bce, tables.load_paper(), 0.02)
    assert (t2.loc[t2["row"] == "BCE (no pretraining, ours)", "status"] == "missing").all()


def test_no_common_group_names_both_sides():
    # MulSupCon ran at paper scale only, the control at smoke scale only: nothing to compare, and the
    # reason must not say that side a (which has runs) has none
    claim = _one("control", dataset="yeast", metric="mAP")
    for a_scale, b_scale in (("smoke", "paper"), ("paper", "smoke")):
        runs = runs_frame(*(record("yeast", "mulsupcon", s, 0.5, scale=a_scale) for s in (0, 1)),
                          *(record("yeast", "bce", s, 0.4, scale=b_scale) for s in (0, 1)))
        r = claims.evaluate_claims(claim, runs).iloc[0]
        assert r["verdict"] == "no runs"
        assert r["reason"] == (f"side a has ok runs only at {a_scale}; side b has ok runs only at {b_scale}: "
                               "never in the same group")
    only_a = runs_frame(record("yeast", "mulsupcon", 0, 0.5, scale="smoke"))
    assert claims.evaluate_claims(claim, only_a).iloc[0]["reason"] == "no ok runs on side b"


# ------------------------------------------------------------------------------------- outputs


def test_claims_command_and_delta_figure(tmp_path):
    from PIL import Image

    runs = runs_frame(*(record("scene", m, s, 0.8 + 0.01 * s + 0.003 * i * s * s)
                        for i, m in enumerate(("mulsupcon", "rld", "cld")) for s in (0, 1, 2)))
    runs_csv = tmp_path / "runs.csv"
    aggregate.write_runs(runs, runs_csv)
    out = tmp_path / "claims.md"
    png = tmp_path / "delta.png"
    assert cli_main(["claims", "--runs", str(runs_csv), "--out", str(out), "--figure", str(png)]) == 0
    csv = pd.read_csv(tmp_path / "claims.csv")
    assert list(csv.columns[:len(claims.RESULT_COLUMNS)]) == claims.RESULT_COLUMNS
    assert set(csv["verdict"]) <= set(claims.VERDICTS) and (csv["verdict"] == "no runs").sum() > 0
    tested = csv[csv["p_value"].notna()]
    assert len(tested) > 0 and (tested["p_holm"] >= tested["p_value"]).all()
    text = out.read_text()
    assert "## Summary" in text and "Holm" in text and "superior performance" in text
    assert "one 5% familywise error budget" in text and "paper effect excluded at k = 1 / 3 / 5" in text
    assert {"p_excl_k1", "p_excl_k1_holm", "p_printed_holm", "p_excl_k3_holm", "p_excl_k5_holm",
            "seeds_to_exclude", "paper_ci_low", "paper_ci_high"} <= set(csv.columns)
    with Image.open(png) as im:
        im.load()
        assert im.size[0] > 800 and im.size[1] > 300
        low, high = im.convert("L").getextrema()
        assert high - low > 100  # not blank
    assert (tmp_path / "delta.pdf").read_bytes()[:4] == b"%PDF"
    # the forest plot beside the markdown: one line per tested claim, coloured by verdict
    with Image.open(tmp_path / "claims.png") as im:
        im.load()
        low, high = im.convert("L").getextrema()
        assert im.size[1] > 300 and high - low > 100
    assert (tmp_path / "claims.pdf").read_bytes()[:4] == b"%PDF"
    drawn = forest.forest_frame(pd.read_csv(tmp_path / "claims.csv"))
    assert len(drawn) == len(tested) and drawn["label"].str.contains(r"\(n=3/3\)").all()
    frame = delta.delta_frame(runs)
    assert set(frame["table"]) == {"2", "3", "5"}  # Table 6 repeats Table 5's grid: left out
    assert len(frame) == 3 * 6 + 6  # 3 methods × (4 + 2 metrics) + the default grid cell (α 0.1, β 1) × 6
    # one line per configuration: Table 2's four metrics and Table 3's two are the same runs; n in the label
    assert frame.groupby("label")["metric"].nunique().to_dict() == {
        "Scene MulSupCon (n=3)": 6, "Scene MulSupCon_RLD (n=3)": 6, "Scene MulSupCon_CLD (n=3)": 6,
        "T5 Scene CLD α=0.1 β=1 (n=3)": 6}
    assert cli_main(["claims", "--runs", str(tmp_path / "absent.csv"), "--out", str(out)]) == 2


def test_claims_builds_each_table_once_for_the_figure_the_tables_and_the_diff(tmp_path, monkeypatch):
    runs = runs_frame(*(record("scene", m, s, 0.8 + 0.01 * s) for m in ("mulsupcon", "cld") for s in (0, 1)))
    runs_csv = tmp_path / "runs.csv"
    aggregate.write_runs(runs, runs_csv)
    built = []
    real = tables.table_frame

    def counting(table_id, *args, **kwargs):
        built.append(str(table_id))
        return real(table_id, *args, **kwargs)

    monkeypatch.setattr(tables, "table_frame", counting)
    out_dir = tmp_path / "tables"
    assert cli_main(["claims", "--runs", str(runs_csv), "--out", str(tmp_path / "claims.md"),
                     "--figure", str(tmp_path / "delta.png"), "--tables-dir", str(out_dir)]) == 0
    assert sorted(built) == sorted(set(built)) and set(built) == set(tables.plan.TABLE_IDS)
    assert {p.name for p in out_dir.iterdir()} >= {"table2.md", "table3.md", "table5.md", "diff.md"}
    assert not (out_dir / "table4.md").exists()   # no run of ours: not written
