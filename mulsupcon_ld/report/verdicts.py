"""Verdicts of the claims: families fixed in advance, Holm within each, the paper's own effect size.

Design (``docs/claims.md`` explains it for readers):

- **Families.** The paper's claims (every registry row not marked ``ours``) are one family; each of
  our own questions (``ours`` rows, by ``kind``: the no-pretraining control, the comparison with
  ASL run by us) is another. Their sizes ``m`` are the registry's counts, not the number of claims
  that happen to have runs: an untested claim counts as p = 1, so adding runs never changes ``m``.
- **holds / reversed.** Two-sided t-test of "no difference", Holm-adjusted within the family, at 5%;
  the sign of the difference gives the direction.
- **paper effect excluded.** One-sided t-test of "our difference is at least the paper's", where
  the paper's difference is lowered by what rounding the printed numbers could explain
  (:mod:`.paper_delta`); Holm-adjusted within the same family (same ``m``) at 5%. This is the
  question "is the effect the paper printed still possible?", asked only where the first test did
  not decide.
- **inconclusive** (neither), **untestable** (no variance estimate: fewer than 2 runs on a side, a
  constant difference, one shared seed), **no runs** (a side not run in a comparable group).
- **Power** at the level a claim must reach whatever the others do, Holm's first step α/m
  (:mod:`.power`).
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from .power import detectable_difference, seeds_needed
from .stats import ALPHA, Comparison, holm

FAMILY_TITLE = {"paper": "the paper's claims", "control": "our no-pretraining control",
                "vs-asl": "our comparison with ASL run by us"}
VERDICTS = ("holds", "reversed", "paper effect excluded", "inconclusive", "untestable", "no runs")
JUDGED_COLUMNS = ["family", "m", "level", "p_holm", "p_excl", "p_excl_holm", "verdict", "mdd_80",
                  "seeds_for_paper", "note"]


def families(claims: pd.DataFrame) -> pd.Series:
    """The family of each claim: ``paper`` for the paper's claims, the ``kind`` for ours."""
    return claims["kind"].where(claims["ours"].astype(bool), "paper")


def family_sizes(claims: pd.DataFrame) -> dict[str, int]:
    """``m`` of each family: how many claims of the registry it holds."""
    return {str(f): int(n) for f, n in families(claims).value_counts(sort=False).items()}


def exclusion_p(diff: float, se: float, df: float, margin: float) -> float:
    """One-sided p-value of "the true difference is at least ``margin``" (small when ours is below)."""
    from scipy import stats

    if any(math.isnan(x) for x in (diff, se, df, margin)) or not se > 0:
        return math.nan
    return float(stats.t.cdf((diff - margin) / se, df))


def verdict(r: dict) -> str:
    """One of :data:`VERDICTS` from a row with ``runs`` (both sides ran), ``p_value``, ``p_holm``,
    ``p_excl_holm`` and ``diff``."""
    if not r["runs"]:
        return "no runs"
    if math.isnan(r["p_value"]):
        return "untestable"
    if r["p_holm"] < ALPHA:
        return "holds" if r["diff"] > 0 else "reversed"
    if r["p_excl_holm"] < ALPHA:
        return "paper effect excluded"
    return "inconclusive"


def note(r: dict) -> str:
    """Where the unadjusted 95% CI and the adjusted verdict disagree, and holds-but-smaller."""
    if r["verdict"] in ("no runs", "untestable"):
        return ""
    m = f"not significant after Holm over m = {r['m']}"
    if r["verdict"] not in ("holds", "reversed") and (r["ci_low"] > 0 or r["ci_high"] < 0):
        return f"95% CI excludes 0, {m}"
    if r["verdict"] == "inconclusive" and r["ci_high"] < r["paper_diff_min"]:
        return f"95% CI below the paper's Δ, {m}"
    if r["verdict"] == "holds" and r["p_excl_holm"] < ALPHA:
        return "smaller than the paper's Δ (excluded too)"
    return ""


def judge(frame: pd.DataFrame, comparisons: Sequence[Comparison | None], sizes: dict[str, int]) -> pd.DataFrame:
    """Add :data:`JUDGED_COLUMNS` to ``frame`` (one row per claim with ``ours``, ``diff``, ``p_value``,
    ``ci_low``, ``ci_high``, ``paper_diff``, ``paper_diff_min`` and ``runs``), in place and returned."""
    frame["family"] = families(frame)
    frame["m"] = frame["family"].map(sizes).astype(int)
    frame["level"] = ALPHA / frame["m"]
    frame["p_excl"] = [exclusion_p(c.diff, c.se, c.df, margin) if c is not None else math.nan
                       for c, margin in zip(comparisons, frame["paper_diff_min"])]
    for column, source in (("p_holm", "p_value"), ("p_excl_holm", "p_excl")):
        frame[column] = math.nan
        for family, part in frame.groupby("family"):
            frame.loc[part.index, column] = holm(part[source].astype(float).tolist(), m=sizes[family])
    frame["verdict"] = [verdict(r) for r in frame.to_dict("records")]
    frame["mdd_80"] = [detectable_difference(c.se, c.df, level) if c is not None else math.nan
                       for c, level in zip(comparisons, frame["level"])]
    frame["seeds_for_paper"] = [seeds_needed(delta, level, c.sd_diff, c.sd_a, c.sd_b)
                                if c is not None and not math.isnan(c.se) else math.nan
                                for c, delta, level in zip(comparisons, frame["paper_diff"], frame["level"])]
    frame["note"] = [note(r) for r in frame.to_dict("records")]
    return frame
