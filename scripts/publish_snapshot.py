"""Publish a rebuild's finished runs as the snapshot in ``docs/results/`` and regenerate everything
that is computed from it (README, "Rebuild the snapshot").

    python scripts/publish_snapshot.py --results ../rebuild/results

1. every finished ``RESULTS/runs/<run-id>/metrics.json`` (status ok) is kept, gzipped, as
   ``docs/results/runs/<run-id>/metrics.json.gz`` (a record already there is left as it is);
2. ``docs/results/runs.csv`` is collected from those records (``mulsupcon-ld docs --collect``);
3. the claims, the delta figure, the tables with runs and ``diff.md`` (``mulsupcon-ld claims``) and
   Figure 2 are regenerated from it — each refuses cells whose runs computed differently;
4. ``docs/reproduction.md`` is regenerated (``mulsupcon-ld docs``).

``--log REBUILD_LOG`` (the rebuild script's output, whose first line is ``# start <UTC time> commit …``)
adds or updates one row of ``docs/results/rebuild_sessions.csv``: the session's start, the time its
newest record was written, and how many records it had then — the wall time of the rebuild, summed
over the sessions it spans, in docs/reproduction.md.

``--restore WORKTREE`` does the reverse for a rebuild that continues on a new machine: the snapshot's
records are written back as ``WORKTREE/results/runs/<run-id>/metrics.json`` so that snakemake does
not run them again.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "docs" / "results"


def keep_records(results: Path) -> int:
    """Gzip the finished records of ``results/runs`` into the snapshot; returns how many are new."""
    new = 0
    for path in sorted((results / "runs").rglob("metrics.json")):
        record = json.loads(path.read_text())
        if record.get("status", "ok") != "ok" or not record.get("metrics"):
            continue                                   # an unavailable placeholder: nothing to keep
        out = SNAPSHOT / "runs" / path.relative_to(results / "runs").parent / "metrics.json.gz"
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".gz.tmp")
        tmp.write_bytes(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))
        tmp.rename(out)
        new += 1
    return new


def log_session(log: Path, results: Path) -> None:
    """One row per rebuild session (its start from ``log``): start, the newest record's time, records."""
    import pandas as pd

    first = log.read_text().splitlines()[0].split()
    if first[:2] != ["#", "start"]:
        raise SystemExit(f"{log}: the first line is not the rebuild script's '# start <time> …'")
    records = list((results / "runs").rglob("metrics.json"))
    newest = max(p.stat().st_mtime for p in records)
    row = {"start_utc": first[2], "last_record_utc": datetime.fromtimestamp(newest, timezone.utc)
           .strftime("%Y-%m-%dT%H:%M:%SZ"), "records": len(records)}
    path = SNAPSHOT / "rebuild_sessions.csv"
    old = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=list(row))
    rows = pd.concat([old[old["start_utc"] != row["start_utc"]], pd.DataFrame([row])], ignore_index=True)
    rows.sort_values("start_utc").to_csv(path, index=False)


def restore(worktree: Path) -> int:
    n = 0
    for path in sorted((SNAPSHOT / "runs").rglob("metrics.json.gz")):
        out = worktree / "results" / "runs" / path.relative_to(SNAPSHOT / "runs").parent / "metrics.json"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(gzip.decompress(path.read_bytes()))
            n += 1
    return n


def regenerate() -> None:
    """Steps 2–4, in this process, with the library's own functions."""
    from mulsupcon_ld.atomic import write_text
    from mulsupcon_ld.report.aggregate import write_runs
    from mulsupcon_ld.report.claims import write_claims, write_tables_dir
    from mulsupcon_ld.report.delta import write_delta
    from mulsupcon_ld.report.docs import collect_snapshot, regenerate as regenerate_docs
    from mulsupcon_ld.report.figure import write_figure2
    from mulsupcon_ld.report.runs_table import read_runs
    from mulsupcon_ld.report.tables import TableFrames

    pdfs = Path(tempfile.mkdtemp())      # the PDFs are for papers, not for the repository: PNGs only
    write_runs(collect_snapshot(SNAPSHOT), SNAPSHOT / "runs.csv")
    runs = read_runs(SNAPSHOT / "runs.csv")
    print(f"{SNAPSHOT / 'runs.csv'}: {len(runs)} runs", file=sys.stderr)
    write_claims(runs, SNAPSHOT / "claims.md", SNAPSHOT / "claims.csv")
    frames = TableFrames(runs)
    write_delta(runs, SNAPSHOT / "delta.png", pdfs / "delta.pdf", frames=frames)
    write_tables_dir(frames, SNAPSHOT)
    write_figure2(runs, str(SNAPSHOT / "figure2.png"), str(pdfs / "figure2.pdf"), str(SNAPSHOT / "figure2.csv"))
    (SNAPSHOT / "claims.pdf").unlink(missing_ok=True)   # write_claims draws its forest plot beside the markdown
    for doc, text in regenerate_docs(ROOT).items():
        write_text(ROOT / doc, text)
        print(f"{doc}: regenerated", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, help="a rebuild's results/ folder (e.g. ../rebuild/results)")
    p.add_argument("--log", type=Path, help="the rebuild script's log: record this session's wall time")
    p.add_argument("--restore", type=Path, metavar="WORKTREE", help="write the snapshot's records back into WORKTREE")
    args = p.parse_args(argv)
    if args.restore:
        print(f"{restore(args.restore)} records restored into {args.restore}/results/runs", file=sys.stderr)
        return 0
    if args.results:
        print(f"{keep_records(args.results)} new records in {SNAPSHOT / 'runs'}", file=sys.stderr)
        if args.log:
            log_session(args.log, args.results)
    regenerate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
