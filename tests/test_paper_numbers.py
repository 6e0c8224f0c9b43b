"""baselines/paper_reported.csv: every number of the paper's Tables 2–8 (mulsupcon_ld.paper_numbers)."""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import pytest
from prereq import missing

from mulsupcon_ld.errors import UserError
from mulsupcon_ld.paper_numbers import (
    COLUMNS,
    DEFAULT_CSV,
    METRICS,
    grid_disagreements,
    load_paper_numbers,
    parse_paper_tables,
)

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "paper.txt"
DATASET_NAMES = {"Yeast": "yeast", "Scene": "scene", "Bookmarks": "bookmarks",
                 "Delicious": "delicious", "Mediamill": "mediamill", "MIRFLICKR": "mirflickr",
                 "NUS-WIDE": "nuswide", "MS-COCO": "coco", "PASCAL": "pascal"}


@pytest.fixture(scope="module")
def paper_lines() -> list[str]:
    if not PAPER.is_file():
        missing(f"paper text not found at {PAPER}")
    return PAPER.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return load_paper_numbers()


@pytest.fixture(scope="module")
def printed() -> pd.DataFrame:
    return load_paper_numbers(as_printed=True)


def _cell(frame: pd.DataFrame, table, dataset, method, metric, alpha=None, beta=None):
    sel = ((frame.table == table) & (frame.dataset == dataset) & (frame.method == method)
           & (frame.metric == metric))
    sel &= frame.alpha.isna() if alpha is None else frame.alpha == alpha
    sel &= frame.beta.isna() if beta is None else frame.beta == beta
    hit = frame[sel]
    assert len(hit) == 1, (table, dataset, method, metric, alpha, beta, len(hit))
    return hit.value.iloc[0]


def _region(lines: list[str], table: int) -> list[str]:
    """Lines after the caption of Table ``table - 1`` up to the caption of Table ``table``."""
    end = next(i for i, ln in enumerate(lines) if ln.startswith(f"Table {table}:"))
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"Table {table - 1}:"))
    return lines[start + 1:end]


# Hand-read cells, each with the row exactly as printed in the paper (tabs between cells) and the
# column (0 = row label) the value sits in. The test finds the row in the table's own region of
# paper.txt, checks its header / sub-caption, and compares with the CSV.
COMPARISON_CELLS = [  # (table, dataset, method, metric, printed value, printed row, column)
    (2, "yeast", "LaMP", "HA", "0.786",
     "LaMP\t0.786\t0.903\t0.992\t0.982\t-\t0.624\t0.728\t0.389\t0.372\t-", 1),
    (2, "mediamill", "C-GMVAE", "ebF1", "0.623",
     "C-GMVAE\t0.796\t0.915\t0.992\t0.983\t0.970\t0.656\t0.777\t0.392\t0.381\t0.623", 10),
    (2, "scene", "RBCC", "miF1", "0.749",
     "RBCC\t0.623\t0.749\t-\t-\t-\t0.480\t0.753\t-\t-\t-", 2),
    (2, "delicious", "MulSupCon_CLD", "maF1", "0.195",
     "MulSupCon _{CLD}\t0.676\t0.805\t0.403\t0.401\t0.624\t0.496\t0.766\t0.318\t0.195\t0.262", 9),
    (2, "bookmarks", "MulSupCon_RLD", "ebF1", "0.405",
     "MulSupCon _{RLD}\t0.802\t0.930\t0.991\t0.982\t0.971\t0.661\t0.815\t0.405\t0.382\t0.597", 8),
    (3, "mediamill", "MulSupCon_CLD", "p_at_1", "0.889",
     "MulSupCon _{CLD}\t0.769\t0.826\t0.491\t0.685\t0.889\t0.521\t0.821\t0.275\t0.185\t0.261", 5),
    (3, "yeast", "MulSupCon", "mAP", "0.480",
     "MulSupCon\t0.761\t0.811\t0.496\t0.681\t0.837\t0.480\t0.859\t0.264\t0.155\t0.150", 6),
    (4, "mirflickr", "MulSupCon", "HA", "0.9130",
     "MulSupCon\t0.9130\t0.9275\t0.9769\t0.9485\t0.6729\t0.7449\t0.6334\t0.6004", 1),
    (4, "coco", "MulSupCon_RLD", "maF1", "0.4974",
     "MulSupCon _{RLD}\t0.7076\t0.7694\t0.5865\t0.6180\t0.6050\t0.7203\t0.4974\t0.5513", 7),
    (4, "pascal", "MulSupCon_CLD", "mAP", "0.5950",
     "MulSupCon _{CLD}\t0.8633\t0.8711\t0.8769\t0.7142\t0.6600\t0.7868\t0.6113\t0.5950", 8),
    (4, "nuswide", "MulSupCon_CLD", "p_at_1", "0.8711",
     "MulSupCon _{CLD}\t0.8633\t0.8711\t0.8769\t0.7142\t0.6600\t0.7868\t0.6113\t0.5950", 2),
]
GRID_CELLS = [  # (table, dataset, metric, alpha, beta, printed value, printed row, sub-caption start)
    (5, "scene", "mAP", 0.1, 0.001, "0.823", "0.001\t0.926\t0.806\t0.796\t0.753\t0.823\t0.823",
     "(c) Fix the parameter α at 0.1"),
    (5, "scene", "maF1", 0.01, 1.0, "0.763", "1\t0.928\t0.813\t0.803\t0.763\t0.819\t0.821",
     "(b) Fix the parameter α at 0.01"),
    (6, "scene", "ebF1", 0.1, 0.001, "0.800", "0.1\t0.925\t0.800\t0.794\t0.753\t0.820\t0.818",
     "(a) Fix the parameter β at 0.001"),
    (6, "scene", "p_at_1", 1.0, 1.0, "0.820", "1\t0.928\t0.807\t0.797\t0.758\t0.820\t0.821",
     "(d) Fix the parameter β at 1"),
    (7, "pascal", "HA", 0.001, 0.01, "0.9476", "0.01\t0.9476\t0.594\t0.607\t0.547\t0.691\t0.576",
     "(a) Fix the parameter α at 0.001"),
    (7, "pascal", "HA", 1.0, 0.001, "0.949", "0.001\t0.949\t0.610\t0.623\t0.553\t0.714\t0.595",
     "(d) Fix the parameter α at 1"),
    (8, "pascal", "HA", 0.001, 0.01, "0.947", "0.001\t0.947\t0.594\t0.607\t0.547\t0.691\t0.576",
     "(b) Fix the parameter β at 0.01"),
    (8, "pascal", "maF1", 0.1, 1.0, "0.489", "0.1\t0.945\t0.571\t0.586\t0.489\t0.669\t0.551",
     "(d) Fix the parameter β at 1"),
]


@pytest.mark.parametrize("table, dataset, method, metric, value, row, col", COMPARISON_CELLS)
def test_comparison_cells_against_paper(paper_lines, printed, table, dataset, method, metric,
                                        value, row, col):
    region = _region(paper_lines, table)
    assert region.count(row) == 1, "row not found (once) in the paper's table region"
    i = region.index(row)
    cells = row.split("\t")
    assert cells[col] == value
    header = next(ln for ln in region if ln.startswith("Algorithm\t")).split("\t")
    assert DATASET_NAMES[header[col]] == dataset
    metric_line = next(region[j] for j in range(i, -1, -1) if "\\uparrow" in region[j])
    names = [c.replace("\\uparrow", "").strip() for c in metric_line.split("\t") if c.strip()]
    half = (len(header) - 1) // 2
    assert names[(col - 1) // half] == metric
    assert _cell(printed, table, dataset, method, metric) == value


@pytest.mark.parametrize("table, dataset, metric, alpha, beta, value, row, caption", GRID_CELLS)
def test_grid_cells_against_paper(paper_lines, printed, table, dataset, metric, alpha, beta,
                                  value, row, caption):
    region = _region(paper_lines, table)
    # the same line can occur in two sub-tables (Table 6 (a) and (b) both print
    # "0.1, 0.925, 0.800, 0.794, 0.753, 0.820, 0.818"): take the one under the expected sub-caption
    hits = [i for i, ln in enumerate(region) if ln == row
            and next(s for s in region[i:] if s.startswith("(")).startswith(caption)]
    assert len(hits) == 1, "row not found (once) under its sub-caption in the paper's table region"
    i = hits[0]
    header = next(region[j] for j in range(i, -1, -1) if region[j][:1] in "αβ").split("\t")
    assert row.split("\t")[header.index(metric)] == value
    assert _cell(printed, table, dataset, "MulSupCon_CLD", metric, alpha, beta) == value


def test_csv_equals_fresh_parse_of_paper(paper_lines, printed):
    records = pd.DataFrame(parse_paper_tables("\n".join(paper_lines)), columns=list(COLUMNS))
    expected = records.astype(str)
    got = printed.copy()
    for c in ("alpha", "beta"):  # compare as printed: "0.001", "1", ""
        got[c] = pd.read_csv(DEFAULT_CSV, dtype=str, keep_default_na=False)[c]
    got["table"] = got["table"].astype(str)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))


def test_row_counts(df):
    counts = df.groupby("table").size().to_dict()
    dash_cells = 3 * 4 * 1 + 4 * 3  # LaMP/MPVAE/ASL: Mediamill × 4 metrics; RBCC: 3 datasets × 4
    assert counts == {2: 4 * 5 * 8 - dash_cells, 3: 2 * 5 * 3, 4: 6 * 4 * 3,
                      5: 4 * 4 * 6, 6: 4 * 4 * 6, 7: 4 * 4 * 6, 8: 4 * 4 * 6}
    assert not ((df.table == 2) & (df.method == "RBCC") & (df.dataset == "bookmarks")).any()
    assert not ((df.table == 2) & (df.method == "LaMP") & (df.dataset == "mediamill")).any()


def test_schema(df, printed):
    assert tuple(df.columns) == COLUMNS
    assert set(df.metric) == set(METRICS)
    assert set(df.method) == {"MulSupCon", "MulSupCon_RLD", "MulSupCon_CLD", "LaMP", "MPVAE",
                              "ASL", "RBCC", "C-GMVAE"}
    assert set(df.dataset) == set(DATASET_NAMES.values())
    early = df.table <= 4
    assert df[early].alpha.isna().all() and df[early].beta.isna().all()
    assert set(df[~early].alpha) == set(df[~early].beta) == {0.001, 0.01, 0.1, 1.0}
    assert not df.duplicated(["table", "dataset", "method", "metric", "alpha", "beta"]).any()
    assert df.value.between(0, 1).all()
    assert all(re.fullmatch(r"0\.\d{3,4}", v) for v in printed.value)
    assert "0.9130" in set(printed.value)  # trailing zero kept as printed


def test_missing_csv_is_user_error(tmp_path):
    with pytest.raises(UserError, match="paper numbers not found"):
        load_paper_numbers(tmp_path / "nope.csv")


# The same 4×4 (alpha, beta) grid is printed twice (Table 5 by alpha, Table 6 by beta; 7 and 8 for
# PASCAL). These are the cells where the two printings disagree — a finding about the paper.
EXPECTED_5_VS_6 = [  # (alpha, beta, metric, Table 5 (c) row beta=0.001, Table 6 (a) row alpha=0.1)
    (0.1, 0.001, "HA", 0.926, 0.925),
    (0.1, 0.001, "ebF1", 0.806, 0.800),
    (0.1, 0.001, "miF1", 0.796, 0.794),
    (0.1, 0.001, "p_at_1", 0.823, 0.820),
    (0.1, 0.001, "mAP", 0.823, 0.818),
]
EXPECTED_7_VS_8 = [  # Table 7 (a) row beta=0.01 vs Table 8 (b) row alpha=0.001
    (0.001, 0.01, "HA", 0.9476, 0.947),
]


def test_grid_disagreements_between_printings(df):
    found_56 = grid_disagreements(df, 5, 6)
    found_78 = grid_disagreements(df, 7, 8)
    print("\nTable 5 vs Table 6 (Scene), (alpha, beta, metric, T5, T6):")
    for r in found_56:
        print("  ", r)
    print("Table 7 vs Table 8 (PASCAL), (alpha, beta, metric, T7, T8):")
    for r in found_78:
        print("  ", r)
    assert found_56 == EXPECTED_5_VS_6
    assert found_78 == EXPECTED_7_VS_8
    # every grid cell is printed in both tables
    for a, b in ((5, 6), (7, 8)):
        key = ["alpha", "beta", "metric"]
        assert set(map(tuple, df[df.table == a][key].values)) == set(map(tuple, df[df.table == b][key].values))
    # Table 5 (a) beta=0.01 and Table 6 (b) alpha=0.001 are the same cell and agree
    assert not [r for r in found_56 if (r[0], r[1]) == (0.001, 0.01)]


def _row(df, table, dataset, method, alpha=None, beta=None) -> list[str]:
    return [_cell(df, table, dataset, method, m, alpha, beta) for m in METRICS]


def test_headline_numbers_are_grid_cells(printed):
    grid = {t: {(a, b) for a, b in zip(printed[printed.table == t].alpha, printed[printed.table == t].beta)}
            for t in (5, 6, 7, 8)}
    # Scene, MulSupCon_CLD, Tables 2+3 == the grid cell alpha=0.1, beta=1 in all six metrics,
    # in both printings, and no other grid cell
    scene = [(_cell(printed, 2 if m in ("HA", "ebF1", "miF1", "maF1") else 3, "scene", "MulSupCon_CLD", m))
             for m in METRICS]
    for t in (5, 6):
        matches = [ab for ab in grid[t] if _row(printed, t, "scene", "MulSupCon_CLD", *ab) == scene]
        assert matches == [(0.1, 1.0)]
    # PASCAL, MulSupCon_CLD, Table 4 (4 decimals) truncated to 3 decimals == the grid cell
    # alpha=1, beta=0.001 in all six metrics (both printings, no other cell); rounding half-up
    # would not match (HA 0.9499 → 0.950, maF1 0.5535 → 0.554)
    t4 = _row(printed, 4, "pascal", "MulSupCon_CLD")
    trunc = [str(Decimal(v).quantize(Decimal("0.001"), ROUND_DOWN)) for v in t4]
    rounded = [str(Decimal(v).quantize(Decimal("0.001"), ROUND_HALF_UP)) for v in t4]
    assert trunc == ["0.949", "0.610", "0.623", "0.553", "0.714", "0.595"]
    for t in (7, 8):
        matches = [ab for ab in grid[t] if _row(printed, t, "pascal", "MulSupCon_CLD", *ab) == trunc]
        assert matches == [(1.0, 0.001)]
        assert _row(printed, t, "pascal", "MulSupCon_CLD", 1.0, 0.001) != rounded
    assert [m for m, a, b in zip(METRICS, trunc, rounded) if a != b] == ["HA", "maF1"]
