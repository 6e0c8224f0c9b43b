"""Tables 2–8 in the paper's layout, each cell showing our number next to the paper's.

A cell shows, in its own sub-column, ``ours`` = mean ± sample standard deviation (ddof 1) over
seeds with ``n`` and the mean's 95% confidence interval (Student t, :mod:`.stats`), and in the next
sub-column the paper's value, ``Δ = ours − paper`` (``|Δ| > tolerance`` is flagged ``⚠``) and where
the paper's value lies against our interval (``consistent``, ``ours lower``, ``ours higher``). A cell with no
result shows ``—`` and a numbered note saying why (dataset not available: <reason>, or not run
with this configuration); a number is never invented. Cells computed from synthetic stand-ins start
with ``SYNTHETIC``. Table 2's other methods (LaMP, MPVAE, ASL, RBCC, C-GMVAE) show the paper's
numbers, labelled ``(quoted)``. Our no-pretraining control (``--method bce``) gets its own row in
Tables 2–4, "BCE (no pretraining, ours)", whenever runs of it exist; it is never a paper row.
Markdown is rendered with tabulate.

Which runs fill a cell is decided by :mod:`.plan` (Tables 2–4: ablation ``none`` at the default
α, β; Tables 5–8: the cell's α, β). When runs of one cell exist at several scales or data kinds,
real data wins over synthetic, ``paper`` scale over ``smoke``, and the ``paper`` preset (column
``preset`` of runs.csv; runs without it are ``paper``) over other presets; they are never mixed.
Metrics are those of the ``paper`` protocol (``val-threshold`` ones are in ``results/runs.csv``).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from typing import Any, Iterable

import pandas as pd

from ..atomic import write_text
from ..names import CONTROL_METHOD, NO_LD_METHODS
from ..paper_numbers import load_paper_numbers
from ..pipeline import plan
from .runs_table import metric_column
from ..pipeline.plan import NA, fmt_num
from . import layouts
from .layouts import Cell
from .format import SYNTHETIC, banner_lines, num
from .homogeneity import MIXED, check_cell, cpu_note
from .stats import mean_ci, paper_vs_ci

#: preference order of (scale, synthetic) when a cell has runs of several kinds
GROUPS = (("paper", False), ("smoke", False), ("paper", True), ("smoke", True))
#: preset of runs recorded before presets existed (and the preferred one when several are present)
DEFAULT_PRESET = "paper"
NOT_RUN = "not run with this configuration (see config keys datasets, methods, seeds, alphas, betas, ablations)"
FLAG = "⚠"
SHORT_REASON = {"unavailable": "dataset not available", "missing": "not run"}
CELL_COLUMNS = ["table", "panel", "block", "row", "column", "dataset", "method", "metric", "alpha", "beta",
                "ablation", "status", "ours_mean", "ours_std", "n", "seeds", "ci_low", "ci_high", "synthetic",
                "scale", "preset", "paper", "diff", "within_tolerance", "paper_vs_ci", "note", "mixed", "cpu_note",
                "ours_text",
                "paper_text", "text"]
TEXT_COLUMNS = ("ours_text", "paper_text", "text")


# --------------------------------------------------------------------------------------------
# paper numbers


def load_paper() -> pd.DataFrame:
    """The paper's numbers (``table, dataset, method, metric, alpha, beta, value``)."""
    return load_paper_numbers()


class PaperIndex:
    """Look up a printed value by (table, dataset, method, metric, α, β); None where not printed."""

    def __init__(self, paper: pd.DataFrame):
        self._values: dict[tuple, float] = {}
        for r in paper.itertuples(index=False):
            value = _num(getattr(r, "value"))
            if value is None:
                continue
            key = (_table_id(r.table), str(r.dataset), str(r.method), str(r.metric),
                   fmt_num(_num(getattr(r, "alpha", None))), fmt_num(_num(getattr(r, "beta", None))))
            self._values[key] = value

    def get(self, cell: Cell) -> float | None:
        return self._values.get((cell.table, cell.dataset, cell.method, cell.metric,
                                 fmt_num(cell.alpha), fmt_num(cell.beta)))


def _table_id(t: Any) -> str:
    text = str(t).strip()
    text = text[len("table"):].strip() if text.lower().startswith("table") else text
    return text[:-2] if text.endswith(".0") else text


def _num(v: Any) -> float | None:
    if v is None or v == "" or v == "-":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


# --------------------------------------------------------------------------------------------
# our runs


def run_presets(runs: pd.DataFrame) -> pd.Series:
    """The ``preset`` of each run (``paper`` where the column is absent or empty)."""
    if "preset" not in runs.columns:
        return pd.Series(DEFAULT_PRESET, index=runs.index)
    return runs["preset"].fillna("").astype(str).replace({"": DEFAULT_PRESET, "nan": DEFAULT_PRESET})


class RunIndex:
    """Runs grouped by what identifies a configuration, per (scale, synthetic, preset) group."""

    def __init__(self, runs: pd.DataFrame):
        self.runs = runs.reset_index(drop=True)
        presets = run_presets(self.runs)
        self._groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(self.runs.itertuples(index=False)):
            key = self.config_key(str(r.dataset), str(r.method), str(r.ablation or "none"), _num(r.alpha),
                                  _num(r.beta)) + (str(r.scale), bool(r.synthetic), presets.iloc[i])
            self._groups.setdefault(key, []).append(i)
        others = sorted(set(presets) - {DEFAULT_PRESET})
        #: (scale, synthetic, preset) in order of preference
        self.group_order = [(scale, synthetic, preset) for preset in [DEFAULT_PRESET] + others
                            for scale, synthetic in GROUPS]

    @staticmethod
    def config_key(dataset: str, method: str, ablation: str, alpha: float | str | None,
                   beta: float | str | None) -> tuple[str, str, str, str, str]:
        """``(dataset, method, ablation, α, β)`` as text; α, β are ``na`` for methods without LD loss."""
        if method in NO_LD_METHODS:
            return dataset, method, ablation, NA, NA
        return dataset, method, ablation, fmt_num(alpha), fmt_num(beta)

    def rows(self, config: tuple[str, str, str, str, str], group: tuple[str, bool, str]) -> pd.DataFrame:
        return self.runs.iloc[self._groups.get(config + tuple(group), [])]

    def lookup(self, cell: Cell) -> tuple[pd.DataFrame, str, bool, str]:
        """``(rows, scale, synthetic, preset)`` of the preferred group holding results for ``cell``.

        ``rows`` may hold only ``unavailable`` records (then the reason is in ``rows.reason``);
        it is empty when nothing was run.
        """
        fallback = None
        for scale, synthetic, preset in self.group_order:
            key = layouts.cell_key(cell, scale)
            rows = self.rows(self.config_key(key["dataset"], key["method"], key["ablation"], key["alpha"],
                                             key["beta"]), (scale, synthetic, preset))
            if not len(rows):
                continue
            if (rows["status"] == "ok").any():
                return rows, scale, synthetic, preset
            fallback = fallback or (rows, scale, synthetic, preset)
        return fallback or (self.runs.iloc[[]], "", False, "")


def seed_values(rows: pd.DataFrame, metric: str) -> tuple[list[float], list[int]]:
    """``metric`` of the ``ok`` rows, one per seed (the last row of a seed wins), and the seeds."""
    ok = rows[rows["status"] == "ok"].drop_duplicates("seed", keep="last")
    values = pd.to_numeric(ok[metric_column(metric)], errors="coerce").dropna()
    return [float(v) for v in values], [int(s) for s in ok.loc[values.index, "seed"]]


def summarise_runs(rows: pd.DataFrame, metric: str) -> dict[str, Any]:
    """mean, sample std (NaN for one seed), 95% CI (NaN for one seed), n and seeds of ``metric``
    over the ``ok`` rows (one per seed)."""
    values, seeds = seed_values(rows, metric)
    n = len(values)
    mean, low, high = mean_ci(values)
    return {"ours_mean": mean, "ours_std": float(pd.Series(values).std(ddof=1)) if n > 1 else math.nan,
            "ci_low": low, "ci_high": high, "n": n, "seeds": ",".join(map(str, sorted(seeds)))}


# --------------------------------------------------------------------------------------------
# cells


def cell_label(cell: Cell) -> str:
    """How an error names a cell: ``Table 2, Scene, MulSupCon_CLD, mAP``."""
    where = "Figure 2" if cell.table == "figure2" else f"Table {cell.table}"
    return f"{where}, {layouts.DATASET_TITLE.get(cell.dataset, cell.dataset)}, {cell.row}, {cell.metric}"


def compute_cells(cells: Iterable[Cell], runs: pd.DataFrame, paper: pd.DataFrame | None,
                  tolerance: float, allow_mixed: bool = False) -> pd.DataFrame:
    """One row per cell: ours, the paper's value, Δ, the flag, and the note when there is no number.
    A cell whose runs computed differently stops with one error (:mod:`.homogeneity`), or with
    ``allow_mixed`` is shown marked MIXED."""
    rindex = RunIndex(runs)
    pindex = PaperIndex(paper) if paper is not None else None
    out = []
    for cell in cells:
        row: dict[str, Any] = asdict(cell)
        paper_value = pindex.get(cell) if pindex else None
        row.update(status="", ours_mean=math.nan, ours_std=math.nan, n=0, seeds="", ci_low=math.nan,
                   ci_high=math.nan, synthetic=False, scale="", preset="",
                   paper=paper_value if paper_value is not None else math.nan, diff=math.nan,
                   within_tolerance=None, paper_vs_ci="", note="", mixed="", cpu_note="")
        if cell.quoted:
            row["status"] = "quoted"
            row["note"] = "quoted from the paper" if paper_value is not None else "not reported in the paper"
        else:
            rows, scale, synthetic, preset = rindex.lookup(cell)
            row.update(scale=scale, synthetic=synthetic, preset=preset,
                       mixed=check_cell(rows, cell_label(cell), allow_mixed), cpu_note=cpu_note(rows))
            stats = summarise_runs(rows, cell.metric) if len(rows) else {"n": 0}
            if stats["n"]:
                row.update(stats, status="ok")
                if paper_value is not None:
                    row["diff"] = row["ours_mean"] - paper_value
                    row["within_tolerance"] = bool(abs(row["diff"]) <= tolerance + 1e-12)
                    row["paper_vs_ci"] = paper_vs_ci(paper_value, row["ci_low"], row["ci_high"])
                elif pindex is not None:
                    row["note"] = "not reported in the paper"
            elif len(rows):
                row["status"] = "unavailable"
                row["note"] = f"{layouts.DATASET_TITLE.get(cell.dataset, cell.dataset)}: {_first_reason(rows)}"
            else:
                row["status"] = "missing"
                row["note"] = NOT_RUN
        out.append(row)
    frame = pd.DataFrame(out, columns=[c for c in CELL_COLUMNS if c not in TEXT_COLUMNS])
    return frame


def _first_reason(rows: pd.DataFrame) -> str:
    reasons = [r for r in rows["reason"].astype(str) if r and r != "nan"]
    return reasons[0] if reasons else "no result (see the run's log)"


def table_frame(table_id: str, runs: pd.DataFrame, paper: pd.DataFrame | None, tolerance: float,
                allow_mixed: bool = False) -> pd.DataFrame:
    """Cells of Table ``table_id`` with their rendered text (``ours_text``, ``paper_text`` and both
    in one line, ``text``, for the CSV)."""
    spec = layouts.TABLES[str(table_id)]
    cells = layouts.table_cells(spec.id)
    frame = compute_cells(cells, runs, paper, tolerance, allow_mixed)
    notes = Footnotes()
    texts = [cell_texts(r, spec.digits, notes) for r in frame.to_dict("records")]
    frame["ours_text"] = [t[0] for t in texts]
    frame["paper_text"] = [t[1] for t in texts]
    frame["text"] = [cell_text(r, spec.digits) if r["status"] == "quoted" else
                     (f"{o} · paper {p}" if p else o) for r, (o, p) in zip(frame.to_dict("records"), texts)]
    frame.attrs["footnotes"] = notes.items
    frame.attrs["rows"] = tuple(spec.methods)
    return frame


# --------------------------------------------------------------------------------------------
# text


class Footnotes:
    """Numbered reasons, so a long "dataset not available: …" is printed once, under the table."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def ours_text(r: dict[str, Any], digits: int, ci: bool = True) -> str:
    """``[SYNTHETIC ]mean ± std (n=k), CI [lo, hi]`` (no ± and no CI for one seed)."""
    text = num(r["ours_mean"], digits)
    if r["n"] > 1:
        text += f" ± {num(r['ours_std'], digits)}"
    text += f" (n={r['n']})"
    if ci and _num(r.get("ci_low")) is not None:
        text += f", CI [{num(r['ci_low'], digits)}, {num(r['ci_high'], digits)}]"
    text = f"{SYNTHETIC} {text}" if r.get("synthetic") else text
    return f"{MIXED} {text}" if r.get("mixed") else text


def cell_texts(r: dict[str, Any], digits: int, notes: Footnotes | None = None) -> tuple[str, str]:
    """``(ours, paper)`` sub-cells. ours: :func:`ours_text`, or ``— (reason [k])``; paper: the printed
    value, then ``Δ d[ ⚠]`` and where it lies against our CI (``consistent``, ``ours lower``, …)."""
    paper_value = _num(r.get("paper"))
    paper_txt = num(paper_value, digits)
    if r["status"] == "quoted":
        return "", (f"{paper_txt} (quoted)" if paper_value is not None else "— (not reported)")
    if r["status"] != "ok":
        short = SHORT_REASON.get(r["status"], "no result")
        note = f"({short} {notes.ref(r['note'])})" if notes is not None else f"({r['note']})"
        return f"— {note}", paper_txt
    ours = ours_text(r, digits)
    for key in ("mixed", "cpu_note"):
        if r.get(key) and notes is not None:
            ours += f" {notes.ref((MIXED + ': ' if key == 'mixed' else '') + str(r[key]))}"
    if paper_value is None:
        return ours, "— (not reported)"
    delta = f"Δ {num(r['diff'], digits, sign=True)}"
    if r.get("within_tolerance") is False:
        delta = f"**{delta} {FLAG}**"
    parts = [paper_txt, delta] + ([r["paper_vs_ci"]] if r.get("paper_vs_ci") else [])
    return ours, " · ".join(parts)


def cell_text(r: dict[str, Any], digits: int, notes: Footnotes | None = None) -> str:
    """Both sub-cells on one line: ``ours · paper p · Δ d · consistent`` (the CSV's ``text``)."""
    ours, paper_txt = cell_texts(r, digits, notes)
    if r["status"] == "quoted":
        return paper_txt
    return f"{ours} · paper {paper_txt}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table (tabulate), strings kept as given."""
    from tabulate import tabulate

    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)


def summary_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Cells of our methods: total with a paper value, compared, within, beyond tolerance, no result;
    and, of the compared cells with an interval, how many hold the paper's value inside it."""
    ours = frame[frame["status"] != "quoted"]
    has_paper = ours["paper"].notna()
    compared = ours[has_paper & (ours["status"] == "ok")]
    within = int(compared["within_tolerance"].astype(bool).sum())
    ci = compared["paper_vs_ci"].fillna("")
    return {"total": int(has_paper.sum()), "compared": len(compared), "within": within,
            "beyond": len(compared) - within, "no_result": int((has_paper & (ours["status"] != "ok")).sum()),
            "with_ci": int((ci != "").sum()), "consistent": int((ci == "consistent").sum())}


def _preamble(spec: layouts.TableSpec, frame: pd.DataFrame, tolerance: float) -> list[str]:
    ran = frame[frame["status"] == "ok"]
    lines = [f"# {spec.title} (regenerated)", "", f"> Paper: {spec.caption}", ""]
    lines += banner_lines(bool(ran["synthetic"].astype(bool).any()), ran["scale"], "cells")
    presets = sorted(set(ran["preset"]) - {""})
    if presets and presets != [DEFAULT_PRESET]:
        lines += [f"Preset: {', '.join(presets)}.", ""]
    lines += ["Each cell has two sub-columns. **ours** = mean ± sample std over seeds (n runs) and the "
              "mean's 95% confidence interval (Student t; none for one seed). **paper** = the value printed "
              f"in the paper · Δ = ours − paper (**⚠** = |Δ| > tolerance {tolerance:g}) · where the paper's "
              "value lies against our interval: *consistent* (inside), *ours lower*, *ours higher*. "
              "— = no number, with the reason in the notes below. Metrics: `paper` protocol.", ""]
    if any(label in frame["row"].values for label in CONTROL_METHOD.values()):
        lines += ["Rows marked *ours* are our controls (e.g. no pretraining), not rows of the paper.", ""]
    return lines


def render_markdown(table_id: str, frame: pd.DataFrame, tolerance: float) -> str:
    """The table as markdown, in the paper's layout (rows, columns and metric blocks)."""
    spec = layouts.TABLES[str(table_id)]
    lines = _preamble(spec, frame, tolerance)
    if spec.kind == "main":
        lines += _render_main(spec, frame)
    else:
        lines += _render_grid(spec, frame)
    notes = frame.attrs.get("footnotes", [])
    if notes:
        lines += ["", "Notes:", ""] + [f"[{i}] {text}  " for i, text in enumerate(notes, 1)]
    c = summary_counts(frame)
    lines += ["", f"Within tolerance: {c['within']} / {c['total']} cells with a paper value "
                  f"({c['compared']} compared, {c['beyond']} beyond, {c['no_result']} without our result). "
                  f"Paper's value inside our 95% CI: {c['consistent']} / {c['with_ci']} cells with an interval."]
    return "\n".join(lines) + "\n"


def _sub_header(titles: Iterable[str]) -> list[str]:
    return [f"{t} {side}" for t in titles for side in ("ours", "paper")]


def _render_main(spec: layouts.TableSpec, frame: pd.DataFrame) -> list[str]:
    """One markdown table per metric (the paper prints two side by side), each dataset split into
    an ``ours`` and a ``paper`` sub-column."""
    cells = {(r["row"], r["metric"], r["dataset"]): (r["ours_text"], r["paper_text"])
             for r in frame.to_dict("records")}
    rows = frame.attrs.get("rows") or tuple(dict.fromkeys(frame["row"]))
    lines: list[str] = []
    for block in spec.blocks:
        for metric in block:
            body = []
            for method in rows:
                label = method + (" (quoted)" if method in plan.QUOTED_METHODS else "")
                body.append([label] + [t for ds in spec.datasets for t in cells[(method, metric, ds)]])
            lines += [f"## {metric} ↑", "", markdown_table(["Algorithm"] + _sub_header(spec.titles), body), ""]
    return lines


def _render_grid(spec: layouts.TableSpec, frame: pd.DataFrame) -> list[str]:
    other = "β" if spec.fixed == "alpha" else "α"
    lines: list[str] = []
    for p, fixed_value in enumerate(plan.PAPER_GRID):
        part = frame[frame["block"] == p]
        body = []
        for row_label in dict.fromkeys(part["row"]):
            cells = part[part["row"] == row_label].set_index("metric")
            body.append([row_label.split(" = ", 1)[1]]
                        + [t for m in spec.metrics for t in (cells.at[m, "ours_text"], cells.at[m, "paper_text"])])
        panel = part["panel"].iloc[0]
        lines += [f"## {panel} {spec.panel_caption.format(value=fmt_num(fixed_value))}", "",
                  markdown_table([other] + _sub_header(spec.metrics), body), ""]
    return lines


class TableFrames:
    """The cell frame of each table for one runs table, built at most once: a command that writes the
    tables, the diff and the delta figure builds each table's cells one time."""

    def __init__(self, runs: pd.DataFrame, paper: pd.DataFrame | None = None, tolerance: float = 0.02,
                 allow_mixed: bool = False):
        self.runs, self.tolerance, self.allow_mixed = runs, tolerance, allow_mixed
        self.paper = load_paper() if paper is None else paper
        self._built: dict[str, pd.DataFrame] = {}

    def __getitem__(self, table_id: str) -> pd.DataFrame:
        table_id = str(table_id)
        if table_id not in self._built:
            self._built[table_id] = table_frame(table_id, self.runs, self.paper, self.tolerance, self.allow_mixed)
        return self._built[table_id]


def write_table(table_id: str, runs: pd.DataFrame, out_md: str | os.PathLike, out_csv: str | os.PathLike,
                tolerance: float, paper: pd.DataFrame | None = None, allow_mixed: bool = False) -> pd.DataFrame:
    """Write Table ``table_id`` as markdown and as a CSV of its cells (both atomically)."""
    frame = table_frame(table_id, runs, load_paper() if paper is None else paper, tolerance, allow_mixed)
    write_table_frame(table_id, frame, out_md, out_csv, tolerance)
    return frame


def write_table_frame(table_id: str, frame: pd.DataFrame, out_md: str | os.PathLike, out_csv: str | os.PathLike,
                      tolerance: float) -> None:
    """Write the cells ``frame`` of Table ``table_id`` as markdown and CSV (both atomically)."""
    write_text(out_md, render_markdown(table_id, frame, tolerance))
    write_text(out_csv, frame.to_csv(index=False))
