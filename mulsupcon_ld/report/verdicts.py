"""Verdicts of the claims: families fixed in advance, one 5% budget per family, the paper's own noise.

Design (``docs/claims.md`` explains it for readers):

- **Families.** The paper's claims (every registry row not marked ``ours``) are one family; each of
  our own questions (``ours`` rows, by ``kind``: the no-pretraining control, the comparison with
  ASL run by us) is another. Their sizes ``m`` are the registry's counts, not the number of claims
  that happen to have runs: an untested claim counts as p = 1, so adding runs never changes ``m``.
- **Tests.** Per claim, up to three: the two-sided t-test of "no difference" (**holds** /
  **reversed**, by the sign); the one-sided test of "our difference is at least the paper's Δ" with
  the paper's Δ the mean of ``k = 1`` run with our per-run spread (**paper effect excluded**,
  :func:`exclusion_test`); the same test with the printed Δ taken as exact up to rounding
  (**printed Δ not reproduced**). Δ is the printed difference less what rounding explains
  (:mod:`.paper_delta`).
- **One budget.** All the tests of a family share α = 5% (:func:`.stats.holm_with_sequences`, a
  weighted Holm): :data:`SHARES` — ½ to the two-sided tests, ½ to the exclusion tests, split over
  the m claims — in the paper's family. A claim's exclusion share tests the printed Δ first and,
  once that is rejected, passes to the k = 1 test (a fixed sequence; the k = 1 test's se is the
  larger, so it rarely rejects where the printed-Δ test does not). Our own questions have no paper
  Δ, so their two-sided tests get it all. Every verdict of a family together keeps a 5%
  familywise error rate.
- **Sensitivity.** The paper states no run count; k = 3 and 5 replace the k = 1 test in the same
  procedure (``p_excl_k3_holm``, ``p_excl_k5_holm``).
- **Power** at the level a test must reach whatever the others do, weighted Holm's first step α·w
  (:mod:`.power`; for the k = 1 test, once its printed-Δ test is rejected); ``seeds_to_exclude``:
  seeds at which the k = 1 test reaches 80% power if our observed difference is the truth.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import pandas as pd

from .power import detectable_difference, seeds_needed, seeds_to_exclude
from .stats import ALPHA, Comparison, holm_with_sequences, se_df_vs_runs

FAMILY_TITLE = {"paper": "the paper's claims", "control": "our no-pretraining control",
                "vs-asl": "our comparison with ASL run by us"}
VERDICTS = ("holds", "reversed", "paper effect excluded", "printed Δ not reproduced", "inconclusive", "untestable",
            "no runs")
#: the paper's run count: k = 1 decides, 3 and 5 are the sensitivity
K_DEFAULT, K_SENSITIVITY = 1, (1, 3, 5)
#: shares of α in a family with a paper Δ (the paper's claims; the exclusion share tests the printed Δ,
#: then the k-run Δ); our own questions: two-sided only
SHARES = {"two-sided": 0.5, "exclusion": 0.5}
OURS_SHARES = {"two-sided": 1.0}
JUDGED_COLUMNS = (["family", "m", "level", "level_excl", "p_holm", "p_printed", "p_printed_holm", "sd_run",
                   "paper_ci_low", "paper_ci_high"]
                  + [c for k in K_SENSITIVITY for c in (f"p_excl_k{k}", f"p_excl_k{k}_holm")]
                  + ["verdict", "mdd_80", "seeds_for_paper", "seeds_to_exclude", "note"])


def families(claims: pd.DataFrame) -> pd.Series:
    """The family of each claim: ``paper`` for the paper's claims, the ``kind`` for ours."""
    return claims["kind"].where(claims["ours"].astype(bool), "paper")


def family_sizes(claims: pd.DataFrame) -> dict[str, int]:
    """``m`` of each family: how many claims of the registry it holds."""
    return {str(f): int(n) for f, n in families(claims).value_counts(sort=False).items()}


def exclusion_p(diff: float, se: float, df: float, margin: float) -> float:
    """One-sided p-value of "the true difference is at least ``margin``" (small when ours is below):
    ``t.cdf((diff − margin)/se; df)``."""
    from scipy import stats

    if any(math.isnan(x) for x in (diff, se, df, margin)) or not se > 0:
        return math.nan
    return float(stats.t.cdf((diff - margin) / se, df))


def exclusion_test(c: Comparison | None, margin: float, k: float = K_DEFAULT) -> float:
    """:func:`exclusion_p` with the paper's Δ the mean of ``k`` runs of our spread (``k = inf``: the
    printed Δ exact): se and df from :func:`.stats.se_df_vs_runs`."""
    if c is None or math.isnan(c.se):
        return math.nan
    return exclusion_p(c.diff, *se_df_vs_runs(c.n_a, c.n_b, c.sd_diff, c.sd_a, c.sd_b, k), margin)


def run_sd(c: Comparison | None) -> float:
    """One run's sd of a − b: the paired differences' sd, or √(sd_a² + sd_b²) for Welch."""
    if c is None or math.isnan(c.se):
        return math.nan
    return c.sd_diff if c.paired else math.hypot(c.sd_a, c.sd_b)


def verdict(r: dict, k: int = K_DEFAULT) -> str:
    """One of :data:`VERDICTS` from a row with ``runs`` (both sides ran), ``p_value``, ``p_holm``,
    ``p_excl_k{k}_holm``, ``p_printed_holm`` and ``diff``; ``k``: which paper-noise test decides."""
    if not r["runs"]:
        return "no runs"
    if math.isnan(r["p_value"]):
        return "untestable"
    if r["p_holm"] < ALPHA:
        return "holds" if r["diff"] > 0 else "reversed"
    if r[f"p_excl_k{k}_holm"] < ALPHA:
        return "paper effect excluded"
    if r["p_printed_holm"] < ALPHA:
        return "printed Δ not reproduced"
    return "inconclusive"


def note(r: dict) -> str:
    """Where the unadjusted 95% CI and the adjusted verdict disagree, and holds-but-smaller."""
    if r["verdict"] in ("no runs", "untestable"):
        return ""
    m = f"not significant in the family's 5% budget (m = {r['m']})"
    if r["verdict"] not in ("holds", "reversed") and (r["ci_low"] > 0 or r["ci_high"] < 0):
        return f"95% CI excludes 0, {m}"
    if r["verdict"] == "inconclusive" and r["ci_high"] < r["paper_diff_min"]:
        return f"95% CI below the paper's Δ, {m}"
    if r["verdict"] == "holds" and r[f"p_excl_k{K_DEFAULT}_holm"] < ALPHA:
        return "smaller than the paper's Δ (paper effect excluded too)"
    if r["verdict"] == "holds" and r["p_printed_holm"] < ALPHA:
        return "smaller than the printed Δ (printed Δ not reproduced too)"
    return ""


def excluded_under(frame: pd.DataFrame, k: int) -> pd.Series:
    """Whether each judged claim's verdict would be "paper effect excluded" with the paper's Δ a mean
    of ``k`` runs: not decided by the two-sided test, and the k-run test's adjusted p below α."""
    open_question = frame["verdict"].isin(["paper effect excluded", "printed Δ not reproduced", "inconclusive"])
    return open_question & (frame[f"p_excl_k{k}_holm"] < ALPHA)


def budget_text() -> str:
    """The error budget in one sentence, from :data:`SHARES`."""
    share = {name: str(Fraction(w).limit_denominator(100)) for name, w in SHARES.items()}
    return (f"one 5% familywise error budget per family for all its verdicts together: weighted Holm with "
            f"{share['two-sided']} of α for the two-sided tests and {share['exclusion']} for the exclusion tests, "
            f"where a claim's exclusion share tests the printed Δ first and, once that is rejected, the paper's Δ "
            f"as k = {K_DEFAULT} run (a fixed sequence); our own questions have no paper Δ and give their two-sided "
            "tests all of α")


def _adjust(frame: pd.DataFrame, sizes: dict[str, int], k: int) -> dict[str, list[float]]:
    """Adjusted p-values of the two-sided, printed-Δ and k-run tests: per family one weighted Holm
    over two slots a claim (:func:`.stats.holm_with_sequences`), the exclusion slot testing the
    printed Δ first and passing its share to the k-run test once that is rejected."""
    out = {name: [math.nan] * len(frame) for name in ("two-sided", "printed", "paper noise")}
    for family, part in frame.groupby("family"):
        rows = [frame.index.get_loc(label) for label in part.index]
        n = len(part)
        shares = OURS_SHARES if part["ours"].astype(bool).any() else SHARES
        p, then = list(part["p_value"].astype(float)), [math.nan] * n
        w = [shares["two-sided"] / sizes[family]] * n
        if "exclusion" in shares:
            p += list(part["p_printed"].astype(float))
            then += list(part[f"p_excl_k{k}"].astype(float))
            w += [shares["exclusion"] / sizes[family]] * n
        first, second = holm_with_sequences(p, w, then)
        for name, values in (("two-sided", first[:n]), ("printed", first[n:]), ("paper noise", second[n:])):
            for row, value in zip(rows, values):
                out[name][row] = value
    return out


def _levels(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Weighted Holm's first-step level α·w of the two-sided and of the k = 1 exclusion test."""
    ours = frame["ours"].astype(bool)
    two = ALPHA * ours.map({True: OURS_SHARES["two-sided"], False: SHARES["two-sided"]}) / frame["m"]
    excl = (ALPHA * SHARES["exclusion"] / frame["m"]).where(~ours, math.nan)
    return two, excl


def _paper_interval(delta: float, sd: float, c: Comparison | None, k: int = K_DEFAULT) -> tuple[float, float]:
    """95% interval of the paper's Δ as a mean of ``k`` runs of our spread (t on our test's df)."""
    from scipy import stats

    if c is None or any(math.isnan(x) for x in (delta, sd, c.df)):
        return math.nan, math.nan
    half = float(stats.t.ppf(0.975, c.df)) * sd / math.sqrt(k)
    return delta - half, delta + half


def judge(frame: pd.DataFrame, comparisons: Sequence[Comparison | None], sizes: dict[str, int]) -> pd.DataFrame:
    """Add :data:`JUDGED_COLUMNS` to ``frame`` (one row per claim with ``ours``, ``diff``, ``p_value``,
    ``ci_low``, ``ci_high``, ``paper_diff``, ``paper_diff_min`` and ``runs``), in place and returned."""
    frame["family"] = families(frame)
    frame["m"] = frame["family"].map(sizes).astype(int)
    frame["level"], frame["level_excl"] = _levels(frame)
    margins = frame["paper_diff_min"].tolist()
    frame["p_printed"] = [exclusion_test(c, x, math.inf) for c, x in zip(comparisons, margins)]
    for k in K_SENSITIVITY:
        frame[f"p_excl_k{k}"] = [exclusion_test(c, x, k) for c, x in zip(comparisons, margins)]
        adjusted = _adjust(frame, sizes, k)
        frame[f"p_excl_k{k}_holm"] = adjusted["paper noise"]
        if k == K_DEFAULT:
            frame["p_holm"], frame["p_printed_holm"] = adjusted["two-sided"], adjusted["printed"]
    frame["sd_run"] = [run_sd(c) for c in comparisons]
    interval = [_paper_interval(d, s, c) for d, s, c in zip(frame["paper_diff"], frame["sd_run"], comparisons)]
    frame["paper_ci_low"], frame["paper_ci_high"] = [x[0] for x in interval], [x[1] for x in interval]
    frame["verdict"] = [verdict(r) for r in frame.to_dict("records")]
    frame["mdd_80"] = [detectable_difference(c.se, c.df, level) if c is not None else math.nan
                       for c, level in zip(comparisons, frame["level"])]
    frame["seeds_for_paper"] = [seeds_needed(delta, level, c.sd_diff, c.sd_a, c.sd_b)
                                if c is not None and not math.isnan(c.se) else math.nan
                                for c, delta, level in zip(comparisons, frame["paper_diff"], frame["level"])]
    frame["seeds_to_exclude"] = [seeds_to_exclude(x - c.diff, level, c.sd_diff, c.sd_a, c.sd_b, K_DEFAULT)
                                 if c is not None and not math.isnan(c.se) else math.nan
                                 for c, x, level in zip(comparisons, margins, frame["level_excl"])]
    frame["note"] = [note(r) for r in frame.to_dict("records")]
    return frame
