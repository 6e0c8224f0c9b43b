"""``mulsupcon-ld diff``: per-cell ours − paper for every regenerated table, and a summary.

The cells, their runs and the tolerance test are those of :mod:`.tables` (one implementation);
this module lists them flat and counts, per table and overall, the cells within tolerance out of
the cells that have a paper value for a method we run (Table 2's quoted methods are not ours, and
Figure 2 prints no numbers, so neither is counted). Tables 6 and 8 re-arrange the runs of 5 and 7,
so their cells are counted in both.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from ..atomic import write_text
from ..errors import UserError
from ..pipeline import plan
from .aggregate import read_runs
from .tables import FLAG, _md_row, load_paper, summary_counts, table_frame


def diff_frame(runs: pd.DataFrame, paper: pd.DataFrame, tolerance: float,
               tables: tuple[str, ...] = plan.TABLE_IDS) -> pd.DataFrame:
    """Every cell of ``tables`` (quoted methods left out), with ours, paper, Δ and the flag."""
    frames = [table_frame(t, runs, paper, tolerance) for t in tables]
    frame = pd.concat(frames, ignore_index=True)
    return frame[frame["status"] != "quoted"].reset_index(drop=True)


def summary_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per table and overall: total, compared, within, beyond, no_result."""
    rows = [{"table": t, **summary_counts(part)} for t, part in frame.groupby("table", sort=False)]
    rows.append({"table": "overall", **summary_counts(frame)})
    return pd.DataFrame(rows)


def _ours_text(r: dict, digits: int) -> str:
    if r["status"] != "ok":
        return "—"
    text = f"{r['ours_mean']:.{digits}f}"
    if r["n"] > 1:
        text += f" ± {r['ours_std']:.{digits}f}"
    text += f" (n={r['n']})"
    return ("SYNTHETIC " + text) if r["synthetic"] else text


def render_diff(frame: pd.DataFrame, tolerance: float) -> str:
    summary = summary_frame(frame)
    synthetic = bool(frame.loc[frame["status"] == "ok", "synthetic"].astype(bool).any())
    lines = ["# Ours − paper, per cell", ""]
    if synthetic:
        lines += ["**SYNTHETIC DATA** — numbers marked SYNTHETIC come from small deterministic stand-ins of "
                  "the datasets; their differences from the paper mean nothing.", ""]
    scales = sorted(set(frame.loc[frame["status"] == "ok", "scale"]))
    if "smoke" in scales:
        lines += ["Scale includes **smoke** (a few epochs): not comparable to the paper.", ""]
    lines += [f"Δ = ours (mean over seeds, `paper` protocol) − paper. Tolerance: |Δ| ≤ {tolerance:g}; "
              f"beyond it a cell is flagged {FLAG}. \"total\" = cells of our methods with a paper value; "
              "\"no result\" = cells we could not run (reasons in the table files).", "",
              "## Summary" + (" (SYNTHETIC)" if synthetic else ""), "",
              _md_row(["table", "within / total", "compared", "beyond", "no result"]),
              _md_row(["---"] * 5)]
    for r in summary.to_dict("records"):
        label = r["table"] if r["table"] == "overall" else f"Table {r['table']}"
        lines.append(_md_row([label, f"{r['within']} / {r['total']}", r["compared"], r["beyond"], r["no_result"]]))
    for table_id, part in frame.groupby("table", sort=False):
        digits = plan.TABLES[table_id].digits
        lines += ["", f"## Table {table_id}", "",
                  _md_row(["panel", "row", "column", "metric", "ours", "paper", "Δ", "within"]),
                  _md_row(["---"] * 8)]
        for r in part.to_dict("records"):
            paper_value = r["paper"]
            has_paper = not (isinstance(paper_value, float) and math.isnan(paper_value))
            delta = f"{r['diff']:+.{digits}f}" if r["status"] == "ok" and has_paper else "—"
            within = {True: "yes", False: f"no {FLAG}"}.get(r["within_tolerance"], "—")
            lines.append(_md_row([r["panel"] or "", r["row"], r["column"], r["metric"], _ours_text(r, digits),
                                  f"{paper_value:.{digits}f}" if has_paper else "—", delta, within]))
    return "\n".join(lines) + "\n"


def write_diff(runs: pd.DataFrame, tolerance: float, out: str | None = None,
               paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Render the diff of ``runs`` against the paper; write it to ``out`` (or stdout)."""
    paper = load_paper() if paper is None else paper
    frame = diff_frame(runs, paper, tolerance)
    text = render_diff(frame, tolerance)
    if out:
        write_text(out, text)
    else:
        sys.stdout.write(text)
    return frame


def cmd_diff(args: argparse.Namespace) -> int:
    runs_path = Path(args.runs)
    if not runs_path.is_file():
        raise UserError(f"{runs_path} does not exist; build it with `snakemake --cores N results/runs.csv` "
                        "(or pass --runs PATH)")
    if not (args.tolerance >= 0):
        raise UserError(f"--tolerance must be >= 0, got {args.tolerance}")
    frame = write_diff(read_runs(runs_path), args.tolerance, args.out)
    if args.out:
        s = summary_counts(frame)
        print(f"{args.out}: {s['within']} / {s['total']} cells within tolerance {args.tolerance:g} "
              f"({s['compared']} compared, {s['no_result']} without our result)", file=sys.stderr)
    return 0
