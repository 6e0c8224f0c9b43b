"""How the paper prints Tables 2–8 and Figure 2, and which runs fill each printed number.

A :class:`TableSpec` is a table's layout (caption, dataset titles, metric blocks, digits) over what
it holds (:data:`mulsupcon_ld.pipeline.paper_tables.TABLES`: kind, datasets, rows, which is also
what the run plan reads). :func:`table_cells` / :func:`figure2_cells` list the printed numbers and
:func:`cell_key` the run parameters behind one, in the run plan's path text, so the tables, the
diff and the figure always find the runs the workflow made.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable

from ..names import ABLATIONS, TABLE_METRICS
from ..run_settings import RunSettings, resolve_settings
from ..pipeline import plan
from ..pipeline.paper_tables import FIGURE2_DATASETS, PAPER_GRID, QUOTED_METHODS, TABLES as CONTENTS

METRICS = TABLE_METRICS  # the metric names, in the paper's column order
ABLATION_LABEL = {"none": "MulSupCon_CLD (full)", "no-alpha": "w/o α", "no-beta": "w/o β", "no-all": "w/o all"}
#: the paper's name of each dataset, as its tables print it
DATASET_TITLE = {"yeast": "Yeast", "scene": "Scene", "bookmarks": "Bookmarks", "delicious": "Delicious",
                 "mediamill": "Mediamill", "mirflickr": "MIRFLICKR", "nuswide": "NUS-WIDE", "coco": "MS-COCO",
                 "pascal": "PASCAL"}
FIGURE2_TITLES = tuple(DATASET_TITLE[d] for d in FIGURE2_DATASETS)


@dataclass(frozen=True)
class TableSpec:
    """A table as printed in the paper.

    ``main`` tables (2–4): rows = methods, columns = datasets, repeated for each metric of a block
    (two metrics side by side), blocks stacked. ``grid`` tables (5–8): one panel per fixed value
    of ``fixed`` (α or β), rows = the other parameter, columns = the six metrics.
    """

    id: str
    kind: str  # "main" | "grid"
    caption: str
    digits: int
    datasets: tuple[str, ...]
    titles: tuple[str, ...] = ()
    blocks: tuple[tuple[str, ...], ...] = ()
    methods: tuple[str, ...] = ()
    fixed: str = ""  # grid: "alpha" | "beta"
    metrics: tuple[str, ...] = METRICS
    panel_caption: str = ""

    @property
    def title(self) -> str:
        return f"Table {self.id}"


def _layout(table_id: str, caption: str, digits: int, blocks: tuple[tuple[str, ...], ...] = (),
            panel_caption: str = "") -> TableSpec:
    """The layout of a table over what it holds (paper_tables.TABLES)."""
    c = CONTENTS[table_id]
    return TableSpec(c.id, c.kind, caption, digits, c.datasets, tuple(DATASET_TITLE[d] for d in c.datasets),
                     blocks, c.rows, c.fixed, panel_caption=panel_caption)


TABLES: dict[str, TableSpec] = {
    "2": _layout("2", "The results of the compared methods in terms of four metrics on multi-label vector datasets.",
                 3, (("HA", "ebF1"), ("miF1", "maF1"))),
    "3": _layout("3", "An extension to Table 2: MulSupCon, MulSupCon_RLD and MulSupCon_CLD on p_at_1 and mAP.",
                 3, (("p_at_1", "mAP"),)),
    "4": _layout("4", "MulSupCon, MulSupCon_RLD and MulSupCon_CLD on six metrics for image datasets.",
                 4, (("HA", "ebF1"), ("miF1", "maF1"), ("p_at_1", "mAP"))),
    "5": _layout("5", "Parameter sensitivity of MulSupCon_CLD on Scene, fixing α.", 3,
                 panel_caption="Fix the parameter α at {value} on the Scene dataset."),
    "6": _layout("6", "An extension to Table 5, fixing β.", 3,
                 panel_caption="Fix the parameter β at {value} on the Scene dataset."),
    "7": _layout("7", "Parameter sensitivity of MulSupCon_CLD on PASCAL, fixing α.", 3,
                 panel_caption="Fix the parameter α at {value} on the PASCAL dataset."),
    "8": _layout("8", "An extension to Table 7, fixing β.", 3,
                 panel_caption="Fix the parameter β at {value} on the PASCAL dataset."),
}


@dataclass(frozen=True)
class Cell:
    """One number of a paper table: where it is printed and which runs produce it."""

    table: str
    panel: str  # "" for main tables; "(a)" … for grid tables
    block: int  # metric block of a main table (0, 1, 2); panel index for grid tables
    row: str  # method (main) or "α = 0.01" / "β = 0.01" (grid)
    column: str  # "Yeast" (main) or the metric (grid)
    dataset: str
    method: str  # paper name: MulSupCon, MulSupCon_CLD, LaMP, …
    metric: str
    alpha: float | None = None  # grid cells only
    beta: float | None = None
    ablation: str = "none"

    @property
    def quoted(self) -> bool:
        return self.method in QUOTED_METHODS


def table_cells(table_id: str) -> list[Cell]:
    """Every cell of a paper table, in printed order (row-major within each block/panel)."""
    spec = TABLES[str(table_id)]
    cells: list[Cell] = []
    if spec.kind == "main":
        for b, block in enumerate(spec.blocks):
            for method in spec.methods:
                for metric in block:
                    for ds, title in zip(spec.datasets, spec.titles):
                        cells.append(Cell(spec.id, "", b, method, title, ds, method, metric))
        return cells
    ds = spec.datasets[0]
    other = "beta" if spec.fixed == "alpha" else "alpha"
    sym = {"alpha": "α", "beta": "β"}
    for p, fixed_value in enumerate(PAPER_GRID):
        panel = f"({'abcdefgh'[p]})"
        for value in PAPER_GRID:
            ab = {spec.fixed: fixed_value, other: value}
            for metric in spec.metrics:
                cells.append(Cell(spec.id, panel, p, f"{sym[other]} = {plan.fmt_num(value)}", metric, ds,
                                  "MulSupCon_CLD", metric, ab["alpha"], ab["beta"]))
    return cells


def figure2_cells(ablations: Iterable[str] = ABLATIONS) -> list[Cell]:
    """Bars of Figure 2: (dataset, variant, metric); full CLD is ablation ``none``."""
    return [Cell("figure2", ABLATION_LABEL[a], i, ABLATION_LABEL[a], metric, ds, "MulSupCon_CLD", metric,
                 ablation=a)
            for ds in FIGURE2_DATASETS for i, a in enumerate(ablations) for metric in METRICS]


@functools.lru_cache(maxsize=None)
def _settings(dataset: str, scale: str) -> RunSettings:
    return resolve_settings(dataset, scale)


def default_alpha_beta(dataset: str, scale: str = "paper") -> tuple[float, float]:
    """The library's default α, β for ``dataset`` (the runs of Tables 2–4 and Figure 2)."""
    loss = _settings(dataset, scale).loss
    return float(loss.alpha), float(loss.beta)


def cell_key(cell: Cell, scale: str) -> dict[str, str] | None:
    """Run parameters (without seed) whose results fill ``cell``: ``dataset, method, ablation,
    alpha, beta`` as path text; None for quoted methods. ``alpha``/``beta`` are ``na`` for MulSupCon
    (not compared)."""
    if cell.quoted:
        return None
    method = plan.OUR_METHOD[cell.method]
    if cell.alpha is not None:  # grid cell
        a, b = plan.fmt_num(cell.alpha), plan.fmt_num(cell.beta)
    else:  # Tables 2–4 and Figure 2 (its w/o-α/β/all variants also run at the default α, β)
        a, b = plan.main_alpha_beta(_settings(cell.dataset, scale), method)
    return {"dataset": cell.dataset, "method": method, "ablation": cell.ablation, "alpha": a, "beta": b}
