"""How the generated blocks of the docs print numbers (:mod:`.method_numbers`, :mod:`.precision_numbers`):
signs, significant digits, mean ± sd over seeds, compact markdown tables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd


def signed(x: float, digits: int = 4) -> str:
    """``+0.0045``, ``−0.010`` (a minus sign, not a hyphen)."""
    return f"{x:+.{digits}f}".replace("-", "−")


def sig(x: float, n: int) -> str:
    """``x`` to ``n`` significant digits, thousands separated: ``1,300``, ``5,750``, ``0.025``."""
    if x == 0:
        return "0"
    decimals = n - 1 - math.floor(math.log10(abs(x)))
    return f"{round(x, decimals):,.{max(decimals, 0)}f}"


def fmt(x: float, spec: str) -> str:
    """``format(x, spec)``: ``fmt(1524.8, ",.0f")`` is ``1,525``."""
    return format(x, spec)


def signed_list(xs: Iterable[float], digits: int = 4) -> str:
    """``+0.0046, +0.0005, +0.0003``."""
    return ", ".join(signed(x, digits) for x in xs)


def ms(x: float) -> str:
    """Milliseconds: ``123``, ``8.1``."""
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def dot3(x: float) -> str:
    """``.178``."""
    return f"{x:.3f}".lstrip("0")


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    s = pd.Series(list(values), dtype=float)
    return float(s.mean()), float(s.std(ddof=1))


def pm(values: Iterable[float], digits: int = 4) -> str:
    """Mean ± sample sd: ``0.4632 ± 0.0026``."""
    m, s = mean_sd(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def slash(texts: Iterable[str]) -> str:
    """Distinct values joined by ``/``: ``0.0625/0.0626``, or one value when they agree."""
    return "/".join(dict.fromkeys(texts))


def md(header: list[str], rows: list[list[str]]) -> str:
    """A compact markdown table: ``| a | b |``, ``|---|---|``, an empty cell as ``| |``."""
    cells = [[f" {c} " if c else " " for c in r] for r in [header, *rows]]
    return "\n".join("|" + "|".join(r) + "|" for r in [cells[0], ["---"] * len(header), *cells[1:]])


def read_csv(root: Path, rel: str) -> pd.DataFrame:
    """One recorded file of per-run rows, ``rel`` under the checkout ``root``."""
    return pd.read_csv(root / rel)
