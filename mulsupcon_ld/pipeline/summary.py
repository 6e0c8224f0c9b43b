"""What a workflow run left behind: one summary at its end, and ``strict`` mode.

A workflow on a machine without the data or without a GPU finishes "100% done" with every run
*unavailable* (jobs.py writes a result without metrics rather than failing, so one missing
dataset never stops the other tables). The Snakefile's ``onsuccess`` / ``onerror`` print
:func:`summary_lines` so that this is said at the end and not only in the tables' footnotes: the
runs that are ok, unavailable (grouped by reason), failed or not run, and the table cells that
will show "—". With ``--config strict=true`` any unavailable run makes the workflow exit non-zero.
It also says what the ``ok`` runs cost against what ``mulsupcon-ld cost`` estimates for them
(:func:`time_lines`): the start of a workflow prints the estimate, its end the measurement beside it.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..cost import run_cost
from ..errors import UserError
from ..names import NO_PRETRAIN_METHODS
from ..run_settings import resolve_settings
from .plan import DOWNLOAD_STATUS, PREPARED_STATUS, UNAVAILABLE, TABLE_IDS, TABLES, RunConfig, RunKey, runs_for_figure2, runs_for_table, target_id

#: reason groups, first match wins: (words in the recorded reason, what the summary calls it)
REASON_GROUPS = (
    (("offline", "cannot resolve the host", "no network"), "offline (no network)"),
    (("manual download",), "needs a manual download"),
    (("needs a GPU", "CUDA"), "needs CUDA"),
    (("checksum", "sha256"), "files fail their checksum"),
)
STRICT_EXIT = 3


@dataclass
class Summary:
    ok: list[RunKey] = field(default_factory=list)
    unavailable: dict[str, list[RunKey]] = field(default_factory=lambda: defaultdict(list))
    missing: list[RunKey] = field(default_factory=list)     # no result file: failed or not run
    blank: dict[str, list[str]] = field(default_factory=dict)   # table id -> "dataset: rows" of "—" cells
    cpu_s: float = 0.0          # the ok runs' wall time × torch threads (their records)
    estimate_h: float = 0.0     # `cost`'s estimate of the same ok runs
    kinds: set[str] = field(default_factory=set)   # "cpu"/"cuda" of the ok runs

    @property
    def n_unavailable(self) -> int:
        return sum(len(v) for v in self.unavailable.values())


def reason_group(reason: str) -> str:
    """The group of a recorded reason (:data:`REASON_GROUPS`), else ``other``."""
    low = reason.lower()
    for words, name in REASON_GROUPS:
        if any(w.lower() in low for w in words):
            return name
    return "other (see the run's log)"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _status(key: RunKey, root: Path) -> tuple[str, str]:
    """``("ok" | "unavailable" | "missing", reason)`` of a run: its result file, else (strict mode
    writes none) its data's status file."""
    record = _read(root / key.result)
    if isinstance(record.get("metrics"), dict):
        return "ok", ""
    if record:
        return "unavailable", str(record.get("reason") or "")
    for status_file in (PREPARED_STATUS.format(data=key.data), DOWNLOAD_STATUS.format(dataset=key.dataset)):
        status = _read(root / status_file)
        if status.get("status") == UNAVAILABLE:
            return "unavailable", str(status.get("reason") or "")
    return "missing", ""


def placeholders(targets: Iterable[str] | None, rc: RunConfig, root: str | Path = ".") -> list[RunKey]:
    """Requested runs whose result file is an unavailable placeholder (an earlier non-strict run)."""
    return [k for k in sorted(_requested_runs(targets, rc)[0])
            if _read(Path(root) / k.result) and _status(k, Path(root))[0] == "unavailable"]


def requested_tables(targets: Iterable[str] | None) -> tuple[list[str], bool]:
    """(table ids, figure 2?) of the requested targets; none, or any target that is not a table or
    Figure 2 (runs.csv, the diff, the claims), means every table and Figure 2."""
    ids = [target_id(t) for t in targets or ()]
    if not ids or None in ids or "all" in ids:
        return list(TABLE_IDS), True
    return [i for i in ids if i in TABLES], "figure2" in ids


def _requested_runs(targets: Iterable[str] | None, rc: RunConfig) -> tuple[set[RunKey], dict[str, list[RunKey]]]:
    """Every run the targets need, and the runs of each requested table."""
    tables, figure2 = requested_tables(targets)
    keys: set[RunKey] = set(runs_for_figure2(rc)) if figure2 else set()
    per_table = {t: runs_for_table(t, rc) for t in tables}
    for runs in per_table.values():
        keys.update(runs)
    return keys, per_table


def summarize(targets: Iterable[str] | None, rc: RunConfig, root: str | Path = ".") -> Summary:
    """The state of every run the requested targets need, and the table cells left without a number."""
    root = Path(root)
    keys, per_table = _requested_runs(targets, rc)
    summary, ok = Summary(), set()
    for key in sorted(keys):
        status, reason = _status(key, root)
        if status == "ok":
            summary.ok.append(key)
            ok.add(key)
            _count_time(summary, key, _read(root / key.result))
        elif status == "unavailable":
            summary.unavailable[reason_group(reason)].append(key)
        else:
            summary.missing.append(key)
    for t, runs in per_table.items():
        summary.blank[t] = _blank_cells(t, runs, ok)
    return summary


def _count_time(summary: Summary, key: RunKey, record: dict) -> None:
    """Add one ok run's CPU seconds (wall time × its torch threads) and `cost`'s estimate of it."""
    threads = int((record.get("arithmetic") or {}).get("threads") or 1)
    summary.cpu_s += float((record.get("wall_time_s") or {}).get("total") or 0.0) * threads
    device = "cuda" if str(record.get("device", "")).startswith("cuda") else "cpu"
    summary.kinds.add(device)
    try:
        s = resolve_settings(key.dataset, key.scale, key.preset)
    except UserError:              # a dataset this version no longer knows: no estimate for it
        return
    summary.estimate_h += run_cost(s, device, pretrain=key.method not in NO_PRETRAIN_METHODS).hours


def time_lines(s: Summary) -> list[str]:
    """What the ok runs took beside `cost`'s estimate of them (image runs on a GPU count as hours too)."""
    if not s.ok:
        return []
    hours = s.cpu_s / 3600
    ratio = f"; {hours / s.estimate_h:.2f}× the estimate" if s.estimate_h > 0 else ""
    unit = "CPU-hours" if s.kinds == {"cpu"} else "device-hours"
    return [f"  time: the {len(s.ok)} ok runs took {hours:.2f} {unit} (wall time × threads, from their records); "
            f"`mulsupcon-ld cost` estimates {s.estimate_h:.2f} for them{ratio}"]


def _blank_cells(table: str, runs: list[RunKey], ok: set[RunKey]) -> list[str]:
    """``"dataset: row, row"`` for the rows of ``table`` whose cells get no run with a number."""
    rows: dict[tuple[str, str], bool] = {}
    grid = TABLES[table].kind == "grid"
    for key in runs:
        row = f"α={key.alpha} β={key.beta}" if grid else key.method
        rows[key.dataset, row] = rows.get((key.dataset, row), False) or key in ok
    by_dataset: dict[str, list[str]] = defaultdict(list)
    for (dataset, row), has_number in rows.items():
        if not has_number:
            by_dataset[dataset].append(row)
    return [f"{d}: {', '.join(sorted(r))}" for d, r in sorted(by_dataset.items())]


def summary_lines(s: Summary, strict: bool = False) -> list[str]:
    """The lines printed at the end of a workflow run."""
    total = len(s.ok) + s.n_unavailable + len(s.missing)
    lines = [f"summary: {total} runs: {len(s.ok)} ok, {s.n_unavailable} unavailable, "
             f"{len(s.missing)} failed or not run"]
    for group, keys in sorted(s.unavailable.items()):
        datasets = ", ".join(sorted({k.dataset for k in keys}))
        lines.append(f"  unavailable, {group}: {len(keys)} runs ({datasets}); reasons in results/data/*/*.json "
                     "and logs/")
    if s.missing:
        datasets = ", ".join(sorted({k.dataset for k in s.missing}))
        lines.append(f"  failed or not run: {len(s.missing)} runs ({datasets}); see logs/train/")
    for table, cells in s.blank.items():
        if cells:
            lines.append(f"  table {table} will show \"—\" for {'; '.join(cells)}")
    lines += time_lines(s)
    if s.n_unavailable and strict:
        lines.append(f"strict=true: {s.n_unavailable} unavailable runs count as failures")
    elif s.n_unavailable:
        lines.append("  (--config strict=true makes unavailable runs fail the workflow)")
    return lines


def report(targets: Iterable[str] | None, rc: RunConfig, strict: bool = False, root: str | Path = ".") -> int:
    """Print the summary on stderr; return the exit status strict mode asks for: :data:`STRICT_EXIT`
    when ``strict`` and a run is unavailable, else 0."""
    s = summarize(targets, rc, root)
    print("\n".join(summary_lines(s, strict)), file=sys.stderr)
    return STRICT_EXIT if strict and s.n_unavailable else 0
