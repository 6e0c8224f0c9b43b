"""``mulsupcon-ld docs``: the documents whose numbers come from runs, generated from the snapshot.

``docs/reproduction.md`` is rendered from its template ``docs/templates/reproduction.md.j2`` (prose
with the numbers left as Jinja2 expressions) and the snapshot's ``docs/results/runs.csv`` and
``claims.csv``: no number from a run is typed by hand. The numbers of ``docs/method.md`` and the README that
come from runs are generated blocks among typed prose (:data:`BLOCK_DOCUMENTS`). ``--check`` renders without
writing and fails (exit 1) when a committed document differs from its regeneration; ``tests/test_docs.py`` does
the same. The snapshot's records (``docs/results/runs/<run-id>/metrics.json.gz``) are gathered into
``runs.csv`` by ``mulsupcon-ld docs --collect`` (:func:`collect_snapshot`).
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..atomic import write_text
from ..cost import run_cost
from ..names import NO_PRETRAIN_METHODS
from ..run_settings import resolve_settings
from ..paper_numbers import REPO_ROOT
from ..pipeline import plan
from ..pipeline.cost import table_costs
from .aggregate import run_row, write_runs
from .figure import figure2_frame
from .format import num
from .method_numbers import context as method_context
from .runs_table import read_runs
from .tables import TableFrames, markdown_table, summary_counts

#: generated document -> its template (paths relative to the repository root)
DOCUMENTS = {"docs/reproduction.md": "docs/templates/reproduction.md.j2"}
#: documents with generated blocks among typed prose: each ``<!-- generated: NAME -->`` … ``<!-- /generated -->``
#: block is rendered from ``docs/templates/blocks/NAME.md.j2`` (in a list item the closing line keeps its
#: indentation); docs/method.md's blocks read the validation screenings' rows (:mod:`.method_numbers`)
BLOCK_DOCUMENTS = ("README.md", "docs/method.md")
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)([ \t]*<!-- /generated -->)", re.S)
#: the README's main command (README, "Install and test"): its datasets and targets
MAIN_COMMAND = {"datasets": ["yeast", "scene"], "targets": ("2", "3")}
SNAPSHOT = "docs/results"
#: the rebuild's config and targets (README, "Rebuild the snapshot")
REBUILD_CONFIG = "config/rebuild.yaml"
REBUILD_TARGETS = ("2", "3", "5", "6", "figure2")
OUR_ROWS = ("MulSupCon", "MulSupCon_RLD", "MulSupCon_CLD", "BCE (no pretraining, ours)", "ASL (ours)")


def collect_snapshot(root: Path) -> pd.DataFrame:
    """``runs.csv`` of the snapshot's gzipped records, one row per run (run ids from their folders)."""
    rows = []
    for path in sorted((root / "runs").rglob("metrics.json.gz")):
        record = json.loads(gzip.decompress(path.read_bytes()))
        rel = path.relative_to(root).with_suffix("").as_posix()          # runs/<run-id>/metrics.json
        rows.append(run_row(record, f"results/{rel}"))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ facts
def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def _values(runs: pd.DataFrame, column: str) -> list[str]:
    return sorted({str(v) for v in runs[column].dropna()}) if column in runs.columns else []


def rebuild_plan(root: Path = REPO_ROOT, isa: str | None = None) -> dict[str, Any]:
    """The rebuild's planned vector runs (all targets together) and ``cost``'s estimate of them at the
    rates measured on the CPU class ``isa`` (that of the snapshot's runs, so that the page does not
    depend on the machine that renders it)."""
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    config.update(yaml.safe_load((root / REBUILD_CONFIG).read_text()))
    rc = plan.RunConfig.from_config(config)
    keys = {k for t in REBUILD_TARGETS for k in plan.runs_for_target(t, rc) if rc.kind(k.dataset) == "vector"}
    (cost,) = table_costs(["all"], {**config, "datasets": sorted({k.dataset for k in keys})}, "cpu", isa=isa)
    return {"runs": len(keys), "cpu_hours": cost["cpu_hours"], "isa": isa,
            "per_dataset": {d: sum(k.dataset == d for k in keys) for d in sorted({k.dataset for k in keys})}}


def wall_facts(snapshot: Path) -> dict[str, Any]:
    """The rebuild's sessions (``rebuild_sessions.csv``, written by scripts/publish_snapshot.py --log):
    each one's wall time from its start to its newest record, and their sum."""
    path = snapshot / "rebuild_sessions.csv"
    if not path.is_file():
        return {"sessions": [], "hours": 0.0}
    rows = pd.read_csv(path)
    sessions = []
    for r in rows.itertuples(index=False):
        hours = (pd.Timestamp(r.last_record_utc) - pd.Timestamp(r.start_utc)).total_seconds() / 3600
        sessions.append({"start": r.start_utc, "end": r.last_record_utc, "hours": hours, "records": int(r.records)})
    return {"sessions": sessions, "hours": sum(s["hours"] for s in sessions)}


def main_command(runs: pd.DataFrame, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The runs README's main command plans (the default config, Yeast and Scene, Tables 2–3) and
    what those of them in the snapshot took: the same configurations, so the same runs."""
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    config["datasets"] = MAIN_COMMAND["datasets"]
    rc = plan.RunConfig.from_config(config)
    keys = {k for t in MAIN_COMMAND["targets"] for k in plan.runs_for_target(t, rc)}
    ids = {k.run_id for k in keys}
    done = _ok(runs)[_ok(runs)["run_id"].isin(ids)]
    cpu_s = float(pd.to_numeric(done["wall_time_s.total"], errors="coerce").sum())
    return {"runs": len(keys), "done": len(done), "cpu_minutes": cpu_s / 60,
            "wall_minutes_2_cores": cpu_s / 60 / 2}


def time_facts(runs: pd.DataFrame) -> dict[str, Any]:
    """Wall times of the ``ok`` runs: per dataset and method the range (seconds), and the total
    CPU-hours (one torch thread per run: a run's wall time is its CPU time, waits included)."""
    ok = _ok(runs)
    total = pd.to_numeric(ok["wall_time_s.total"], errors="coerce")
    ranges = {}
    for (dataset, method), t in total.groupby([ok["dataset"], ok["method"]]):
        ranges[(dataset, method)] = (float(t.min()), float(t.max()), float(t.median()), len(t))
    return {"cpu_hours": float(total.sum()) / 3600, "ranges": ranges,
            "per_dataset_hours": {d: float(t.sum()) / 3600 for d, t in total.groupby(ok["dataset"])}}


def estimate_done(runs: pd.DataFrame, isa: str | None) -> dict[str, float]:
    """``cost``'s estimate, in CPU-hours, of the ``ok`` runs themselves (per dataset and ``total``),
    at the rates of the CPU class ``isa``: beside what they took, it says how good the estimate is."""
    ok, cache, out = _ok(runs), {}, {}
    for r in ok.itertuples(index=False):
        at = (r.dataset, r.scale, r.preset or "paper", r.method not in NO_PRETRAIN_METHODS)
        if at not in cache:
            cache[at] = run_cost(resolve_settings(at[0], at[1], at[2]), "cpu", pretrain=at[3], isa=isa).hours
        out[r.dataset] = out.get(r.dataset, 0.0) + cache[at]
    out["total"] = sum(out.values())
    return out


def seconds(x: float) -> str:
    """``41 s``, ``18.3 min``."""
    return f"{x:.0f} s" if x < 600 else f"{x / 60:.1f} min"


def main_table(frames: TableFrames, dataset: str) -> str:
    """Tables 2–3 for one dataset as metric × our rows: mean ± sd (n), the paper's value and Δ."""
    cells = pd.concat([frames["2"], frames["3"]], ignore_index=True)
    cells = cells[(cells["dataset"] == dataset) & cells["row"].isin(OUR_ROWS) & (cells["status"] == "ok")]
    body = []
    for metric in plan.METRICS:
        for row in OUR_ROWS:
            c = cells[(cells["metric"] == metric) & (cells["row"] == row)]
            if c.empty:
                continue
            r = c.iloc[0]
            paper = None if math.isnan(r["paper"]) else float(r["paper"])
            body.append([metric, row, f"{num(r['ours_mean'])} ± {num(r['ours_std'])} ({int(r['n'])})",
                         num(paper), num(r["diff"], sign=True) if paper is not None else "—",
                         r["paper_vs_ci"] or "—"])
    return markdown_table(["metric", "method", "ours (n)", "paper", "Δ", "paper vs our 95% CI"], body)


def grid_table(frames: TableFrames) -> str:
    """Per metric over the 16 cells of Tables 5–6: within tolerance, mean and range of Δ, our and the
    paper's ranges, our best cell."""
    cells = frames["5"]
    cells = cells[cells["status"] == "ok"]
    body = []
    for metric in plan.METRICS:
        c = cells[cells["metric"] == metric]
        if c.empty:
            continue
        best = c.loc[c["ours_mean"].idxmax()]
        body.append([metric, f"{int(c['within_tolerance'].astype(bool).sum())} / {len(c)}",
                     num(c["diff"].mean(), sign=True), f"{num(c['diff'].min(), sign=True)} … {num(c['diff'].max(), sign=True)}",
                     f"{num(c['ours_mean'].min())} – {num(c['ours_mean'].max())}",
                     f"{num(c['paper'].min())} – {num(c['paper'].max())}",
                     f"α = {plan.fmt_num(best['alpha'])}, β = {plan.fmt_num(best['beta'])} ({num(best['ours_mean'])})",
                     f"{int(c['n'].min())}–{int(c['n'].max())}"])
    return markdown_table(["metric", "cells within tolerance", "mean Δ", "Δ range", "our range", "paper's range",
                           "our best cell", "seeds per cell"], body)


def figure2_table(runs: pd.DataFrame) -> str:
    """Figure 2's Scene bars: variant × metric, mean ± sd (n)."""
    frame = figure2_frame(runs)
    frame = frame[(frame["dataset"] == "scene") & (frame["status"] == "ok")]
    body = []
    for variant in dict.fromkeys(frame["row"]):
        part = frame[frame["row"] == variant].set_index("metric")
        body.append([variant] + [f"{num(part.at[m, 'ours_mean'])} ± {num(part.at[m, 'ours_std'])} ({int(part.at[m, 'n'])})"
                                 if m in part.index else "—" for m in plan.METRICS])
    return markdown_table(["variant"] + list(plan.METRICS), body)


def claims_counts(claims: pd.DataFrame) -> str:
    """Verdicts per kind of claim (rows) — the summary of ``claims.md`` in one table."""
    if claims.empty:
        return "(no claims file)"
    table = pd.crosstab(claims["kind"], claims["verdict"])
    return markdown_table(["kind"] + list(table.columns),
                          [[k] + [str(int(v)) for v in row] for k, row in zip(table.index, table.to_numpy())])


def context(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Everything the templates read, computed from the snapshot under ``root``."""
    snap = root / SNAPSHOT
    runs = read_runs(snap / "runs.csv")
    claims_path = snap / "claims.csv"
    claims = pd.read_csv(claims_path) if claims_path.is_file() else pd.DataFrame()
    frames = TableFrames(runs)
    ok = _ok(runs)
    diff = {t: summary_counts(frames[t]) for t in ("2", "3", "5", "6")}
    isa = _values(ok, "arithmetic.isa_class")
    return {
        "runs": runs, "ok": ok, "frames": frames, "plan": rebuild_plan(root, isa[0] if isa else None),
        "time": time_facts(runs), "wall": wall_facts(snap), "isa_classes": isa, "main_command": main_command(runs, root), "estimate": estimate_done(runs, isa[0] if isa else None),
        "commits": _values(ok, "arithmetic.code"), "precisions": _values(ok, "arithmetic.precision"),
        "lanes": _values(ok, "arithmetic.lane"), "flush": _values(ok, "arithmetic.flush_denormal"),
        "readings": _values(ok, "arithmetic.reading"), "cpus": _values(ok, "arithmetic.cpu_model"),
        "torch": _values(ok, "arithmetic.torch"), "threads": _values(ok, "arithmetic.threads"),
        "per_dataset": ok.groupby("dataset").size().to_dict(), "diff": diff,
        "main_table": lambda d: main_table(frames, d), "grid_table": lambda: grid_table(frames),
        "figure2_table": lambda: figure2_table(runs), "claims_counts": lambda: claims_counts(claims),
        "num": num, "seconds": seconds, **method_context(root),
    }


def render(template: str, ctx: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(**ctx)


def regenerate(root: Path = REPO_ROOT) -> dict[str, str]:
    """Each generated document's text: whole documents from their templates, and the documents with
    generated blocks with each block rendered anew (the prose around them kept as it is)."""
    ctx = context(root)
    out = {doc: render((root / tpl).read_text(), ctx) for doc, tpl in DOCUMENTS.items()}
    for doc in BLOCK_DOCUMENTS:
        def block(m: re.Match) -> str:
            tpl = root / "docs/templates/blocks" / f"{m['name']}.md.j2"
            return m.group(1) + render(tpl.read_text(), ctx) + m.group(4)
        out[doc] = BLOCK.sub(block, (root / doc).read_text())
    return out


def cmd_docs(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if args.collect:
        frame = collect_snapshot(root / SNAPSHOT)
        write_runs(frame, root / SNAPSHOT / "runs.csv")
        print(f"{root / SNAPSHOT / 'runs.csv'}: {len(frame)} runs", file=sys.stderr)
    stale = 0
    for doc, text in regenerate(root).items():
        path = root / doc
        old = path.read_text() if path.is_file() else ""
        if args.check:
            if old != text:
                stale += 1
                sys.stderr.writelines(list(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                                f"{doc} (committed)", f"{doc} (regenerated)"))[:40])
        elif old != text:
            write_text(path, text)
            print(f"{path}: regenerated", file=sys.stderr)
    if stale:
        print(f"error: {stale} document(s) differ from their regeneration; run `mulsupcon-ld docs`", file=sys.stderr)
        return 1
    return 0
