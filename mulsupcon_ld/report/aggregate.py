"""Collect ``metrics.json`` result files into one table, one row per run (``results/runs.csv``;
its columns and reader: :mod:`.runs_table`).

Columns: the run's parameters (``dataset, method, seed, alpha, beta, ablation, scale, preset, synthetic``),
``status`` (``ok`` or ``unavailable``) and ``reason``; every metric of both protocols
(``paper.mAP`` … ``val-threshold.ebF1``, ``val-threshold.threshold``); ``wall_time_s.*``;
provenance (``config_hash``, ``result_hash``, ``git_commit``, ``version.<package>``, ``device``,
``cpu`` (model and class), ``host``, ``precision`` as computed); the resolved arithmetic
(``arithmetic.precision``, ``.lane``, ``.flush_denormal``, ``.reading``, ``.torch``, ``.code``,
``.threads``, ``.cpu_model``, ``.isa_class``: :mod:`mulsupcon_ld.arithmetic`) and ``cell_key``; data sizes (``data.n_train`` …, ``data.source``); ``run_id`` and ``path``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..atomic import atomic_path
from ..pipeline.plan import RUNS_ROOT
from ..arithmetic import COLUMNS as ARITHMETIC_COLUMNS
from .runs_table import CELL_KEY, ID_COLUMNS, METRIC_COLUMNS

def run_row(record: dict[str, Any], path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Flatten one result record into a row."""
    metrics = record.get("metrics")
    row: dict[str, Any] = {k: record.get(k) for k in ID_COLUMNS if k not in ("run_id", "status", "reason")}
    row["preset"] = record.get("preset") or "paper"  # records written before presets existed
    row["status"] = record.get("status") or ("ok" if isinstance(metrics, dict) else "unavailable")
    row["reason"] = record.get("reason") or ""
    row["run_id"] = _run_id(path) if path is not None else ""
    for col in METRIC_COLUMNS:
        protocol, name = col.split(".", 1)
        value = ((metrics or {}).get(protocol) or {}).get(name)
        row[col] = float(value) if value is not None else float("nan")
    for k, v in (record.get("wall_time_s") or {}).items():
        row[f"wall_time_s.{k}"] = v
    for k in ("config_hash", "result_hash", "git_commit", "device", "cpu", "host"):
        row[k] = record.get(k, "")
    requested = ((record.get("config") or {}).get("settings") or {}).get("precision", "")
    row["precision"] = (record.get("precision") or {}).get("chosen", requested)   # as computed ("auto" resolved)
    arithmetic = record.get("arithmetic") or {}    # absent in records written before 2026-12-07: blank
    for field, col in ARITHMETIC_COLUMNS.items():
        row[col] = arithmetic.get(field, "")
    row[CELL_KEY] = record.get("cell_key", "")
    for k, v in (record.get("versions") or {}).items():
        row[f"version.{k}"] = v
    for k, v in (record.get("data") or {}).items():
        row[f"data.{k}"] = v
    row["path"] = str(path) if path is not None else ""
    return row


def _run_id(path: str | os.PathLike) -> str:
    """``results/runs/<run-id>/metrics.json`` → ``<run-id>`` (else the parent folder)."""
    parent = Path(path).parent.as_posix()
    marker = RUNS_ROOT + "/"
    return parent.split(marker, 1)[1] if marker in parent else parent


def collect_runs(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per result file, ordered by ``run_id``; the identity and metric columns first."""
    rows = [run_row(json.loads(Path(p).read_text()), p) for p in paths]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=ID_COLUMNS + METRIC_COLUMNS)
    first = ID_COLUMNS + METRIC_COLUMNS
    frame = frame[first + [c for c in frame.columns if c not in first]]
    return frame.sort_values("run_id", kind="stable").reset_index(drop=True)


def write_runs(frame: pd.DataFrame, out: str | os.PathLike) -> None:
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)


def aggregate(paths: Iterable[str | os.PathLike], out: str | os.PathLike) -> pd.DataFrame:
    """``collect_runs`` then write ``out`` atomically."""
    frame = collect_runs(paths)
    write_runs(frame, out)
    return frame
