"""The runs table (``results/runs.csv``): its columns and the one reader every report command uses.

One row per run: the run's parameters, ``status`` / ``reason``, every metric of both protocols
(``paper.mAP`` … ``val-threshold.threshold``), then timings, provenance and data sizes
(:mod:`.aggregate` writes it). :func:`read_runs_arg` is what ``--runs`` goes through: a file that is
missing, not a CSV, or without the columns the reports read is one :class:`UserError` naming what
is missing, never a pandas traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..arithmetic import COLUMNS as ARITHMETIC_COLUMNS
from ..errors import UserError
from ..names import PROTOCOLS
from ..pipeline.plan import METRICS

ID_COLUMNS = ["run_id", "dataset", "method", "seed", "alpha", "beta", "ablation", "scale", "preset",
              "synthetic", "status", "reason"]
METRIC_COLUMNS = [f"{p}.{m}" for p in PROTOCOLS for m in METRICS] + ["val-threshold.threshold"]
#: what the report commands read; ``preset``, ``synthetic`` and ``reason`` may be absent (runs tables
#: written before they existed)
REQUIRED_COLUMNS = [c for c in ID_COLUMNS if c not in ("preset", "synthetic", "reason")] + METRIC_COLUMNS
#: the hash of a run's configuration without the seed, with its resolved arithmetic (arithmetic.cell_key)
CELL_KEY = "cell_key"
_TEXT_COLUMNS = ("run_id", "dataset", "method", "ablation", "scale", "preset", "status", "reason", CELL_KEY,
                 *(c for f, c in ARITHMETIC_COLUMNS.items() if f not in ("flush_denormal", "threads")))


def metric_column(metric: str, protocol: str = "paper") -> str:
    return f"{protocol}.{metric}"


def read_runs(path: str | os.PathLike) -> pd.DataFrame:
    """Read a runs CSV written by :func:`.aggregate.write_runs` (types restored, columns checked)."""
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in _TEXT_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a runs table (a CSV written by `snakemake results/runs.csv`): "
                        f"{reason}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise UserError(f"{path} is not a runs table: missing column(s) {shown} "
                        "(build it with `snakemake --cores N results/runs.csv`)")
    for col in ("alpha", "beta", *METRIC_COLUMNS):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if "synthetic" in frame.columns:
        frame["synthetic"] = frame["synthetic"].map(_truthy)
    for col in _TEXT_COLUMNS:
        if col in frame.columns:
            frame[col] = frame[col].fillna("")
    return frame


def read_runs_arg(path: str | os.PathLike) -> pd.DataFrame:
    """:func:`read_runs` for a command's ``--runs``: a missing file is one clear error."""
    if not Path(path).is_file():
        raise UserError(f"{path} does not exist; build it with `snakemake --cores N results/runs.csv` "
                        "(or pass --runs PATH)")
    return read_runs(path)


def _truthy(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")
