"""The one check that a table cell, a diff row, a claim's pair or a figure bar never combines runs
that computed differently (:mod:`mulsupcon_ld.arithmetic`: the cell key, the key fields).

* :func:`check_cell`: the ``ok`` runs of one cell must share one ``cell_key`` (same configuration
  but the seed, same precision, lane, flush setting, loss reading, torch and commit). Runs without a
  recorded key (runs tables written before 2026-12-07) cannot be shown to agree, so they count as
  mixed too.
* :func:`check_pair`: the two sides of a claim, each a homogeneous cell, must share the arithmetic
  both have (:data:`~mulsupcon_ld.arithmetic.PAIR_FIELDS`, and the lane when both pretrain).

Otherwise: one :class:`MixedRunsError` (a :class:`UserError`: one ``error:`` line, exit 2) naming the
cell and what differs. ``allow_mixed=True`` (``--allow-mixed``, config ``allow_mixed``) shows such
cells instead, marked :data:`MIXED` with what differs. A cell whose runs came from more than one CPU
model is fine (rounding order only) and gets a note.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from ..arithmetic import COLUMNS, KEY_FIELDS, PAIR_FIELDS
from ..errors import UserError
from .runs_table import CELL_KEY

MIXED = "MIXED"
UNRECORDED = "unrecorded"
_OPT_IN = ("a cell never combines them: rebuild these runs at one commit (README, \"Rebuild the snapshot\"), "
           "or pass --allow-mixed (config allow_mixed=true) to show such cells marked MIXED")


class MixedRunsError(UserError):
    """Runs that computed differently would be combined."""


def _values(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows.columns:
        return pd.Series(UNRECORDED, index=rows.index)
    text = rows[column].astype(str).str.strip()
    return text.where(~text.isin(("", "nan", "None")), UNRECORDED)


def _counted(values: pd.Series) -> str:
    counts = values.value_counts(sort=False)
    return ", ".join(f"{_short(v)} ({n} run{'s' if n > 1 else ''})" for v, n in counts.items())


def _short(value: str) -> str:
    return value[:12] if len(value) == 40 or value.endswith("+dirty") and len(value) == 46 else value


def _ok(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["status"] == "ok"] if "status" in rows.columns else rows


def cell_mix(rows: pd.DataFrame) -> str:
    """What differs between the ``ok`` runs of one cell (``""``: they computed alike)."""
    ok = _ok(rows)
    if ok.empty:
        return ""
    keys = _values(ok, CELL_KEY)
    if (keys == UNRECORDED).any():
        n = int((keys == UNRECORDED).sum())
        return f"the arithmetic of {n} of {len(ok)} runs is not recorded (runs made before it was)"
    if keys.nunique() == 1:
        return ""
    differ = [f"{field} {_counted(_values(ok, COLUMNS[field]))}" for field in KEY_FIELDS
              if _values(ok, COLUMNS[field]).nunique() > 1]
    return "; ".join(differ) or f"their settings (cell keys {_counted(keys)})"


def cpu_note(rows: pd.DataFrame) -> str:
    """``""``, or a note when the ``ok`` runs came from more than one CPU model."""
    models = _values(_ok(rows), COLUMNS["cpu_model"])
    models = models[models != UNRECORDED]
    if models.nunique() < 2:
        return ""
    return f"runs from {models.nunique()} CPU models: {_counted(models)}"


def check_cell(rows: pd.DataFrame, label: str, allow_mixed: bool = False) -> str:
    """``""`` for a homogeneous cell; else raise :class:`MixedRunsError`, or with ``allow_mixed``
    return what differs (the cell is then shown marked :data:`MIXED`)."""
    mix = cell_mix(rows)
    if mix and not allow_mixed:
        raise MixedRunsError(f"{label}: its runs computed differently: {mix}; {_OPT_IN}")
    return mix


def _side_values(rows: pd.DataFrame, field: str) -> set[str]:
    return set(_values(_ok(rows), COLUMNS[field]))


def check_pair(rows_a: pd.DataFrame, rows_b: pd.DataFrame, label: str, allow_mixed: bool = False) -> str:
    """Both sides of a claim homogeneous (:func:`check_cell`) and computing alike where both can:
    ``""``, or (with ``allow_mixed``) what differs; else :class:`MixedRunsError`."""
    mixes = [f"side {s}: {m}" for s, rows in (("a", rows_a), ("b", rows_b)) if (m := cell_mix(rows))]
    fields: Iterable[str] = PAIR_FIELDS
    lanes = _side_values(rows_a, "lane") | _side_values(rows_b, "lane")
    if "none" not in lanes:
        fields = (*PAIR_FIELDS, "lane")
    for field in fields:
        a, b = _side_values(rows_a, field), _side_values(rows_b, field)
        if a and b and a != b and not mixes:
            mixes.append(f"{field} {', '.join(sorted(map(_short, a)))} (side a) vs "
                         f"{', '.join(sorted(map(_short, b)))} (side b)")
    mix = "; ".join(mixes)
    if mix and not allow_mixed:
        raise MixedRunsError(f"{label}: its two sides computed differently: {mix}; {_OPT_IN}")
    return mix
