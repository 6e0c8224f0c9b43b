"""``mulsupcon-ld diff``: per-cell ours − paper for every regenerated table, and a summary.

The cells, their runs and the tolerance test are those of :mod:`.tables` (one implementation);
this module lists them flat and counts, per table and overall, the cells within tolerance out of
the cells that have a paper value for a method we run (Table 2's quoted methods are not ours, and
Figure 2 prints no numbers, so neither is counted). Tables 6 and 8 re-arrange the runs of 5 and 7,
so their cells are counted in both.

Beside the tolerance flag, each cell says where the paper's value lies against our mean's 95%
confidence interval (``consistent``, ``ours lower``, ``ours higher``; none for one seed).
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from ..atomic import write_text
from ..errors import UserError
from ..pipeline import plan
from . import layouts
from .format import NO_NUMBER, SYNTHETIC, banner_lines, num
from .runs_table import read_runs_arg
from .tables import FLAG, TableFrames, markdown_table, ours_text, summary_counts


def diff_frame(runs: pd.DataFrame, paper: pd.DataFrame, tolerance: float,
               tables: tuple[str, ...] = plan.TABLE_IDS, allow_mixed: bool = False) -> pd.DataFrame:
    """Every cell of ``tables`` (quoted methods left out), with ours, paper, Δ and the flag."""
    return diff_cells(TableFrames(runs, paper, tolerance, allow_mixed), tables)


def diff_cells(frames: TableFrames, tables: tuple[str, ...] = plan.TABLE_IDS) -> pd.DataFrame:
    """:func:`diff_frame` from table frames already built (or built here, once)."""
    frame = pd.concat([frames[t] for t in tables], ignore_index=True)
    return frame[frame["status"] != "quoted"].reset_index(drop=True)


def summary_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per table and overall: total, compared, within, beyond, no_result."""
    rows = [{"table": t, **summary_counts(part)} for t, part in frame.groupby("table", sort=False)]
    rows.append({"table": "overall", **summary_counts(frame)})
    return pd.DataFrame(rows)


def render_diff(frame: pd.DataFrame, tolerance: float) -> str:
    summary = summary_frame(frame)
    synthetic = bool(frame.loc[frame["status"] == "ok", "synthetic"].astype(bool).any())
    lines = ["# Ours − paper, per cell", ""]
    lines += banner_lines(synthetic, frame.loc[frame["status"] == "ok", "scale"], "numbers")
    lines += [f"Δ = ours (mean over seeds, `paper` protocol) − paper. Tolerance: |Δ| ≤ {tolerance:g}; "
              f"beyond it a cell is flagged {FLAG}. \"total\" = cells of our methods with a paper value; "
              "\"no result\" = cells we could not run (reasons in the table files). \"95% CI\" = Student-t "
              "interval of our mean over seeds; \"paper vs CI\": *consistent* = the paper's value lies inside "
              "it, *ours lower* / *ours higher* = outside (none for one seed). The claims the paper makes "
              "are tested in `claims.md`.", "",
              "## Summary" + (f" ({SYNTHETIC})" if synthetic else ""), ""]
    body = [[r["table"] if r["table"] == "overall" else f"Table {r['table']}", f"{r['within']} / {r['total']}",
             str(r["compared"]), str(r["beyond"]), str(r["no_result"]), f"{r['consistent']} / {r['with_ci']}"]
            for r in summary.to_dict("records")]
    lines.append(markdown_table(["table", "within / total", "compared", "beyond", "no result",
                                 "paper inside CI / with CI"], body))
    for table_id, part in frame.groupby("table", sort=False):
        digits = layouts.TABLES[table_id].digits
        body = []
        for r in part.to_dict("records"):
            ok = r["status"] == "ok"
            ci = (f"[{num(r['ci_low'], digits)}, {num(r['ci_high'], digits)}]"
                  if ok and not math.isnan(r["ci_low"]) else NO_NUMBER)
            body.append([r["panel"] or "", r["row"], r["column"], r["metric"], ours_text(r, digits, ci=False) if ok else NO_NUMBER,
                         ci, num(r["paper"], digits), num(r["diff"], digits, sign=True),
                         {True: "yes", False: f"no {FLAG}"}.get(r["within_tolerance"], NO_NUMBER),
                         r["paper_vs_ci"] or NO_NUMBER])
        lines += ["", f"## Table {table_id}", "",
                  markdown_table(["panel", "row", "column", "metric", "ours", "95% CI", "paper", "Δ", "within",
                                  "paper vs CI"], body)]
    return "\n".join(lines) + "\n"


def write_diff(runs: pd.DataFrame, tolerance: float, out: str | None = None,
               paper: pd.DataFrame | None = None, allow_mixed: bool = False) -> pd.DataFrame:
    """Render the diff of ``runs`` against the paper; write it to ``out`` (or stdout)."""
    return write_diff_cells(TableFrames(runs, paper, tolerance, allow_mixed), out)


def write_diff_cells(frames: TableFrames, out: str | None = None) -> pd.DataFrame:
    """:func:`write_diff` from table frames already built (or built here, once)."""
    frame = diff_cells(frames)
    text = render_diff(frame, frames.tolerance)
    if out:
        write_text(out, text)
    else:
        sys.stdout.write(text)
    return frame


def cmd_diff(args: argparse.Namespace) -> int:
    if not (args.tolerance >= 0):
        raise UserError(f"--tolerance must be >= 0, got {args.tolerance}")
    frame = write_diff(read_runs_arg(args.runs), args.tolerance, args.out,
                       allow_mixed=getattr(args, "allow_mixed", False))
    if args.out:
        s = summary_counts(frame)
        print(f"{args.out}: {s['within']} / {s['total']} cells within tolerance {args.tolerance:g} "
              f"({s['compared']} compared, {s['no_result']} without our result)", file=sys.stderr)
    return 0
