"""``mulsupcon-ld claims``: does each claim of the paper hold on our runs? With statistics.

The claims live in ``baselines/paper_claims.csv`` (the registry; columns in :data:`REGISTRY_COLUMNS`):
one row per comparison "configuration a scores higher than configuration b on this dataset and
metric", with the sentence or table of the paper it comes from. A configuration is (method,
ablation, α, β); empty α, β mean the library's default for the dataset (as in Tables 2–4) and are
ignored for methods without a label-distribution loss (MulSupCon, our BCE control).

For each claim, the runs of both sides are taken from one (scale, synthetic, preset) group — real
over synthetic, paper scale over smoke, the ``paper`` preset over others, never mixed, as in the
tables — whose runs must have computed alike (:func:`.homogeneity.check_pair`: one error line, or
``--allow-mixed``), and compared with :func:`.stats.compare` (paired t on the seeds both sides hold,
Welch's t only for disjoint seed sets; the ``test`` column says which). Verdicts (holds, reversed,
paper effect excluded, printed Δ not reproduced, inconclusive, untestable, no runs), one 5% budget per
family fixed by the registry, the paper's Δ as k runs of our spread, and power: :mod:`.verdicts`,
:mod:`.paper_delta`, :mod:`.power`.

The registry is generated from the paper's tables by :func:`build_registry`
(``python -m mulsupcon_ld.report.claims``) so "where the paper shows it ahead" is decided by the
printed numbers, not by hand; the tests check the committed CSV against it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import write_text
from ..errors import UserError
from ..names import LD_METHODS, NO_LD_METHODS, PAPER_METHOD
from ..paper_numbers import REPO_ROOT
from ..pipeline import plan
from . import layouts
from .format import banner_lines, num
from .runs_table import read_runs_arg
from .delta import write_delta
from .diff import write_diff_cells
from .forest import plot_forest
from .homogeneity import MIXED, check_pair
from .paper_delta import PAPER_LABEL, paper_deltas, paper_values
from .stats import SPREAD_FLOOR, compare
from .tables import RunIndex, TableFrames, load_paper, markdown_table, seed_values, write_table_frame
from .power import MAX_SEEDS
from .verdicts import (FAMILY_TITLE, K_DEFAULT, K_SENSITIVITY, VERDICTS, budget_text, excluded_under, family_sizes,
                       judge)

REGISTRY = REPO_ROOT / "baselines" / "paper_claims.csv"
SIDE_COLUMNS = ("method", "ablation", "alpha", "beta")
REGISTRY_COLUMNS = (["claim_id", "kind", "ours", "source", "quote", "claim", "dataset", "metric"]
                    + [f"a_{c}" for c in SIDE_COLUMNS] + [f"b_{c}" for c in SIDE_COLUMNS])
RESULT_COLUMNS = ["claim_id", "claim", "dataset", "metric", "a", "b", "n_a", "n_b", "mean_a", "mean_b", "diff",
                  "ci_low", "ci_high", "paper_diff", "p_value", "p_holm", "p_excl_k1", "p_excl_k1_holm",
                  "p_printed_holm", "p_excl_k3_holm", "p_excl_k5_holm", "mdd_80", "seeds_for_paper",
                  "seeds_to_exclude", "test", "verdict"]
EXTRA_COLUMNS = ["kind", "ours", "family", "m", "level", "level_excl", "paper_a", "paper_b", "paper_diff_min",
                 "p_printed", "p_excl_k3", "p_excl_k5", "sd_run", "paper_ci_low", "paper_ci_high", "note",
                 "source", "reason", "seeds_a", "seeds_b", "scale", "synthetic", "preset"]
KIND_TITLE = {
    "ld-vs-mulsupcon": "Each LD variant beats MulSupCon (Tables 2–4, where the paper shows it ahead)",
    "cld-vs-rld": "MulSupCon_CLD beats MulSupCon_RLD (Tables 2–4, where the paper shows it ahead)",
    "ablation": "Each ablated term hurts (Figure 2)",
    "grid-trend": "The sensitivity trends the text states (Tables 5–8, where the paper shows them)",
    "control": "Contrastive pretraining beats no pretraining (our question, not the paper's)",
    "vs-asl": "MulSupCon and MulSupCon_CLD beat ASL run by us (our question, not the paper's)",
}

# --------------------------------------------------------------------------------------------
# the registry

#: quotes of the paper (Section 4), verbatim
Q_SUPERIOR = ("From the experimental results, our methods demonstrate superior performance on both vector "
              "and image datasets.")
Q_CLD = "However, overall, MulSupCon_{CLD} outperforms MulSupCon_{RLD}."
Q_SINGLE = "From the experimental results, we observe that removing any single component affects the model's performance."
Q_ALL = "When we remove all components simultaneously, the model's performance drops significantly."
Q_SCENE = ("Additionally, on the Scene dataset, when we fixed hyperparameter α and increased hyperparameter β , "
           "the model eventually achieve its best performance.")
Q_PASCAL = ("In contrast, on the PASCAL dataset, fixing hyperparameter β and increasing hyperparameter α lead to "
            "the best performance for our model.")
Q_CONTROL = ("Ours (not in the paper): contrastive pretraining (MulSupCon) scores higher than the same network "
             "fine-tuned from random initialisation (--method bce).")
Q_ASL = ("Ours (not in the paper): the paper compares with ASL's quoted numbers, produced by other code on other "
         "splits; here MulSupCon and MulSupCon_CLD score higher than ASL run by us (--method asl: the same MLP "
         "fine-tuned from scratch with the asymmetric loss, the BCE control's budget, data, seeds and selection).")
LD_LABEL = {m: PAPER_METHOD[m] for m in LD_METHODS}


def _side(method: str, ablation: str = "none", alpha: float | None = None, beta: float | None = None) -> dict:
    return {"method": method, "ablation": ablation,
            "alpha": "" if alpha is None else plan.fmt_num(alpha), "beta": "" if beta is None else plan.fmt_num(beta)}


def _row(kind: str, source: str, quote: str, claim: str, dataset: str, metric: str, a: dict, b: dict,
         ours: bool = False) -> dict:
    row = {"kind": kind, "ours": ours, "source": source, "quote": quote, "claim": claim, "dataset": dataset,
           "metric": metric}
    row.update({f"a_{k}": v for k, v in a.items()})
    row.update({f"b_{k}": v for k, v in b.items()})
    return row


def build_registry(paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every claim, derived from the paper's printed numbers where the text's claim is about them."""
    paper = load_paper() if paper is None else paper
    value = {k: float(v) for k, v in paper_values(paper).items()}
    na = plan.NA
    rows = []
    main = [(t, ds, title, m) for t in ("2", "3", "4") for ds, title in zip(layouts.TABLES[t].datasets,
                                                                          layouts.TABLES[t].titles)
            for block in layouts.TABLES[t].blocks for m in block]
    for t, ds, title, m in main:  # each LD variant vs MulSupCon, where the paper prints it ahead
        base = value.get((t, ds, "MulSupCon", m, na, na))
        for ld in ("rld", "cld"):
            v = value.get((t, ds, LD_LABEL[ld], m, na, na))
            if base is not None and v is not None and v > base:
                rows.append(_row("ld-vs-mulsupcon", f"Section 4.1; Table {t}", Q_SUPERIOR,
                                 f"{LD_LABEL[ld]} > MulSupCon on {title} {m} (paper {v:g} vs {base:g})", ds, m,
                                 _side(ld), _side("mulsupcon")))
    for t, ds, title, m in main:  # CLD vs RLD
        c, r = (value.get((t, ds, LD_LABEL[x], m, na, na)) for x in ("cld", "rld"))
        if c is not None and r is not None and c > r:
            rows.append(_row("cld-vs-rld", f"Section 4.1; Table {t}", Q_CLD,
                             f"MulSupCon_CLD > MulSupCon_RLD on {title} {m} (paper {c:g} vs {r:g})", ds, m,
                             _side("cld"), _side("rld")))
    for ds, title in zip(plan.FIGURE2_DATASETS, layouts.FIGURE2_TITLES):  # Figure 2 prints no numbers
        for abl in ("no-alpha", "no-beta", "no-all"):
            for m in plan.METRICS:
                rows.append(_row("ablation", "Section 4.2; Figure 2", Q_ALL if abl == "no-all" else Q_SINGLE,
                                 f"full MulSupCon_CLD > {layouts.ABLATION_LABEL[abl]} on {title} {m}", ds, m,
                                 _side("cld"), _side("cld", abl)))
    # grid trends: Scene (Table 5) β = 1 vs 0.001 at each α; PASCAL (Table 8) α = 1 vs 0.001 at each β
    lo, hi = plan.PAPER_GRID[0], plan.PAPER_GRID[-1]
    for t, ds, title, fixed, quote in (("5", "scene", "Scene", "alpha", Q_SCENE), ("8", "pascal", "PASCAL", "beta",
                                                                                    Q_PASCAL)):
        moving, sym = ("beta", "β") if fixed == "alpha" else ("alpha", "α")
        fsym = "α" if fixed == "alpha" else "β"
        for f in plan.PAPER_GRID:
            ab_hi = {fixed: f, moving: hi}
            ab_lo = {fixed: f, moving: lo}
            for m in plan.METRICS:
                vh = value.get((t, ds, "MulSupCon_CLD", m, plan.fmt_num(ab_hi["alpha"]), plan.fmt_num(ab_hi["beta"])))
                vl = value.get((t, ds, "MulSupCon_CLD", m, plan.fmt_num(ab_lo["alpha"]), plan.fmt_num(ab_lo["beta"])))
                if vh is not None and vl is not None and vh > vl:
                    rows.append(_row("grid-trend", f"Section 4.3; Table {t}", quote,
                                     f"CLD on {title}, {fsym} = {plan.fmt_num(f)}: {sym} = {plan.fmt_num(hi)} > "
                                     f"{sym} = {plan.fmt_num(lo)} on {m} (paper {vh:g} vs {vl:g})", ds, m,
                                     _side("cld", alpha=ab_hi["alpha"], beta=ab_hi["beta"]),
                                     _side("cld", alpha=ab_lo["alpha"], beta=ab_lo["beta"])))
    for ds, title in layouts.DATASET_TITLE.items():  # our control
        for m in plan.METRICS:
            rows.append(_row("control", "ours (issue 9: no-pretraining control)", Q_CONTROL,
                             f"MulSupCon > BCE (no pretraining, ours) on {title} {m}", ds, m, _side("mulsupcon"),
                             _side("bce"), ours=True))
    for ds, title in zip(layouts.TABLES["2"].datasets, layouts.TABLES["2"].titles):  # ours: vs ASL run by us
        for a in ("mulsupcon", "cld"):
            for m in plan.METRICS:
                rows.append(_row("vs-asl", "ours (issue 17: ASL run by us)", Q_ASL,
                                 f"{PAPER_LABEL[a]} > ASL (ours) on {title} {m}", ds, m, _side(a), _side("asl"),
                                 ours=True))
    frame = pd.DataFrame(rows)
    frame.insert(0, "claim_id", [f"C{i:03d}" for i in range(1, len(frame) + 1)])
    return frame[REGISTRY_COLUMNS]


def load_claims(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The registry CSV (text columns as text, empty α/β as "")."""
    path = Path(path or REGISTRY)
    if not path.is_file():
        raise UserError(f"claims registry {path} does not exist")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REGISTRY_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    frame["ours"] = frame["ours"].str.lower().isin(("true", "1", "yes"))
    return frame


# --------------------------------------------------------------------------------------------
# evaluation


def side_label(claim: dict, side: str) -> str:
    """``cld (α=0.1, β=1)``, ``cld no-alpha (default α, β)``, ``mulsupcon``."""
    method, abl = claim[f"{side}_method"], claim[f"{side}_ablation"]
    text = method + ("" if abl in ("", "none") else f" {abl}")
    if method in NO_LD_METHODS:
        return text
    a, b = claim[f"{side}_alpha"], claim[f"{side}_beta"]
    return text + (f" (α={a}, β={b})" if a or b else " (default α, β)")


def _config(claim: dict, side: str, scale: str) -> tuple[str, str, str, str, str]:
    ds, method = claim["dataset"], claim[f"{side}_method"]
    a, b = claim[f"{side}_alpha"], claim[f"{side}_beta"]
    if not a and not b and method not in NO_LD_METHODS:
        a, b = (plan.fmt_num(x) for x in layouts.default_alpha_beta(ds, scale))
    return RunIndex.config_key(ds, method, claim[f"{side}_ablation"] or "none", a or None, b or None)


def _group_name(group: tuple) -> str:
    scale, synthetic, preset = group
    return f"{scale}{' synthetic' if synthetic else ''}" + ("" if preset in ("", "paper") else f" preset {preset}")


def _sides(claim: dict, index: RunIndex, allow_mixed: bool = False
           ) -> tuple[list[float], list[int], list[float], list[int], tuple, str]:
    """Values and seeds of both sides from the first group where both have ``ok`` runs (which must
    have computed alike: :func:`.homogeneity.check_pair`); else (for the counts) the first group where
    either has, and why nothing can be compared."""
    found: dict[str, list[tuple]] = {"a": [], "b": []}
    fallback = None
    for group in index.group_order:
        scale = group[0]
        rows_a, rows_b = index.rows(_config(claim, "a", scale), group), index.rows(_config(claim, "b", scale), group)
        va, sa = seed_values(rows_a, claim["metric"])
        vb, sb = seed_values(rows_b, claim["metric"])
        if va and vb:
            mix = check_pair(rows_a, rows_b, f"claim {claim['claim_id']} ({claim['dataset']}, {claim['metric']}: "
                                             f"{side_label(claim, 'a')} vs {side_label(claim, 'b')})", allow_mixed)
            return va, sa, vb, sb, group, (f"{MIXED}: {mix}" if mix else "")
        for side, v in (("a", va), ("b", vb)):
            if v:
                found[side].append(group)
        if (va or vb) and fallback is None:
            fallback = (va, sa, vb, sb, group)
    empty = [s for s in ("a", "b") if not found[s]]
    if empty:
        reason = f"no ok runs on side {' and '.join(empty)}"
    else:  # both sides ran, never in the same group (e.g. one only at smoke scale)
        reason = "; ".join(f"side {s} has ok runs only at {', '.join(map(_group_name, found[s]))}"
                           for s in ("a", "b")) + ": never in the same group"
    return (*(fallback or ([], [], [], [], ("", False, ""))), reason)


def evaluate_claims(claims: pd.DataFrame, runs: pd.DataFrame, sizes: dict[str, int] | None = None,
                    allow_mixed: bool = False) -> pd.DataFrame:
    """One row per claim: :data:`RESULT_COLUMNS` then :data:`EXTRA_COLUMNS`. ``sizes``: each family's
    ``m`` (default: its count in ``claims``, the registry — never what ran). A pair of sides that
    computed differently stops with one error, or with ``allow_mixed`` is tested and marked MIXED."""
    index = RunIndex(runs)
    out, comparisons = [], []
    for claim in claims.to_dict("records"):
        va, sa, vb, sb, (scale, synthetic, preset), why = _sides(claim, index, allow_mixed)
        row: dict[str, Any] = {k: claim[k] for k in ("claim_id", "claim", "dataset", "metric", "kind", "ours",
                                                     "source")}
        row.update(a=side_label(claim, "a"), b=side_label(claim, "b"), seeds_a=",".join(map(str, sorted(sa))),
                   seeds_b=",".join(map(str, sorted(sb))), scale=scale, synthetic=synthetic, preset=preset,
                   runs=bool(va and vb))
        c = compare(va, vb, sa, sb) if va and vb else None
        comparisons.append(c)
        if c is None:
            row.update(n_a=len(va), n_b=len(vb), mean_a=math.nan, mean_b=math.nan, diff=math.nan,
                       ci_low=math.nan, ci_high=math.nan, p_value=math.nan, test="", reason=why)
        else:
            row.update(n_a=c.n_a, n_b=c.n_b, mean_a=c.mean_a, mean_b=c.mean_b, diff=c.diff, ci_low=c.ci_low,
                       ci_high=c.ci_high, p_value=c.p_value, test=c.test,
                       reason="; ".join(r for r in (why, c.reason) if r))
        out.append(row)
    frame = pd.DataFrame(out).join(paper_deltas(claims), on="claim_id")
    judge(frame, comparisons, family_sizes(claims) if sizes is None else sizes)
    return frame[RESULT_COLUMNS + EXTRA_COLUMNS]


# --------------------------------------------------------------------------------------------
# rendering


def verdict_counts(frame: pd.DataFrame, by: tuple[str, ...] = ("kind",)) -> pd.DataFrame:
    """Claims per group of ``by`` (rows, registry order; datasets by title) and verdict (columns, at
    k = 1), then ``paper effect excluded`` under each k of the sensitivity, with a total row."""
    label = frame[list(by)].replace({"dataset": layouts.DATASET_TITLE}).astype(str).agg(" · ".join, axis=1)
    rows = pd.Categorical(label, categories=list(dict.fromkeys(label)))
    counts = pd.crosstab(rows, pd.Categorical(frame["verdict"], categories=VERDICTS), dropna=False)
    counts.columns = list(VERDICTS)
    for k in K_SENSITIVITY:
        counts[f"excluded, k = {k}"] = excluded_under(frame, k).groupby(rows, observed=False).sum()
    counts.loc["total"] = counts.sum()
    return counts


def _g(x: float, digits: int = 3) -> str:
    return num(x, digits)


def _p(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2g}"


def _n(x: float) -> str:
    """Seeds needed: ``—`` (no Δ or no spread), ``> 1000``, or the count."""
    if x is None or math.isnan(x):
        return "—"
    return f"> {MAX_SEEDS}" if math.isinf(x) else str(int(x))


def _method_text(frame: pd.DataFrame) -> str:
    sizes = frame.drop_duplicates("family").set_index("family")["m"]
    families = "; ".join(f"{FAMILY_TITLE.get(f, f)}, m = {int(m)}" for f, m in sizes.items())
    return (
        "Each claim (registry: `baselines/paper_claims.csv`, with the paper's sentence or table) says that "
        "configuration **a** scores higher than **b** on one dataset and metric (`paper` protocol). diff = mean a − "
        "mean b over the seeds the test used, with its (unadjusted) 95% confidence interval. Test: *paired t* on "
        "the seeds both sides hold (a seed fixes the initial weights and the batch order, so runs sharing a seed "
        "are dependent), *Welch t* only for disjoint seed sets. Families are fixed by the registry, not by what "
        f"ran ({families}); an untested claim counts as p = 1. Error budget: {budget_text()}. Adjusted p-values "
        "(*adj.*) compare with 0.05. "
        "**holds** / **reversed** = two-sided p (adj.) < 0.05 in / against the claimed direction; "
        "**paper effect excluded** = neither, but the one-sided test that our difference is at least the paper's "
        "Δ (printed, less what rounding allows), with that Δ one run of our spread (k = 1: the paper states no "
        "run count), has p (adj.) < 0.05; **printed Δ not reproduced** = only the same test with the printed Δ "
        "taken as exact (p printed, adj.) < 0.05 — our mean is below the printed number, but one run of the "
        "paper's could have been that far from ours; **inconclusive** = none; **untestable** = no variance "
        f"estimate (fewer than 2 runs on a side, one shared seed, or one run's sd of a − b below {SPREAD_FLOOR:g}); "
        "**no runs** = a side was not run. *note* flags where the unadjusted CI and the adjusted verdict "
        "disagree. MDD = the smallest difference our seeds detect with 80% power at the two-sided test's "
        "first-step level α·w; seeds for Δ = pairs (paired) or seeds per side (Welch) the paper's Δ would need "
        "for that power; seeds to exclude = the same for the k = 1 exclusion test, if our observed difference "
        "is the truth (> 1000 includes never: a gap the paper's one run could explain). Spreads are ours, "
        "plugged in. Design and caveats: `docs/claims.md`. Claims marked *ours* are our own questions, not the "
        "paper's.")


def _power_summary(frame: pd.DataFrame) -> list[str]:
    tested = frame[frame["mdd_80"].notna()]
    if tested.empty:
        return []
    rows = []
    for kind, part in tested.groupby("kind", sort=False):
        with_delta = part[part["paper_diff"].notna()]
        rows.append([kind, str(len(part)), _g(part["mdd_80"].median(), 4),
                     _g(with_delta["paper_diff"].median(), 4) if len(with_delta) else "—",
                     f"{int((with_delta['paper_diff'] >= with_delta['mdd_80']).sum())} / {len(with_delta)}"
                     if len(with_delta) else "—",
                     _n(with_delta["seeds_for_paper"].median()) if len(with_delta) else "—",
                     _n(with_delta["seeds_to_exclude"].median()) if len(with_delta) else "—"])
    return ["", "## Power", "",
            "Per kind, over the tested claims: the median smallest difference detected with 80% power at the "
            "two-sided test's first-step level α·w, the median paper Δ, how many claims' paper Δ is at least that "
            "detectable difference, the median seeds per side (pairs) the paper's Δ would need, and the median "
            "seeds at which the k = 1 exclusion test reaches 80% power if our observed difference is the truth.",
            "", markdown_table(["kind", "tested", "median MDD (80%)", "median paper Δ", "paper Δ ≥ MDD",
                                "median seeds for paper Δ", "median seeds to exclude"], rows)]


def _claim_rows(shown: pd.DataFrame) -> str:
    body = [[r["claim_id"], r["claim"], r["a"], r["b"], f"{r['n_a']} / {r['n_b']}", _g(r["mean_a"]),
             _g(r["mean_b"]), _g(r["diff"], 4) if r["n_a"] and r["n_b"] else "—",
             f"[{_g(r['ci_low'], 4)}, {_g(r['ci_high'], 4)}]" if r["p_value"] == r["p_value"] else "—",
             _g(r["paper_diff"], 3), _p(r["p_holm"]), _p(r["p_excl_k1_holm"]), _p(r["p_printed_holm"]),
             f"{_p(r['p_excl_k3_holm'])} / {_p(r['p_excl_k5_holm'])}", _g(r["mdd_80"], 4),
             _n(r["seeds_for_paper"]), _n(r["seeds_to_exclude"]), r["test"] or r["reason"], f"**{r['verdict']}**",
             r["note"]]
            for r in shown.to_dict("records")]
    return markdown_table(["id", "claim", "a", "b", "n a / b", "mean a", "mean b", "diff", "95% CI", "paper Δ",
                           "p (adj.)", "p excl. k = 1 (adj.)", "p printed Δ (adj.)", "p excl. k = 3 / 5 (adj.)",
                           "MDD (80%)", "seeds for Δ", "seeds to exclude", "test", "verdict", "note"], body)


def _count_table(counts: pd.DataFrame, first: str) -> str:
    sens = [f"excluded, k = {k}" for k in K_SENSITIVITY]
    return markdown_table([first] + list(VERDICTS) + ["claims", "paper effect excluded at k = "
                                                      + " / ".join(map(str, K_SENSITIVITY))],
                          [[k] + [str(int(counts.loc[k, v])) for v in VERDICTS]
                           + [str(int(counts.loc[k, list(VERDICTS)].sum())),
                              " / ".join(str(int(counts.loc[k, c])) for c in sens)] for k in counts.index])


def render_claims(frame: pd.DataFrame) -> str:
    ok = frame[frame["verdict"] != "no runs"]
    synthetic = bool(ok["synthetic"].astype(bool).any())
    lines = ["# The paper's claims, tested on our runs", ""]
    lines += banner_lines(synthetic, ok["scale"], "verdicts")
    lines += [_method_text(frame), "", "## Summary", "",
              f"Verdicts with the paper's Δ as one run of our spread (k = {K_DEFAULT}); {budget_text()}. The last "
              "column: claims whose verdict would be *paper effect excluded* with the paper's Δ a mean of k runs.", "",
              _count_table(verdict_counts(frame), "kind"), "", "By dataset and kind:", ""]
    by_dataset = verdict_counts(frame, ("kind", "dataset"))
    unrun = [k for k in by_dataset.index
             if k != "total" and by_dataset.loc[k, "no runs"] == by_dataset.loc[k, list(VERDICTS)].sum()]
    lines.append(_count_table(by_dataset.drop(index=unrun), "kind · dataset"))
    if unrun:
        lines += ["", f"No runs at all (left out above): {'; '.join(unrun)}."]
    lines += _power_summary(frame)
    for kind, part in frame.groupby("kind", sort=False):
        lines += ["", f"## {KIND_TITLE.get(kind, kind)}", ""]
        for quote, sources in part.groupby("quote", sort=False)["source"]:
            lines.append(f"> “{quote}” ({'; '.join(dict.fromkeys(sources))})  ")
        lines.append("")
        shown = part[part["verdict"] != "no runs"]
        if len(shown):
            lines.append(_claim_rows(shown))
        missing = part[part["verdict"] == "no runs"]
        if len(missing):
            by_ds = missing.groupby("dataset", sort=False)["claim_id"].agg(list)
            lines += ["", f"**no runs** ({len(missing)} claims): "
                      + "; ".join(f"{layouts.DATASET_TITLE.get(ds, ds)} {_id_range(ids)}" for ds, ids in by_ds.items())
                      + "."]
    return "\n".join(lines) + "\n"


def _id_range(ids: list[str]) -> str:
    return f"{ids[0]}–{ids[-1]}" if len(ids) > 1 else ids[0]


def write_claims(runs: pd.DataFrame, out_md: str | os.PathLike, out_csv: str | os.PathLike | None = None,
                 claims: pd.DataFrame | None = None, allow_mixed: bool = False) -> pd.DataFrame:
    """Test every claim on ``runs``; write the markdown, the CSV (beside it by default) and the
    forest plot (``.png`` and ``.pdf`` beside the markdown)."""
    claims = load_claims() if claims is None else claims
    frame = evaluate_claims(claims, runs, allow_mixed=allow_mixed)
    frame["quote"] = claims.set_index("claim_id").loc[frame["claim_id"], "quote"].to_numpy()
    write_text(out_md, render_claims(frame))
    out_csv = out_csv or Path(out_md).with_suffix(".csv")
    write_text(out_csv, frame[RESULT_COLUMNS + EXTRA_COLUMNS].to_csv(index=False))
    stem = Path(out_md).with_suffix("")
    plot_forest(frame, [f"{stem}.png", f"{stem}.pdf"])
    return frame


def cmd_claims(args: argparse.Namespace) -> int:
    runs = read_runs_arg(args.runs)
    allow_mixed = getattr(args, "allow_mixed", False)
    frame = write_claims(runs, args.out, args.csv, load_claims(args.registry) if args.registry else None,
                         allow_mixed)
    frames = TableFrames(runs, tolerance=args.tolerance, allow_mixed=allow_mixed)   # each table's cells once, for the figure and the tables
    if args.figure:
        stem = Path(args.figure).with_suffix("")
        write_delta(runs, f"{stem}.png", f"{stem}.pdf", frames=frames)
    if args.tables_dir:
        write_tables_dir(frames, args.tables_dir)
    counts = frame["verdict"].value_counts()
    print(f"{args.out}: {len(frame)} claims: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS),
          file=sys.stderr)
    return 0


def write_tables_dir(frames: TableFrames, out_dir: str | os.PathLike) -> list[str]:
    """Regenerate, in ``out_dir``, every table with at least one of our numbers, and ``diff.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in plan.TABLE_IDS:
        if (frames[t]["status"] == "ok").any():
            write_table_frame(t, frames[t], out / f"table{t}.md", out / f"table{t}.csv", frames.tolerance)
            written.append(f"table{t}")
    write_diff_cells(frames, str(out / "diff.md"))
    return written


def main(argv: list[str] | None = None) -> int:
    """Rewrite the registry from the paper's numbers: ``python -m mulsupcon_ld.report.claims [OUT]``."""
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else REGISTRY
    write_text(out, build_registry().to_csv(index=False))
    print(f"{out}: {len(build_registry())} claims", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
