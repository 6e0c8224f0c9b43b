"""What each of the paper's Tables 2–8 and Figure 2 holds: its kind, datasets and rows.

These are the facts the run plan (:mod:`.plan`) needs to know which runs a table asks for. How a
table is printed (captions, titles, metric blocks, digits) is its layout, in
:mod:`mulsupcon_ld.report.layouts`, built on these.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..names import CONTROL_METHOD

#: methods of Table 2 whose numbers are quoted from the paper (we do not run them)
QUOTED_METHODS = ("LaMP", "MPVAE", "ASL", "RBCC", "C-GMVAE")
#: the α, β values of Tables 5–8 ("We select both hyperparameters α and β from {0.001, 0.01, 0.1, 1}")
PAPER_GRID = (0.001, 0.01, 0.1, 1.0)
#: Figure 2: CLD ablation on Scene and PASCAL
FIGURE2_DATASETS = ("scene", "pascal")


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper. ``main`` (2–4): one row per method (paper labels, quoted ones
    included), one column per dataset. ``grid`` (5–8): CLD on one dataset over the α × β grid,
    one panel per value of ``fixed``."""

    id: str
    kind: str  # "main" | "grid"
    datasets: tuple[str, ...]
    rows: tuple[str, ...] = ()  # main tables: the methods printed
    fixed: str = ""  # grid tables: "alpha" | "beta"


_VECTOR5 = ("yeast", "scene", "bookmarks", "delicious", "mediamill")
_OURS = ("MulSupCon", "MulSupCon_RLD", "MulSupCon_CLD", CONTROL_METHOD["bce"])
# the quoted ASL row of Table 2, and beside it ASL run by us (vector datasets: the MLP encoder)
_QUOTED_WITH_ASL = tuple(m for q in QUOTED_METHODS for m in ((q, CONTROL_METHOD["asl"]) if q == "ASL" else (q,)))

TABLES: dict[str, PaperTable] = {
    "2": PaperTable("2", "main", _VECTOR5, _QUOTED_WITH_ASL + _OURS),
    "3": PaperTable("3", "main", _VECTOR5, _OURS + (CONTROL_METHOD["asl"],)),
    "4": PaperTable("4", "main", ("mirflickr", "nuswide", "coco", "pascal"), _OURS),
    "5": PaperTable("5", "grid", ("scene",), fixed="alpha"),
    "6": PaperTable("6", "grid", ("scene",), fixed="beta"),
    "7": PaperTable("7", "grid", ("pascal",), fixed="alpha"),
    "8": PaperTable("8", "grid", ("pascal",), fixed="beta"),
}
TABLE_IDS = tuple(TABLES)
