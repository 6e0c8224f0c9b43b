"""The documents whose numbers come from runs are generated from the snapshot, and the snapshot is
one arithmetic (issue 26): docs/results/runs.csv, its records, docs/reproduction.md."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from mulsupcon_ld.arithmetic import COLUMNS
from mulsupcon_ld.paper_numbers import REPO_ROOT
from mulsupcon_ld.report import docs, homogeneity, method_numbers
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
    for rel in ("README.md", "config", "docs/templates", "docs/reproduction.md", "docs/method.md", *snapshot_files,
                *method_numbers.SOURCES):
        src, dst = REPO_ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    assert cli_main(["docs", "--root", str(tmp_path), "--check"]) == 0
    page = tmp_path / "docs/reproduction.md"
    page.write_text(page.read_text().replace("runs", "rnus", 1))
    assert cli_main(["docs", "--root", str(tmp_path), "--check"]) == 1
    assert "differ from their regeneration" in capsys.readouterr().err
    assert cli_main(["docs", "--root", str(tmp_path)]) == 0 and cli_main(["docs", "--root", str(tmp_path), "--check"]) == 0
    # a number typed over in a generated block of docs/method.md is stale too, and regenerated
    method = tmp_path / "docs/method.md"
    typed = method.read_text()
    row = "| Yeast | MulSupCon | one pass (3,600) | paper (mask 0.4, AdamW, cosine) | "
    method.write_text(typed.replace(row + "0.4632", row + "0.4633", 1))
    assert method.read_text() != typed
    assert cli_main(["docs", "--root", str(tmp_path), "--check"]) == 1
    assert cli_main(["docs", "--root", str(tmp_path)]) == 0 and method.read_text() == typed


def test_method_blocks_are_computed_from_the_screening_rows():
    """docs/method.md's generated blocks: each has its template, and a few of their numbers recomputed here
    from the per-run rows (sample sd over seeds, differences paired by seed)."""
    text = (REPO_ROOT / "docs/method.md").read_text()
    names = [m["name"] for m in docs.BLOCK.finditer(text)]
    assert len(names) == len(set(names)) >= 10
    assert all((REPO_ROOT / "docs/templates/blocks" / f"{n}.md.j2").is_file() for n in names)
    budget = pd.read_csv(REPO_ROOT / method_numbers.BUDGET)
    cell = budget[(budget["variant"] == "onepass") & (budget["dataset"] == "yeast") & (budget["method"] == "mulsupcon")]
    assert len(cell) == 3
    row = f"| 0.{round(cell['val_map'].mean() * 1e4):04d} ± 0.{round(cell['val_map'].std() * 1e4):04d} |"
    assert row in method_numbers.budget_table(REPO_ROOT).splitlines()[2]
    screening = pd.read_csv(REPO_ROOT / method_numbers.DELICIOUS_50).set_index(["method", "reading", "seed"])
    paired = method_numbers.delicious_screening(REPO_ROOT)["cld"]["paired"]
    assert paired == pytest.approx([screening.loc[("cld", "normalised", s), "val_mAP"]
                                    - screening.loc[("cld", "printed", s), "val_mAP"] for s in (0, 1, 2)], abs=0)
    assert method_numbers.finetuning_effect(REPO_ROOT, "onepass-mask0")["bce_lower"] == 4
