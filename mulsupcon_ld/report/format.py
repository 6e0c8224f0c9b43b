"""How every report writes a number and says that its data are synthetic or short (one place).

* :func:`num`: a metric, a difference or a bound with fixed digits; "—" for no number.
* :func:`banner_lines`: the markdown lines above a table, the diff or the claims when some of
  their numbers come from synthetic stand-ins or smoke-scale runs.
* :func:`mark_figure`: the same for a figure (title prefix and a watermark).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

NO_NUMBER = "—"
SYNTHETIC = "SYNTHETIC"
SMOKE_NOTE = "a few epochs, for testing: not comparable to the paper"


def num(x: Any, digits: int = 3, sign: bool = False) -> str:
    """``x`` with ``digits`` decimals (``+``/``-`` shown when ``sign``); :data:`NO_NUMBER` for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NO_NUMBER
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def banner_lines(synthetic: bool, scales: Iterable[str], what: str = "numbers") -> list[str]:
    """The SYNTHETIC banner (``what`` = what is marked: cells, numbers, verdicts) and the scale line
    (always when a scale is known, with :data:`SMOKE_NOTE` when one is ``smoke``)."""
    lines = []
    if synthetic:
        lines += [f"**{SYNTHETIC} DATA** — {what} marked {SYNTHETIC} come from small deterministic stand-ins "
                  "of the datasets, not the real data: they say nothing about the paper.", ""]
    scales = sorted(set(scales) - {""})
    if scales:
        lines += [f"Scale: {', '.join(scales)}" + (f" ({SMOKE_NOTE})" if "smoke" in scales else "") + ".", ""]
    return lines


def mark_figure(fig: Any, title: str, synthetic: bool) -> str:
    """The figure's title, and on synthetic data a watermark; returns the title to set (in red then)."""
    if not synthetic:
        return title
    fig.text(0.5, 0.5, SYNTHETIC, fontsize=70, color="red", alpha=0.12, ha="center", va="center", rotation=20)
    return f"{SYNTHETIC} DATA — {title}"
