"""One snapshot, one arithmetic: a cell, a claim's pair or a figure bar never combines runs that
computed differently (mulsupcon_ld/report/homogeneity.py); what a run records (arithmetic.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from mulsupcon_ld import arithmetic
from mulsupcon_ld.cli import main as cli_main
from mulsupcon_ld.report import aggregate, claims, figure, homogeneity, runs_table, tables
from test_report import record, runs_frame


def _scene(method, seeds, value=0.8, **arith):
    return [record("scene", method, s, value + 0.01 * s, arithmetic=arith or None) for s in seeds]


def _write(tmp_path, frame) -> str:
    path = tmp_path / "runs.csv"
    aggregate.write_runs(frame, path)
    return str(path)


def test_cell_key_ignores_the_seed_and_the_cpu_but_not_the_arithmetic():
    a = record("scene", "cld", 0, 0.8)
    assert a["cell_key"] == record("scene", "cld", 7, 0.8)["cell_key"]
    assert a["cell_key"] == record("scene", "cld", 0, 0.8, arithmetic={"cpu_model": "Other", "threads": 2})["cell_key"]
    for field, other in (("precision", "bf16"), ("lane", "reference"), ("flush_denormal", False),
                         ("reading", "normalised"), ("torch", "2.9.1"), ("code", "def")):
        assert record("scene", "cld", 0, 0.8, arithmetic={field: other})["cell_key"] != a["cell_key"], field
    assert record("scene", "cld", 0, 0.8, alpha=1.0, beta=1.0)["cell_key"] != a["cell_key"]


@pytest.mark.parametrize("field,other", [("code", "0e14acb"), ("precision", "bf16"), ("flush_denormal", False),
                                         ("lane", "reference"), ("reading", "normalised")])
def test_a_mixed_cell_is_refused_with_one_error_line(tmp_path, capsys, field, other):
    runs = runs_frame(*_scene("cld", (0, 1, 2)), *_scene("cld", (3, 4), **{field: other}),
                      *_scene("mulsupcon", range(5)))
    with pytest.raises(homogeneity.MixedRunsError) as err:
        tables.table_frame("3", runs, tables.load_paper(), 0.02)
    text = str(err.value)
    assert "Scene" in text and "MulSupCon_CLD" in text and field in text and "--allow-mixed" in text
    path = _write(tmp_path, runs)
    for command in (["diff", "--runs", path, "--out", str(tmp_path / "diff.md")],
                    ["claims", "--runs", path, "--out", str(tmp_path / "claims.md")]):
        assert cli_main(command) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], lines
    assert not (tmp_path / "diff.md").exists() and not (tmp_path / "claims.md").exists()


def test_a_homogeneous_table_passes_and_notes_several_cpu_models(tmp_path):
    runs = runs_frame(*_scene("cld", (0, 1, 2)), *_scene("cld", (3, 4), cpu_model="AMD EPYC", threads=2),
                      *_scene("mulsupcon", range(5)))
    frame = tables.table_frame("3", runs, tables.load_paper(), 0.02)
    cld = frame[(frame["dataset"] == "scene") & (frame["method"] == "MulSupCon_CLD") & (frame["metric"] == "mAP")]
    assert int(cld["n"].iloc[0]) == 5 and cld["mixed"].iloc[0] == ""
    assert "2 CPU models" in cld["cpu_note"].iloc[0] and "AMD EPYC (2 runs)" in cld["cpu_note"].iloc[0]
    assert "2 CPU models" in tables.render_markdown("3", frame, 0.02)
    assert cli_main(["claims", "--runs", _write(tmp_path, runs), "--out", str(tmp_path / "c.md")]) == 0


def test_allow_mixed_shows_the_cell_marked(tmp_path):
    runs = runs_frame(*_scene("cld", (0, 1)), *_scene("cld", (2,), precision="bf16"), *_scene("mulsupcon", range(3)))
    frame = tables.table_frame("3", runs, tables.load_paper(), 0.02, allow_mixed=True)
    cld = frame[(frame["dataset"] == "scene") & (frame["method"] == "MulSupCon_CLD")].iloc[0]
    assert cld["ours_text"].startswith(homogeneity.MIXED) and "precision fp32 (2 runs), bf16 (1 run)" in cld["mixed"]
    out = tmp_path / "diff.md"
    assert cli_main(["diff", "--runs", _write(tmp_path, runs), "--allow-mixed", "--out", str(out)]) == 0
    assert "MIXED" in out.read_text()


def test_runs_without_recorded_arithmetic_are_refused():
    old = [{k: v for k, v in r.items() if k not in ("arithmetic", "cell_key")} for r in _scene("cld", (0, 1))]
    runs = runs_frame(*old)
    with pytest.raises(homogeneity.MixedRunsError, match="not recorded"):
        figure.figure2_frame(runs.assign(ablation="no-alpha"))
    with pytest.raises(homogeneity.MixedRunsError, match="not recorded"):
        tables.table_frame("3", runs, tables.load_paper(), 0.02)


def test_a_claims_pair_never_joins_sides_that_computed_differently():
    runs = runs_frame(*_scene("cld", range(3)), *_scene("mulsupcon", range(3), 0.7, code="0e14acb"))
    registry = claims.load_claims()
    with pytest.raises(homogeneity.MixedRunsError, match="two sides computed differently: code"):
        claims.evaluate_claims(registry, runs)
    marked = claims.evaluate_claims(registry, runs, allow_mixed=True)
    tested = marked[marked["n_a"].gt(0) & marked["n_b"].gt(0)]
    assert len(tested) and tested["reason"].str.startswith(homogeneity.MIXED).all()
    # one side trains without pretraining (no lane), the other with: the lane is not compared
    ok = runs_frame(*_scene("mulsupcon", range(3)), *_scene("bce", range(3), 0.7, lane="none"))
    both = claims.evaluate_claims(registry, ok)
    assert (both["n_a"].gt(0) & both["n_b"].gt(0)).any()


def test_runs_csv_has_the_arithmetic_columns(tmp_path):
    runs = runs_frame(*_scene("cld", (0,)))
    back = runs_table.read_runs(_write(tmp_path, runs))
    for column in (*arithmetic.COLUMNS.values(), runs_table.CELL_KEY):
        assert column in back.columns, column
    assert back["arithmetic.precision"].iloc[0] == "fp32" and back["arithmetic.code"].iloc[0] == "abc"
    assert isinstance(back, pd.DataFrame) and back[runs_table.CELL_KEY].iloc[0] == runs[runs_table.CELL_KEY].iloc[0]


def test_resolved_arithmetic_refuses_an_unresolved_precision():
    settings = {"precision": "auto", "flush_denormal": True, "pretrain": {"hotpath": "fast"}, "loss": {}}
    facts = {f: "x" for f in arithmetic.FACTS}
    with pytest.raises(ValueError, match="resolved"):
        arithmetic.resolved_arithmetic(settings, "cld", facts)
    fp32 = dict(settings, precision="fp32", loss={"options": None})
    with pytest.raises(ValueError, match="missing: threads"):
        arithmetic.resolved_arithmetic(fp32, "cld", {k: v for k, v in facts.items() if k != "threads"})
    got = arithmetic.resolved_arithmetic(fp32, "cld", facts)
    assert (got["precision"], got["lane"], got["reading"]) == ("fp32", "fast", "printed")
    assert arithmetic.lane(fp32, "bce") == "none" and arithmetic.reading(fp32, "mulsupcon") == "none"
    assert arithmetic.reading({"loss": {"options": {"pos_norm": "per_label", "beta_per": "batch",
                                                    "reduction": "mean"}}}, "rld") == "normalised"
