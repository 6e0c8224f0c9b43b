"""Report layer without Snakemake: run plan, aggregation, paper-layout tables, diff, Figure 2.

Every runs table here is hand-made in the test (tiny, deterministic); the paper's numbers are the
project's baselines/paper_reported.csv.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from mulsupcon_ld import arithmetic as arithmetic_mod
from mulsupcon_ld.cli import main as cli_main
from mulsupcon_ld.pipeline import config as wfconfig, jobs, plan
from mulsupcon_ld.report import aggregate, diff, layouts, runs_table, tables
from mulsupcon_ld.run_settings import resolve_settings
from mulsupcon_ld.pipeline.plan import RunConfig, RunKey

METRICS = plan.METRICS


#: the resolved arithmetic of a hand-made run (mulsupcon_ld/arithmetic.py), unless a test says otherwise
ARITHMETIC = {"precision": "fp32", "lane": "fast", "flush_denormal": True, "reading": "printed", "torch": "x",
              "code": "abc", "threads": 1, "cpu_model": "Test CPU", "isa_class": "x86_64-avx2"}


def record(dataset, method, seed, value, *, alpha=None, beta=None, ablation="none", scale="paper",
           synthetic=False, arithmetic=None, **per_metric):
    """A metrics.json-like record: every metric = ``value`` unless given in ``per_metric``; its
    arithmetic is :data:`ARITHMETIC` updated with ``arithmetic``, and its cell key is computed from
    both, as a run's is."""
    if method not in plan.NO_LD_METHODS and alpha is None:
        alpha, beta = layouts.default_alpha_beta(dataset)
    metrics = {m: per_metric.get(m, value) for m in METRICS}
    arith = {**ARITHMETIC, **(arithmetic or {})}
    config = {"dataset": dataset, "method": method, "seed": seed, "alpha": alpha, "beta": beta,
              "ablation": ablation, "scale": scale, "synthetic": synthetic}
    return {**config, "metrics": {"paper": metrics, "val-threshold": {**metrics, "threshold": 0.4}},
            "config_hash": "c0ffee", "git_commit": arith["code"], "versions": {"torch": "x"}, "device": "cpu",
            "arithmetic": arith, "cell_key": arithmetic_mod.cell_key(config, arith)}


def runs_frame(*records) -> pd.DataFrame:
    return pd.DataFrame([aggregate.run_row(r, f"results/runs/x{i}/metrics.json") for i, r in enumerate(records)])


@pytest.fixture(scope="module")
def paper():
    return tables.load_paper()


def paper_value(paper, table, dataset, method, metric, alpha=None, beta=None):
    p = paper[(paper["table"].astype(str) == str(table)) & (paper["dataset"] == dataset)
              & (paper["method"] == method) & (paper["metric"] == metric)]
    if alpha is not None:
        p = p[(p["alpha"].astype(float) == alpha) & (p["beta"].astype(float) == beta)]
    assert len(p) == 1
    return float(p["value"].iloc[0])


def cell(frame, **where):
    sel = frame
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, where
    return sel.iloc[0]


# ------------------------------------------------------------------------------------- plan


def test_run_plan_counts_and_dedupe():
    rc = RunConfig(datasets=tuple(layouts.DATASET_TITLE))
    counts = {t: len(plan.runs_for_target(t, rc)) for t in plan.TABLE_IDS + ("figure2", "all")}
    # 5 vector datasets × 5 methods (3 + our bce and asl controls) × 5 seeds; 4 image datasets × 4 × 1 seed
    # (ASL (ours) is a row of Tables 2–3 only); 16 grid cells × seeds
    assert counts["2"] == counts["3"] == 125
    assert counts["4"] == 16
    assert counts["5"] == counts["6"] == 80 and counts["7"] == counts["8"] == 16
    assert counts["figure2"] == 4 * 5 + 4 * 1
    # shared: Table 2's CLD run on Scene = grid cell at the default α, β = Figure 2's full CLD
    # (and likewise on PASCAL), so the union is smaller than the sum
    assert plan.fmt_num(layouts.default_alpha_beta("scene")[0]) in map(plan.fmt_num, plan.PAPER_GRID)
    assert counts["all"] == 125 + 16 + (80 - 5) + (16 - 1) + 3 * 5 + 3 * 1 == 249
    main_cld = {k for k in plan.runs_for_target("2", rc) if k.dataset == "scene" and k.method == "cld"}
    assert main_cld <= set(plan.runs_for_target("5", rc))
    assert main_cld <= set(plan.runs_for_target("figure2", rc))
    assert set(plan.runs_for_target("5", rc)) == set(plan.runs_for_target("6", rc))


def test_run_key_paths_and_cli_args():
    key = RunKey("scene", "cld", "no-beta", "0.1", "1", 3, "smoke", True)
    assert key.result == "results/runs/smoke/scene-synthetic/cld/no-beta/a0.1_b1/seed3/metrics.json"
    assert key.state_dir == "results/state/smoke/scene-synthetic/cld/no-beta/a0.1_b1/seed3"
    assert key.cli_args() == ["--dataset", "scene", "--method", "cld", "--seed", "3", "--alpha", "0.1",
                              "--beta", "1", "--ablation", "no-beta", "--scale", "smoke", "--synthetic"]
    assert RunKey.from_path_parts("smoke", "scene-synthetic", "cld", "no-beta", "0.1", "1", "3") == key
    mulsupcon = RunKey("yeast", "mulsupcon", "none", "na", "na", 0, "paper", False)
    assert "--alpha" not in mulsupcon.cli_args() and "--synthetic" not in mulsupcon.cli_args()
    assert "--preset" not in mulsupcon.cli_args()
    # a preset other than paper goes into the first path segment and the arguments, and back
    official = RunKey("yeast", "bce", "none", "na", "na", 0, "paper", False, "mulsupcon-official")
    assert official.result == "results/runs/paper+mulsupcon-official/yeast/bce/none/ana_bna/seed0/metrics.json"
    assert official.cli_args()[-2:] == ["--preset", "mulsupcon-official"]
    assert RunKey.from_path_parts("paper+mulsupcon-official", "yeast", "bce", "none", "na", "na", "0") == official
    rc = RunConfig.from_config({"datasets": ["yeast"], "methods": ["bce"], "seeds": [0], "image_seeds": None,
                                "alphas": [1], "betas": [1], "ablations": ["none"], "scale": "paper",
                                "synthetic": False, "preset": "mulsupcon-official"})
    assert plan.runs_for_target("3", rc) == [official]
    assert [plan.fmt_num(x) for x in (0.001, 0.01, 0.1, 1, 1.0, "1", None)] == [
        "0.001", "0.01", "0.1", "1", "1", "1", "na"]


def test_config_strings_from_the_command_line_are_coerced():
    schema = {"type": "object", "properties": {
        "seeds": {"type": "array", "items": {"type": "integer"}},
        "alphas": {"type": "array", "items": {"type": "number"}},
        "raw_dir": {"type": ["string", "null"]},
        "image_seeds": {"type": ["array", "null"], "items": {"type": "integer"}},
        "resources": {"type": "object", "properties": {"vector": {"type": "object", "properties": {
            "threads": {"type": "integer"}}}}}}}
    got = wfconfig.coerce_config({"seeds": ["0", "1"], "alphas": ["0.1", "1"], "raw_dir": "null",
                              "image_seeds": "[0, 2]", "resources": {"vector": {"threads": "4"}},
                              "other": "x"}, schema)
    assert got == {"seeds": [0, 1], "alphas": [0.1, 1.0], "raw_dir": None, "image_seeds": [0, 2],
                   "resources": {"vector": {"threads": 4}}, "other": "x"}
    assert wfconfig.coerce_config({"raw_dir": "../shared/data"}, schema) == {"raw_dir": "../shared/data"}


# ------------------------------------------------------------------------------------- tables


def test_table2_layout_ours_next_to_paper(paper):
    runs = runs_frame(*(record("yeast", m, s, 0.70 + 0.01 * s) for m in ("mulsupcon", "rld", "cld", "bce", "asl")
                        for s in (0, 1)))
    frame = tables.table_frame("2", runs, paper, tolerance=0.02)
    md = tables.render_markdown("2", frame, 0.02)
    lines = md.splitlines()
    # one tabulate table per metric; each dataset split into an "ours" and a "paper" sub-column
    assert [line for line in lines if line.startswith("## ")] == ["## HA ↑", "## ebF1 ↑", "## miF1 ↑", "## maF1 ↑"]
    header = next(i for i, line in enumerate(lines) if line.startswith("| Algorithm"))
    assert [c.strip() for c in lines[header].strip("|").split("|")] == ["Algorithm"] + [
        f"{d} {side}" for d in ("Yeast", "Scene", "Bookmarks", "Delicious", "Mediamill") for side in ("ours", "paper")]
    body = lines[header + 2:header + 12]
    assert [line.split("|")[1].strip() for line in body] == [
        "LaMP (quoted)", "MPVAE (quoted)", "ASL (quoted)", "ASL (ours)", "RBCC (quoted)", "C-GMVAE (quoted)",
        "MulSupCon", "MulSupCon_RLD", "MulSupCon_CLD", "BCE (no pretraining, ours)"]
    mulsupcon = [c.strip() for c in body[6].strip("|").split("|")]
    assert mulsupcon[1].startswith("0.705 ± 0.007 (n=2), CI [") and mulsupcon[2] == "0.803 · **Δ -0.098 ⚠** · ours lower"
    assert len(frame) == 10 * 2 * 2 * 5
    # our controls (BCE, and ASL run by us beside the quoted ASL): our numbers, never a paper value
    for row in ("BCE (no pretraining, ours)", "ASL (ours)"):
        control = cell(frame, row=row, metric="HA", dataset="yeast")
        assert control["n"] == 2 and control["ours_mean"] == pytest.approx(0.705) and pd.isna(control["paper"])
    # quoted methods: the paper's number, labelled
    lamp = cell(frame, row="LaMP", metric="HA", dataset="yeast")
    assert lamp["text"] == f"{paper_value(paper, 2, 'yeast', 'LaMP', 'HA'):.3f} (quoted)"
    assert cell(frame, row="LaMP", metric="HA", dataset="mediamill")["text"] == "— (not reported)"
    # ours: mean ± std over the two seeds, n, the paper's value and Δ
    ours = cell(frame, row="MulSupCon", metric="HA", dataset="yeast")
    p = paper_value(paper, 2, "yeast", "MulSupCon", "HA")
    assert ours["n"] == 2 and ours["ours_mean"] == pytest.approx(0.705)
    assert ours["ours_std"] == pytest.approx(pd.Series([0.70, 0.71]).std())
    assert ours["diff"] == pytest.approx(0.705 - p)
    assert ours["text"].startswith("0.705 ± 0.007 (n=2), CI [")
    assert " · paper 0.803 · **Δ -0.098 ⚠** · ours lower" in ours["text"]
    # the 95% CI of two seeds: mean ± t(0.975, 1) · s/√2 = 0.705 ± 12.7062 · 0.005
    assert ours["ci_low"] == pytest.approx(0.705 - 12.7062 * 0.005, abs=1e-4)
    assert ours["ci_high"] == pytest.approx(0.705 + 12.7062 * 0.005, abs=1e-4)
    assert ours["paper_vs_ci"] == "ours lower"  # 0.803 > 0.705 + 0.0635
    assert "SYNTHETIC" not in md


def test_flag_beyond_tolerance(paper):
    p_cld = paper_value(paper, 3, "scene", "MulSupCon_CLD", "mAP")
    p_rld = paper_value(paper, 3, "scene", "MulSupCon_RLD", "mAP")
    runs = runs_frame(record("scene", "cld", 0, 0.5, mAP=p_cld + 0.015),
                      record("scene", "rld", 0, 0.5, mAP=p_rld - 0.03))
    frame = tables.table_frame("3", runs, paper, tolerance=0.02)
    within = cell(frame, row="MulSupCon_CLD", metric="mAP", dataset="scene")
    beyond = cell(frame, row="MulSupCon_RLD", metric="mAP", dataset="scene")
    assert within["within_tolerance"] is True and tables.FLAG not in within["text"]
    assert beyond["within_tolerance"] is False and beyond["text"].endswith(f"**Δ -0.030 {tables.FLAG}**")
    assert beyond["paper_vs_ci"] == ""  # one seed: no interval
    loose = tables.table_frame("3", runs, paper, tolerance=0.05)
    assert cell(loose, row="MulSupCon_RLD", metric="mAP", dataset="scene")["within_tolerance"] is True


def test_missing_and_unavailable_cells_show_a_dash_and_why(paper):
    unavailable = jobs.unavailable_record(RunKey("mediamill", "cld", "none", "0.1", "1", 0, "paper", False),
                                          "mediamill needs a manual download (mediamill.rar)")
    runs = runs_frame(record("yeast", "cld", 0, 0.6), unavailable)
    frame = tables.table_frame("2", runs, paper, tolerance=0.02)
    md = tables.render_markdown("2", frame, 0.02)
    media = cell(frame, row="MulSupCon_CLD", metric="HA", dataset="mediamill")
    assert media["status"] == "unavailable" and math.isnan(media["ours_mean"])
    assert media["text"].startswith("— (dataset not available [")
    assert "Mediamill: dataset not available: mediamill needs a manual download" in md
    never_run = cell(frame, row="MulSupCon", metric="HA", dataset="bookmarks")
    assert never_run["status"] == "missing" and never_run["text"].startswith("— (not run [")
    # no number is ever made up: only cells backed by runs have one
    ours = frame[frame["status"] != "quoted"]
    assert set(ours.loc[ours["ours_mean"].notna(), "dataset"]) == {"yeast"}
    assert cell(frame, row="MulSupCon_CLD", metric="HA", dataset="yeast")["status"] == "ok"
    assert cell(frame, row="MulSupCon_RLD", metric="HA", dataset="yeast")["status"] == "missing"


def test_grid_tables_read_the_right_runs(paper):
    runs = runs_frame(
        record("scene", "cld", 0, 0.5, alpha=0.1, beta=1.0, HA=0.91),
        record("scene", "cld", 0, 0.5, alpha=0.01, beta=0.001, HA=0.92),
        record("scene", "cld", 0, 0.5, alpha=0.01, beta=0.001, ablation="no-alpha", HA=0.10),  # not a grid run
    )
    t5 = tables.table_frame("5", runs, paper, 0.02)
    t6 = tables.table_frame("6", runs, paper, 0.02)
    md5 = tables.render_markdown("5", t5, 0.02)
    assert "## (c) Fix the parameter α at 0.1 on the Scene dataset." in md5
    header = next(line for line in md5.splitlines() if line.startswith("| β"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["β"] + [
        f"{m} {side}" for m in METRICS for side in ("ours", "paper")]
    assert "## (a) Fix the parameter β at 0.001 on the Scene dataset." in tables.render_markdown("6", t6, 0.02)
    c5 = cell(t5, panel="(c)", row="β = 1", metric="HA")
    c6 = cell(t6, panel="(d)", row="α = 0.1", metric="HA")
    assert c5["ours_mean"] == c6["ours_mean"] == 0.91
    assert c5["paper"] == paper_value(paper, 5, "scene", "MulSupCon_CLD", "HA", 0.1, 1.0)
    assert cell(t5, panel="(b)", row="β = 0.001", metric="HA")["ours_mean"] == 0.92
    assert cell(t5, panel="(a)", row="β = 0.001", metric="HA")["status"] == "missing"
    # Table 2's CLD cell uses only the default α, β (0.1, 1 here), not other grid cells
    t2 = tables.table_frame("2", runs, paper, 0.02)
    assert cell(t2, row="MulSupCon_CLD", metric="HA", dataset="scene")["ours_mean"] == 0.91


def test_synthetic_marked_and_never_mixed_with_real(paper):
    runs = runs_frame(record("yeast", "cld", 0, 0.3, synthetic=True), record("yeast", "cld", 1, 0.4, synthetic=True),
                      record("scene", "cld", 0, 0.5, synthetic=True), record("scene", "cld", 0, 0.8))
    frame = tables.table_frame("3", runs, paper, 0.02)
    yeast = cell(frame, row="MulSupCon_CLD", metric="mAP", dataset="yeast")
    scene = cell(frame, row="MulSupCon_CLD", metric="mAP", dataset="scene")
    assert yeast["text"].startswith("SYNTHETIC 0.350 ± 0.071 (n=2)")
    assert scene["ours_mean"] == 0.8 and not scene["synthetic"] and "SYNTHETIC" not in scene["text"]
    md = tables.render_markdown("3", frame, 0.02)
    assert "**SYNTHETIC DATA**" in md
    d = diff.render_diff(diff.diff_frame(runs, paper, 0.02), 0.02)
    assert "SYNTHETIC 0.350" in d and "## Summary (SYNTHETIC)" in d


def _md_cells(text: str) -> list[list[str]]:
    """Cells of every markdown table row in ``text`` (separator rows left out)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ")]


def test_diff_summary_counts(paper):
    p = {m: paper_value(paper, 3, "yeast", "MulSupCon", m) for m in ("p_at_1", "mAP")}
    runs = runs_frame(record("yeast", "mulsupcon", 0, 0.0, p_at_1=p["p_at_1"] + 0.01, mAP=p["mAP"] + 0.5))
    frame = diff.diff_frame(runs, paper, 0.02)
    summary = diff.summary_frame(frame).set_index("table")
    # Table 3: 2 metrics × 5 datasets × 3 methods printed; one run → 2 compared, 1 within
    assert summary.loc["3"].to_dict() == {"total": 30, "compared": 2, "within": 1, "beyond": 1, "no_result": 28,
                                          "with_ci": 0, "consistent": 0}  # one seed: no interval
    # Table 2: 4 metrics of the same run compared (HA, ebF1, miF1, maF1 all 0.0 → beyond)
    assert summary.loc["2"].to_dict() == {"total": 60, "compared": 4, "within": 0, "beyond": 4, "no_result": 56,
                                          "with_ci": 0, "consistent": 0}
    assert summary.loc["4", "total"] == 72 and summary.loc["5", "total"] == 96
    overall = summary.loc["overall"]
    assert overall["total"] == 60 + 30 + 72 + 4 * 96 and overall["compared"] == 6 and overall["within"] == 1
    text = diff.render_diff(frame, 0.02)
    rows = {r[0]: r[1:] for r in _md_cells(text)}
    assert rows["Table 3"] == ["1 / 30", "2", "1", "28", "0 / 0"] and rows["overall"] == ["1 / 546", "6", "5", "540",
                                                                                           "0 / 0"]


def test_diff_command(tmp_path, paper):
    runs = runs_frame(record("scene", "cld", 0, 0.9), record("scene", "cld", 1, 0.92))
    runs_csv = tmp_path / "runs.csv"
    aggregate.write_runs(runs, runs_csv)
    out = tmp_path / "diff.md"
    assert cli_main(["diff", "--runs", str(runs_csv), "--tolerance", "0.5", "--out", str(out)]) == 0
    text = out.read_text()
    rows = {r[0]: r[1:] for r in _md_cells(text)}
    assert "Tolerance: |Δ| ≤ 0.5" in text and rows["Table 3"] == ["2 / 30", "2", "0", "28", "2 / 2"]
    # two seeds 0.90, 0.92: CI 0.91 ± 12.7062 · 0.01 = [0.783, 1.037] holds the paper's 0.821 (Scene mAP)
    assert any(r[:4] == ["", "MulSupCon_CLD", "Scene", "mAP"] and r[5] == "[0.783, 1.037]" and r[-1] == "consistent"
               for r in _md_cells(text))
    assert cli_main(["diff", "--runs", str(tmp_path / "absent.csv")]) == 2


@pytest.mark.parametrize("command", ["diff", "claims"])
def test_a_file_that_is_not_a_runs_table_is_one_error_line(tmp_path, capsys, command):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\nuser,with,commas:x:1000\nbin:x:1:1:bin:/bin:/sbin/nologin\n")
    two_columns = tmp_path / "two.csv"
    two_columns.write_text("run_id,dataset\nr0,scene\n")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for bad in (passwd, two_columns, binary, empty) + ((Path("/etc/passwd"),) if Path("/etc/passwd").is_file() else ()):
        assert cli_main([command, "--runs", str(bad), "--out", str(tmp_path / "out.md")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {bad} is not a runs table"), err
    assert cli_main([command, "--runs", str(two_columns), "--out", str(tmp_path / "o.md")]) == 2
    assert "missing column(s) method, seed, alpha" in capsys.readouterr().err
    assert not (tmp_path / "out.md").exists()


# ------------------------------------------------------------------------------------- aggregation


def test_aggregate_one_row_per_result_file(tmp_path):
    paths = []
    for i, rec in enumerate([record("yeast", "cld", 0, 0.5),
                             jobs.unavailable_record(RunKey("bookmarks", "mulsupcon", "none", "na", "na", 0,
                                                            "smoke", False), "no network")]):
        p = tmp_path / "results" / "runs" / f"r{i}" / "metrics.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(rec))
        paths.append(p)
    out = tmp_path / "runs.csv"
    aggregate.aggregate(paths, out)
    frame = runs_table.read_runs(out)
    assert len(frame) == 2
    assert list(frame.columns[:len(aggregate.ID_COLUMNS)]) == aggregate.ID_COLUMNS
    ok, missing = frame.iloc[0], frame.iloc[1]
    assert ok["preset"] == "paper" and missing["preset"] == "paper"  # a record from before presets: paper
    assert ok["status"] == "ok" and ok["paper.mAP"] == 0.5 and ok["val-threshold.threshold"] == 0.4
    assert ok["config_hash"] == "c0ffee" and ok["version.torch"] == "x" and ok["run_id"] == "r0"
    assert missing["status"] == "unavailable" and missing["reason"] == "dataset not available: no network"
    assert math.isnan(missing["paper.mAP"]) and not missing["synthetic"]


def test_unavailable_data_is_passed_on_without_running(tmp_path):
    download = tmp_path / "download.json"
    download.write_text(json.dumps({"status": "unavailable", "reason": "files absent"}))
    prepared = tmp_path / "prepared.json"
    jobs.prepare_job("bookmarks", None, str(tmp_path / "data"), str(download), str(prepared),
                     str(tmp_path / "prepare.log"))
    assert jobs.read_status(prepared)["status"] == "unavailable"
    out = tmp_path / "metrics.json"
    key = RunKey("bookmarks", "rld", "none", "0.1", "1", 2, "smoke", False)
    rec = jobs.train_job(key, resolve_settings(key.dataset, key.scale), str(prepared), str(out),
                         str(tmp_path / "train.log"))
    assert json.loads(out.read_text()) == rec
    assert rec["metrics"] is None and rec["reason"] == "dataset not available: files absent"
    assert rec["alpha"] == 0.1 and rec["seed"] == 2


# ------------------------------------------------------------------------------------- figure


def test_figure2(tmp_path):
    runs = runs_frame(*(record("scene", "cld", s, 0.5 + 0.1 * i, ablation=a, synthetic=True)
                        for i, a in enumerate(plan.ABLATIONS) for s in (0, 1)))
    from mulsupcon_ld.report.figure import write_figure2

    frame = write_figure2(runs, str(tmp_path / "f.png"), str(tmp_path / "f.pdf"), str(tmp_path / "f.csv"))
    assert (tmp_path / "f.png").stat().st_size > 10_000 and (tmp_path / "f.pdf").stat().st_size > 1000
    scene = frame[frame["dataset"] == "scene"]
    assert (scene["status"] == "ok").all() and (scene["n"] == 2).all()
    assert (frame.loc[frame["dataset"] == "pascal", "status"] == "missing").all()
    csv = pd.read_csv(tmp_path / "f.csv")
    assert set(csv["variant"]) == set(layouts.ABLATION_LABEL.values()) and len(csv) == 2 * 4 * 6
