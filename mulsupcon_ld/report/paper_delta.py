"""The paper's printed difference for a claim, and how much of it rounding could explain.

A claim "a > b" drawn from Tables 2–8 compares two printed numbers. Each was rounded to the
decimals it is printed with (``0.930``: three), so it may be off by half a unit of its last
decimal, and their difference by the two halves together: the smallest difference the paper's
numbers are consistent with is ``paper_diff − rounding``. Figure 2 (the ablations) prints no
numbers and our own questions have none: their Δ is NaN.

Rounding is not the paper's only uncertainty: its Δ is most likely one run's, with a seed spread
like ours. The exclusion test allows for that (the paper's Δ as the mean of k runs of our spread,
:func:`.verdicts.exclusion_test`, :func:`.stats.se_df_vs_runs`) on top of ``paper_diff_min``.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from ..paper_numbers import load_paper_numbers
from ..pipeline import plan

#: the paper's row label of our method names
PAPER_LABEL = {"mulsupcon": "MulSupCon", "rld": "MulSupCon_RLD", "cld": "MulSupCon_CLD"}
DELTA_COLUMNS = ["paper_a", "paper_b", "paper_diff", "paper_diff_min"]


def paper_values(printed: pd.DataFrame) -> dict[tuple[str, str, str, str, str, str], str]:
    """``(table, dataset, method label, metric, α, β) → value as printed`` (α, β as :func:`plan.fmt_num`)."""
    return {(str(r.table), r.dataset, r.method, r.metric, plan.fmt_num(r.alpha) if r.alpha == r.alpha else plan.NA,
             plan.fmt_num(r.beta) if r.beta == r.beta else plan.NA): str(r.value) for r in printed.itertuples()}


def _half_unit(text: str) -> float:
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0 ** -decimals


def _printed(values: dict, claim: dict, side: str) -> str | None:
    table = re.search(r"Table (\d+)", claim["source"])
    label = PAPER_LABEL.get(claim[f"{side}_method"])
    if claim["ours"] or table is None or label is None or claim[f"{side}_ablation"] not in ("", "none"):
        return None
    a, b = (claim[f"{side}_{k}"] or plan.NA for k in ("alpha", "beta"))
    return values.get((table.group(1), claim["dataset"], label, claim["metric"], a, b))


def paper_deltas(claims: pd.DataFrame, printed: pd.DataFrame | None = None) -> pd.DataFrame:
    """:data:`DELTA_COLUMNS` per claim (index: ``claim_id``)."""
    values = paper_values(load_paper_numbers(as_printed=True) if printed is None else printed)
    rows = []
    for claim in claims.to_dict("records"):
        pa, pb = _printed(values, claim, "a"), _printed(values, claim, "b")
        if pa is None or pb is None:
            rows.append([math.nan] * 4)
            continue
        diff = float(pa) - float(pb)
        rows.append([float(pa), float(pb), diff, diff - _half_unit(pa) - _half_unit(pb)])
    return pd.DataFrame(rows, columns=DELTA_COLUMNS, index=claims["claim_id"].to_numpy())
