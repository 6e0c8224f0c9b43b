"""Statistics, the claims registry and verdicts, the delta figure (hand-made runs, hand-computed numbers)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mulsupcon_ld.cli import main as cli_main
from mulsupcon_ld.report import aggregate, claims, delta, stats, tables
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
    # different seed sets: Welch
    assert stats.compare([1, 2, 3], [2, 0, 0], seeds_a=[0, 1, 2], seeds_b=[0, 1, 3]).test == "Welch t"


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


# ------------------------------------------------------------------------------------- registry


def test_registry_is_the_papers_claims():
    reg = claims.load_claims()
    built = claims.build_registry()
    pd.testing.assert_frame_equal(reg.astype(str), built.astype(str), check_dtype=False)
    assert reg["claim_id"].is_unique
    kinds = reg["kind"].value_counts()
    assert set(kinds.index) == {"ld-vs-mulsupcon", "cld-vs-rld", "ablation", "grid-trend", "control"}
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
    assert control["ours"].all() and not reg.loc[reg["kind"] != "control", "ours"].any()
    assert set(control["a_method"]) == {"mulsupcon"} and set(control["b_method"]) == {"bce"}
    assert reg["quote"].str.len().min() > 20


def _one(kind_filter, **where):
    reg = claims.load_claims()
    sel = reg[reg["kind"] == kind_filter]
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel.head(1)


def test_reversed_holds_not_shown_and_no_runs():
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
    assert r["p_holm"] == pytest.approx(r["p_value"])  # the only claim tested: a family of one
    n1 = out.loc[yeast["claim_id"].iloc[0]]  # one seed per side: no test, whatever the means
    assert n1["verdict"] == "not shown" and math.isnan(n1["p_value"]) and "n = 1 on side a and n = 1" in n1["reason"]
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
    assert list(csv.columns[:17]) == claims.RESULT_COLUMNS
    assert set(csv["verdict"]) <= set(claims.VERDICTS) and (csv["verdict"] == "no runs").sum() > 0
    tested = csv[csv["p_value"].notna()]
    assert len(tested) > 0 and (tested["p_holm"] >= tested["p_value"]).all()
    text = out.read_text()
    assert "## Summary" in text and "Holm" in text and "superior performance" in text
    with Image.open(png) as im:
        im.load()
        assert im.size[0] > 800 and im.size[1] > 300
        low, high = im.convert("L").getextrema()
        assert high - low > 100  # not blank
    assert (tmp_path / "delta.pdf").read_bytes()[:4] == b"%PDF"
    frame = delta.delta_frame(runs)
    assert set(frame["table"]) == {"2", "3", "5"}  # Table 6 repeats Table 5's grid: left out
    assert len(frame) == 3 * 6 + 6  # 3 methods × (4 + 2 metrics) + the default grid cell (α 0.1, β 1) × 6
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
