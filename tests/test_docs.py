"""The documents whose numbers come from runs are generated from the snapshot, and the snapshot is
one arithmetic (issue 26): docs/results/runs.csv, its records, docs/reproduction.md."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from mulsupcon_ld.arithmetic import COLUMNS
from mulsupcon_ld.paper_numbers import REPO_ROOT
from mulsupcon_ld.report import docs, homogeneity
from mulsupcon_ld.report.runs_table import CELL_KEY, read_runs

SNAPSHOT = REPO_ROOT / docs.SNAPSHOT


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return read_runs(SNAPSHOT / "runs.csv")


def test_the_committed_reproduction_page_is_its_regeneration():
    for doc, text in docs.regenerate(REPO_ROOT).items():
        assert (REPO_ROOT / doc).read_text() == text, f"{doc} is stale: run `mulsupcon-ld docs`"


def test_runs_csv_is_collected_from_the_snapshot_records(runs):
    collected = docs.collect_snapshot(SNAPSHOT)
    assert len(collected) == len(runs) > 0
    assert sorted(collected["result_hash"]) == sorted(runs["result_hash"])
    assert sorted(collected["run_id"]) == sorted(runs["run_id"])


def test_the_snapshot_is_one_commit_and_one_arithmetic(runs):
    ok = runs[(runs["status"] == "ok") & (runs["scale"] == "paper")]
    assert len(ok) == len(runs)
    assert ok["arithmetic.code"].nunique() == 1
    commit = ok["arithmetic.code"].iloc[0]
    assert len(commit) == 40 and not commit.endswith("+dirty") and (ok["git_commit"] == commit).all()
    assert set(ok["arithmetic.precision"]) <= {"fp32", "bf16"} and set(ok["precision"]) == set(ok["arithmetic.precision"])
    for field in ("lane", "flush_denormal", "reading", "cpu_model", "isa_class", "torch", "threads"):
        assert ok[COLUMNS[field]].notna().all() and (ok[COLUMNS[field]].astype(str) != "").all(), field
    assert not ok.astype(str).apply(lambda c: c.str.fullmatch("unknown")).any().any()
    # every cell of one configuration has one cell key (the report layer would refuse it otherwise)
    groups = ok.groupby(["dataset", "method", "ablation", "alpha", "beta"], dropna=False)[CELL_KEY].nunique()
    assert (groups == 1).all()
    for _, rows in ok.groupby(CELL_KEY):
        assert homogeneity.cell_mix(rows) == ""


def test_a_record_is_the_runs_own_metrics(runs):
    row = runs.iloc[0]
    path = SNAPSHOT / "runs" / row["run_id"] / "metrics.json.gz"
    record = json.loads(gzip.decompress(path.read_bytes()))
    assert record["result_hash"] == row["result_hash"] and record["cell_key"] == row[CELL_KEY]
    assert record["metrics"]["paper"]["mAP"] == pytest.approx(row["paper.mAP"], abs=0)


def test_readme_main_command_block_counts_the_runs_it_plans():
    facts = docs.main_command(read_runs(SNAPSHOT / "runs.csv"))
    assert facts["runs"] == 50 and 0 < facts["done"] <= facts["runs"]
    text = (REPO_ROOT / "README.md").read_text()
    assert "<!-- generated: main-command -->\n(50 runs:" in text


def test_a_stale_document_fails_the_check(tmp_path, capsys):
    import shutil

    from mulsupcon_ld.cli import main as cli_main

    snapshot_files = [p.relative_to(REPO_ROOT).as_posix() for p in SNAPSHOT.glob("*.csv")]
    for rel in ("README.md", "config", "docs/templates", "docs/reproduction.md", *snapshot_files):
        src, dst = REPO_ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    assert cli_main(["docs", "--root", str(tmp_path), "--check"]) == 0
    page = tmp_path / "docs/reproduction.md"
    page.write_text(page.read_text().replace("runs", "rnus", 1))
    assert cli_main(["docs", "--root", str(tmp_path), "--check"]) == 1
    assert "differ from their regeneration" in capsys.readouterr().err
    assert cli_main(["docs", "--root", str(tmp_path)]) == 0 and cli_main(["docs", "--root", str(tmp_path), "--check"]) == 0
