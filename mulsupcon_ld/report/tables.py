"""Tables 2–8 in the paper's layout, each cell showing our number next to the paper's.

A cell shows ``ours`` = mean ± sample standard deviation (ddof 1) over seeds with ``n``, the
paper's value and ``Δ = ours − paper``; ``|Δ| > tolerance`` is flagged ``⚠``. A cell with no
result shows ``—`` and a numbered note saying why (dataset not available: <reason>, or not run
with this configuration); a number is never invented. Cells computed from synthetic stand-ins start
with ``SYNTHETIC``. Table 2's other methods (LaMP, MPVAE, ASL, RBCC, C-GMVAE) show the paper's
numbers, labelled ``(quoted)``.

Which runs fill a cell is decided by :mod:`.plan` (Tables 2–4: ablation ``none`` at the default
α, β; Tables 5–8: the cell's α, β). When runs of one cell exist at several scales or data kinds,
real data wins over synthetic and ``paper`` scale over ``smoke``; they are never mixed.
Metrics are those of the ``paper`` protocol (``val-threshold`` ones are in ``results/runs.csv``).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from typing import Any, Iterable

import pandas as pd

from ..atomic import write_text
from . import plan
from .aggregate import metric_column
from .plan import NA, Cell, fmt_num

#: preference order of (scale, synthetic) when a cell has runs of several kinds
GROUPS = (("paper", False), ("smoke", False), ("paper", True), ("smoke", True))
NOT_RUN = "not run with this configuration (see config keys datasets, methods, seeds, alphas, betas, ablations)"
FLAG = "⚠"
SHORT_REASON = {"unavailable": "dataset not available", "missing": "not run"}
CELL_COLUMNS = ["table", "panel", "block", "row", "column", "dataset", "method", "metric", "alpha", "beta",
                "ablation", "status", "ours_mean", "ours_std", "n", "seeds", "synthetic", "scale", "paper",
                "diff", "within_tolerance", "note", "text"]


# --------------------------------------------------------------------------------------------
# paper numbers


def load_paper() -> pd.DataFrame:
    """The paper's numbers (``table, dataset, method, metric, alpha, beta, value``)."""
    from ..paper_numbers import load_paper_numbers

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


class RunIndex:
    """Runs grouped by what identifies a cell (see :func:`plan.cell_key`), per (scale, synthetic)."""

    def __init__(self, runs: pd.DataFrame):
        self.runs = runs.reset_index(drop=True)
        self._groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(self.runs.itertuples(index=False)):
            method = str(r.method)
            a = NA if method in plan.NO_LD_METHODS else fmt_num(_num(r.alpha))
            b = NA if method in plan.NO_LD_METHODS else fmt_num(_num(r.beta))
            key = (str(r.dataset), method, str(r.ablation or "none"), a, b, str(r.scale), bool(r.synthetic))
            self._groups.setdefault(key, []).append(i)

    def lookup(self, cell: Cell) -> tuple[pd.DataFrame, str, bool]:
        """``(rows, scale, synthetic)`` of the preferred group holding results for ``cell``.

        ``rows`` may hold only ``unavailable`` records (then the reason is in ``rows.reason``);
        it is empty when nothing was run.
        """
        fallback = None
        for scale, synthetic in GROUPS:
            key = plan.cell_key(cell, scale)
            idx = self._groups.get((key["dataset"], key["method"], key["ablation"], key["alpha"], key["beta"],
                                    scale, synthetic), [])
            if not idx:
                continue
            rows = self.runs.iloc[idx]
            if (rows["status"] == "ok").any():
                return rows, scale, synthetic
            fallback = fallback or (rows, scale, synthetic)
        return fallback or (self.runs.iloc[[]], "", False)


def summarise_runs(rows: pd.DataFrame, metric: str) -> dict[str, Any]:
    """mean, sample std (NaN for one seed), n and seeds of ``metric`` over the ``ok`` rows (one per seed)."""
    ok = rows[rows["status"] == "ok"].drop_duplicates("seed", keep="last")
    values = pd.to_numeric(ok[metric_column(metric)], errors="coerce").dropna()
    seeds = sorted(int(s) for s in ok.loc[values.index, "seed"])
    n = len(values)
    return {"ours_mean": float(values.mean()) if n else math.nan,
            "ours_std": float(values.std(ddof=1)) if n > 1 else math.nan,
            "n": n, "seeds": ",".join(map(str, seeds))}


# --------------------------------------------------------------------------------------------
# cells


def compute_cells(cells: Iterable[Cell], runs: pd.DataFrame, paper: pd.DataFrame | None,
                  tolerance: float) -> pd.DataFrame:
    """One row per cell: ours, the paper's value, Δ, the flag, and the note when there is no number."""
    rindex = RunIndex(runs)
    pindex = PaperIndex(paper) if paper is not None else None
    out = []
    for cell in cells:
        row: dict[str, Any] = asdict(cell)
        paper_value = pindex.get(cell) if pindex else None
        row.update(status="", ours_mean=math.nan, ours_std=math.nan, n=0, seeds="", synthetic=False, scale="",
                   paper=paper_value if paper_value is not None else math.nan, diff=math.nan,
                   within_tolerance=None, note="")
        if cell.quoted:
            row["status"] = "quoted"
            row["note"] = "quoted from the paper" if paper_value is not None else "not reported in the paper"
        else:
            rows, scale, synthetic = rindex.lookup(cell)
            row.update(scale=scale, synthetic=synthetic)
            stats = summarise_runs(rows, cell.metric) if len(rows) else {"n": 0}
            if stats["n"]:
                row.update(stats, status="ok")
                if paper_value is not None:
                    row["diff"] = row["ours_mean"] - paper_value
                    row["within_tolerance"] = bool(abs(row["diff"]) <= tolerance + 1e-12)
                elif pindex is not None:
                    row["note"] = "not reported in the paper"
            elif len(rows):
                row["status"] = "unavailable"
                row["note"] = f"{plan.DATASET_TITLE.get(cell.dataset, cell.dataset)}: {_first_reason(rows)}"
            else:
                row["status"] = "missing"
                row["note"] = NOT_RUN
        out.append(row)
    frame = pd.DataFrame(out, columns=[c for c in CELL_COLUMNS if c != "text"])
    return frame


def _first_reason(rows: pd.DataFrame) -> str:
    reasons = [r for r in rows["reason"].astype(str) if r and r != "nan"]
    return reasons[0] if reasons else "no result (see the run's log)"


def table_frame(table_id: str, runs: pd.DataFrame, paper: pd.DataFrame | None, tolerance: float) -> pd.DataFrame:
    """Cells of Table ``table_id`` with their rendered text (column ``text``)."""
    spec = plan.TABLES[str(table_id)]
    frame = compute_cells(plan.table_cells(spec.id), runs, paper, tolerance)
    notes = Footnotes()
    frame["text"] = [cell_text(r, spec.digits, notes) for r in frame.to_dict("records")]
    frame.attrs["footnotes"] = notes.items
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


def _f(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def cell_text(r: dict[str, Any], digits: int, notes: Footnotes | None = None) -> str:
    """``[SYNTHETIC ]ours ± std (n=k) · paper p · Δ d[ ⚠]``, or ``— [note] · paper p``."""
    paper_value = None if _num(r.get("paper")) is None else float(r["paper"])
    if r["status"] == "quoted":
        return f"{_f(paper_value, digits)} (quoted)" if paper_value is not None else "— (not reported)"
    paper_txt = f"paper {_f(paper_value, digits)}" if paper_value is not None else "paper —"
    if r["status"] != "ok":
        short = SHORT_REASON.get(r["status"], "no result")
        note = f"({short} {notes.ref(r['note'])})" if notes is not None else f"({r['note']})"
        return f"— {note} · {paper_txt}"
    ours = _f(r["ours_mean"], digits)
    if r["n"] > 1:
        ours += f" ± {_f(r['ours_std'], digits)}"
    ours += f" (n={r['n']})"
    if r.get("synthetic"):
        ours = "SYNTHETIC " + ours
    if paper_value is None:
        return f"{ours} · paper — (not reported)"
    delta = f"Δ {r['diff']:+.{digits}f}"
    if r.get("within_tolerance") is False:
        delta = f"**{delta} {FLAG}**"
    return f"{ours} · {paper_txt} · {delta}"


def _md_row(values: Iterable[str]) -> str:
    return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"


def summary_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Cells of our methods: total with a paper value, compared, within, beyond tolerance, no result."""
    ours = frame[frame["status"] != "quoted"]
    has_paper = ours["paper"].notna()
    compared = ours[has_paper & (ours["status"] == "ok")]
    within = int(compared["within_tolerance"].astype(bool).sum())
    return {"total": int(has_paper.sum()), "compared": len(compared), "within": within,
            "beyond": len(compared) - within, "no_result": int((has_paper & (ours["status"] != "ok")).sum())}


def _preamble(spec: plan.TableSpec, frame: pd.DataFrame, tolerance: float) -> list[str]:
    ran = frame[frame["status"] == "ok"]
    lines = [f"# {spec.title} (regenerated)", "", f"> Paper: {spec.caption}", ""]
    if ran["synthetic"].astype(bool).any():
        lines += ["**SYNTHETIC DATA** — cells marked SYNTHETIC come from small deterministic stand-ins of the "
                  "datasets, not the real data: their numbers say nothing about the paper's claims.", ""]
    scales = sorted(set(ran["scale"]))
    if scales:
        lines += [f"Scale: {', '.join(scales)}" + (" (a few epochs, for testing: not comparable to the paper)"
                                                    if "smoke" in scales else "") + ".", ""]
    lines += [f"Each cell: ours = mean ± sample std over seeds (n runs) · paper = the value printed in the "
              f"paper · Δ = ours − paper; **⚠** = |Δ| > tolerance {tolerance:g}. "
              "— = no number, with the reason in the notes below. Metrics: `paper` protocol.", ""]
    return lines


def render_markdown(table_id: str, frame: pd.DataFrame, tolerance: float) -> str:
    """The table as markdown, in the paper's layout (rows, columns and metric blocks)."""
    spec = plan.TABLES[str(table_id)]
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
                  f"({c['compared']} compared, {c['beyond']} beyond, {c['no_result']} without our result)."]
    return "\n".join(lines) + "\n"


def _render_main(spec: plan.TableSpec, frame: pd.DataFrame) -> list[str]:
    width = len(spec.datasets)
    n_metrics = max(len(b) for b in spec.blocks)
    header = ["Algorithm"] + list(spec.titles) * n_metrics
    lines = [_md_row(header), _md_row(["---"] * len(header))]
    text = {(r["block"], r["row"], r["metric"], r["dataset"]): r["text"] for r in frame.to_dict("records")}
    for b, block in enumerate(spec.blocks):
        block_row = [""]
        for metric in block:
            block_row += [f"**{metric} ↑**"] + [""] * (width - 1)
        lines.append(_md_row(block_row))
        for method in spec.methods:
            label = method + (" (quoted)" if method in plan.QUOTED_METHODS else "")
            lines.append(_md_row([label] + [text[(b, method, metric, ds)] for metric in block
                                            for ds in spec.datasets]))
    return lines


def _render_grid(spec: plan.TableSpec, frame: pd.DataFrame) -> list[str]:
    other = "β" if spec.fixed == "alpha" else "α"
    lines: list[str] = []
    for p, fixed_value in enumerate(plan.PAPER_GRID):
        part = frame[frame["block"] == p]
        lines += [_md_row([other] + list(spec.metrics)), _md_row(["---"] * (1 + len(spec.metrics)))]
        for row_label in dict.fromkeys(part["row"]):
            cells = part[part["row"] == row_label].set_index("metric")["text"]
            lines.append(_md_row([row_label.split(" = ", 1)[1]] + [cells[m] for m in spec.metrics]))
        panel = part["panel"].iloc[0]
        lines += ["", f"*{panel} {spec.panel_caption.format(value=fmt_num(fixed_value))}*", ""]
    return lines


def write_table(table_id: str, runs: pd.DataFrame, out_md: str | os.PathLike, out_csv: str | os.PathLike,
                tolerance: float, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write Table ``table_id`` as markdown and as a CSV of its cells (both atomically)."""
    paper = load_paper() if paper is None else paper
    frame = table_frame(table_id, runs, paper, tolerance)
    write_text(out_md, render_markdown(table_id, frame, tolerance))
    write_text(out_csv, frame.to_csv(index=False))
    return frame
