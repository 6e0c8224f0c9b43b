"""What each regenerated table (and Figure 2) needs: its layout and the training runs behind it.

This is the one place that maps the paper's Tables 2–8 and Figure 2 onto training runs. The
Snakemake workflow asks it which result files a target needs (:func:`runs_for_target`), and the
table, diff and figure code ask it which runs fill a cell (:func:`cell_key`), so both always agree.

A run is identified by :class:`RunKey`; its result file is
``results/runs/{scale}/{data}/{method}/{ablation}/a{alpha}_b{beta}/seed{seed}/metrics.json`` where
``data`` is the registry name, or ``<name>-synthetic`` for the synthetic stand-in (the same naming
as the prepared-data folders), and ``alpha``/``beta`` are ``na`` for MulSupCon (no label-distribution
loss). Identical parameters give identical paths, so a job shared by several tables runs once:
Table 2's CLD run on Scene *is* the grid cell of Tables 5/6 at the default α, β and Figure 2's
"full CLD" run, because the default α, β of :mod:`mulsupcon_ld.settings` lie on the grid.

Hyperparameters are never decided here: default α, β come from :func:`mulsupcon_ld.run_settings.resolve_settings`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..names import ABLATIONS, CONTROL_METHOD, METRICS_FILE, NO_LD_METHODS, PAPER_METHOD, TABLE_METRICS
from ..registry import get_dataset
from ..run_settings import resolve_settings

# --------------------------------------------------------------------------------------------
# names

OUR_LABEL = {**PAPER_METHOD, **CONTROL_METHOD}
OUR_METHOD = {v: k for k, v in OUR_LABEL.items()}
#: methods of Table 2 whose numbers are quoted from the paper (we do not run them)
QUOTED_METHODS = ("LaMP", "MPVAE", "ASL", "RBCC", "C-GMVAE")
METRICS = TABLE_METRICS  # the metric names, in the paper's column order
ABLATION_LABEL = {"none": "MulSupCon_CLD (full)", "no-alpha": "w/o α", "no-beta": "w/o β", "no-all": "w/o all"}
#: the α, β values of Tables 5–8 ("We select both hyperparameters α and β from {0.001, 0.01, 0.1, 1}")
PAPER_GRID = (0.001, 0.01, 0.1, 1.0)
SYNTHETIC_SUFFIX = "-synthetic"
PRESET_SEP = "+"
NA = "na"

RUNS_ROOT = "results/runs"
STATE_ROOT = "results/state"
LOG_ROOT = "logs/train"
#: a run's id: its folder under RUNS_ROOT / STATE_ROOT and its log under LOG_ROOT (the training
#: rule's wildcards, workflow/rules/train.smk, are these names)
RUN_ID = "{scale}/{data}/{method}/{ablation}/a{alpha}_b{beta}/seed{seed}"
#: a status file's or a result's "status" (pipeline/jobs.py)
OK, UNAVAILABLE = "ok", "unavailable"
#: the status files of a dataset's download and prepare jobs (workflow/rules/data.smk)
DOWNLOAD_STATUS = "results/data/{dataset}/download.json"
PREPARED_STATUS = "results/data/{data}/prepared.json"


def fmt_num(x: float | str | None) -> str:
    """Canonical text of α or β in paths and tables: ``0.001``, ``0.1``, ``1``; ``na`` for None."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x == NA:
        return NA
    text = repr(float(x))  # shortest text that reads back as the same float
    return text[:-2] if text.endswith(".0") else text


def data_name(dataset: str, synthetic: bool) -> str:
    """Folder name of a dataset's data: ``scene`` or ``scene-synthetic``."""
    return dataset + (SYNTHETIC_SUFFIX if synthetic else "")


def split_data_name(data: str) -> tuple[str, bool]:
    """Inverse of :func:`data_name`."""
    if data.endswith(SYNTHETIC_SUFFIX):
        return data[: -len(SYNTHETIC_SUFFIX)], True
    return data, False


# --------------------------------------------------------------------------------------------
# runs


@dataclass(frozen=True, order=True)
class RunKey:
    """One training run: ``mulsupcon-ld run`` with exactly these arguments.

    A preset other than ``paper`` is part of the first path segment (``paper+mulsupcon-official``),
    so results of different presets never share a path and ``paper`` paths stay as they were.
    """

    dataset: str
    method: str
    ablation: str
    alpha: str  # fmt_num text, "na" for MulSupCon
    beta: str
    seed: int
    scale: str
    synthetic: bool
    preset: str = "paper"

    @classmethod
    def from_path_parts(cls, scale: str, data: str, method: str, ablation: str, alpha: str, beta: str,
                        seed: int | str) -> "RunKey":
        """The key of a result path's parts (the training rule's wildcards); ``scale`` is the first
        segment, ``SCALE`` or ``SCALE+PRESET``."""
        dataset, synthetic = split_data_name(data)
        scale, _, preset = scale.partition(PRESET_SEP)
        return cls(dataset, method, ablation, alpha, beta, int(seed), scale, synthetic, preset or "paper")

    @property
    def data(self) -> str:
        return data_name(self.dataset, self.synthetic)

    @property
    def scale_dir(self) -> str:
        return self.scale if self.preset == "paper" else f"{self.scale}{PRESET_SEP}{self.preset}"

    @property
    def run_id(self) -> str:
        return RUN_ID.format(scale=self.scale_dir, data=self.data, method=self.method, ablation=self.ablation,
                             alpha=self.alpha, beta=self.beta, seed=self.seed)

    @property
    def result(self) -> str:
        """The declared output of the training job."""
        return f"{RUNS_ROOT}/{self.run_id}/{METRICS_FILE}"

    @property
    def state_dir(self) -> str:
        """``--out`` of ``mulsupcon-ld run``: checkpoints live here, outside declared outputs."""
        return f"{STATE_ROOT}/{self.run_id}"

    def cli_args(self) -> list[str]:
        """Arguments of ``mulsupcon-ld run`` (without ``--out`` and the directory flags)."""
        args = ["--dataset", self.dataset, "--method", self.method, "--seed", str(self.seed)]
        if self.alpha != NA:
            args += ["--alpha", self.alpha]
        if self.beta != NA:
            args += ["--beta", self.beta]
        args += ["--ablation", self.ablation, "--scale", self.scale]
        if self.preset != "paper":
            args += ["--preset", self.preset]
        if self.synthetic:
            args.append("--synthetic")
        return args


@functools.lru_cache(maxsize=None)
def default_alpha_beta(dataset: str, scale: str = "paper") -> tuple[float, float]:
    """The library's default α, β for ``dataset`` (used by Tables 2–4 and Figure 2)."""
    loss = resolve_settings(dataset, scale).loss
    return float(loss.alpha), float(loss.beta)


def main_alpha_beta(dataset: str, method: str, scale: str) -> tuple[str, str]:
    """``(alpha, beta)`` path text of a Tables 2–4 run: the defaults, or ``na`` for MulSupCon."""
    if method in NO_LD_METHODS:
        return NA, NA
    a, b = default_alpha_beta(dataset, scale)
    return fmt_num(a), fmt_num(b)


def dataset_kind(dataset: str) -> str:
    return get_dataset(dataset).kind


# --------------------------------------------------------------------------------------------
# table layouts


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


_VECTOR5 = ("yeast", "scene", "bookmarks", "delicious", "mediamill")
_VECTOR5_T = ("Yeast", "Scene", "Bookmarks", "Delicious", "Mediamill")
_OURS = ("MulSupCon", "MulSupCon_RLD", "MulSupCon_CLD", CONTROL_METHOD["bce"])
# the quoted ASL row of Table 2, and beside it ASL run by us (vector datasets: the MLP encoder)
_QUOTED_WITH_ASL = tuple(m for q in QUOTED_METHODS for m in ((q, CONTROL_METHOD["asl"]) if q == "ASL" else (q,)))

TABLES: dict[str, TableSpec] = {
    "2": TableSpec(
        "2", "main",
        "The results of the compared methods in terms of four metrics on multi-label vector datasets.",
        3, _VECTOR5, _VECTOR5_T, (("HA", "ebF1"), ("miF1", "maF1")), _QUOTED_WITH_ASL + _OURS),
    "3": TableSpec(
        "3", "main",
        "An extension to Table 2: MulSupCon, MulSupCon_RLD and MulSupCon_CLD on p_at_1 and mAP.",
        3, _VECTOR5, _VECTOR5_T, (("p_at_1", "mAP"),), _OURS + (CONTROL_METHOD["asl"],)),
    "4": TableSpec(
        "4", "main",
        "MulSupCon, MulSupCon_RLD and MulSupCon_CLD on six metrics for image datasets.",
        4, ("mirflickr", "nuswide", "coco", "pascal"), ("MIRFLICKR", "NUS-WIDE", "MS-COCO", "PASCAL"),
        (("HA", "ebF1"), ("miF1", "maF1"), ("p_at_1", "mAP")), _OURS),
    "5": TableSpec("5", "grid", "Parameter sensitivity of MulSupCon_CLD on Scene, fixing α.", 3,
                   ("scene",), ("Scene",), fixed="alpha",
                   panel_caption="Fix the parameter α at {value} on the Scene dataset."),
    "6": TableSpec("6", "grid", "An extension to Table 5, fixing β.", 3, ("scene",), ("Scene",),
                   fixed="beta", panel_caption="Fix the parameter β at {value} on the Scene dataset."),
    "7": TableSpec("7", "grid", "Parameter sensitivity of MulSupCon_CLD on PASCAL, fixing α.", 3,
                   ("pascal",), ("PASCAL",), fixed="alpha",
                   panel_caption="Fix the parameter α at {value} on the PASCAL dataset."),
    "8": TableSpec("8", "grid", "An extension to Table 7, fixing β.", 3, ("pascal",), ("PASCAL",),
                   fixed="beta", panel_caption="Fix the parameter β at {value} on the PASCAL dataset."),
}
TABLE_IDS = tuple(TABLES)

DATASET_TITLE = {d: t for spec in TABLES.values() for d, t in zip(spec.datasets, spec.titles)}

#: Figure 2: CLD ablation on Scene and PASCAL, six metrics (titles: the tables')
FIGURE2_DATASETS = ("scene", "pascal")
FIGURE2_TITLES = tuple(DATASET_TITLE[d] for d in FIGURE2_DATASETS)


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
                cells.append(Cell(spec.id, panel, p, f"{sym[other]} = {fmt_num(value)}", metric, ds,
                                  "MulSupCon_CLD", metric, ab["alpha"], ab["beta"]))
    return cells


def figure2_cells(ablations: Iterable[str] = ABLATIONS) -> list[Cell]:
    """Bars of Figure 2: (dataset, variant, metric); full CLD is ablation ``none``."""
    return [Cell("figure2", ABLATION_LABEL[a], i, ABLATION_LABEL[a], metric, ds, "MulSupCon_CLD", metric,
                 ablation=a)
            for ds in FIGURE2_DATASETS for i, a in enumerate(ablations) for metric in METRICS]


def cell_key(cell: Cell, scale: str) -> dict[str, str] | None:
    """Run parameters (without seed) whose results fill ``cell``: ``dataset, method, ablation,
    alpha, beta`` as path text; None for quoted methods. ``alpha``/``beta`` are ``na`` for MulSupCon
    (not compared)."""
    if cell.quoted:
        return None
    method = OUR_METHOD[cell.method]
    if cell.alpha is not None:  # grid cell
        a, b = fmt_num(cell.alpha), fmt_num(cell.beta)
    else:  # Tables 2–4 and Figure 2 (its w/o-α/β/all variants also run at the default α, β)
        a, b = main_alpha_beta(cell.dataset, method, scale)
    return {"dataset": cell.dataset, "method": method, "ablation": cell.ablation, "alpha": a, "beta": b}


# --------------------------------------------------------------------------------------------
# which runs a target needs (used by the Snakefile)


@dataclass(frozen=True)
class RunConfig:
    """The part of the workflow config that decides which runs exist."""

    datasets: tuple[str, ...]
    methods: tuple[str, ...] = tuple(PAPER_METHOD) + tuple(CONTROL_METHOD)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    image_seeds: tuple[int, ...] | None = (0,)
    dataset_seeds: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # dataset -> its own seeds
    grid_seeds: tuple[int, ...] | None = None   # vector runs of Tables 5-8 and Figure 2; None: the dataset's
    alphas: tuple[float, ...] = PAPER_GRID
    betas: tuple[float, ...] = PAPER_GRID
    ablations: tuple[str, ...] = ABLATIONS
    scale: str = "paper"
    synthetic: bool = False
    preset: str = "paper"
    kinds: Mapping[str, str] = field(default_factory=dict)  # dataset -> "vector" | "image"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "RunConfig":
        datasets = tuple(config["datasets"])
        image_seeds, grid_seeds = config.get("image_seeds"), config.get("grid_seeds")
        return cls(
            datasets=datasets,
            methods=tuple(config["methods"]),
            seeds=tuple(int(s) for s in config["seeds"]),
            image_seeds=None if image_seeds is None else tuple(int(s) for s in image_seeds),
            dataset_seeds={str(d): tuple(int(s) for s in seeds)
                           for d, seeds in (config.get("dataset_seeds") or {}).items()},
            grid_seeds=None if grid_seeds is None else tuple(int(s) for s in grid_seeds),
            alphas=tuple(float(a) for a in config["alphas"]),
            betas=tuple(float(b) for b in config["betas"]),
            ablations=tuple(config["ablations"]),
            scale=str(config["scale"]),
            synthetic=bool(config["synthetic"]),
            preset=str(config.get("preset", "paper")),
            kinds={d: dataset_kind(d) for d in datasets},
        )

    def kind(self, dataset: str) -> str:
        return self.kinds.get(dataset) or dataset_kind(dataset)

    def seeds_for(self, dataset: str, part: str = "main") -> tuple[int, ...]:
        """Seeds of ``dataset``'s runs in Tables 2–4 (``part="main"``) or in the grid and ablation
        runs of Tables 5–8 and Figure 2 (``"grid"``: ``grid_seeds`` for vector datasets)."""
        if dataset in self.dataset_seeds:
            return self.dataset_seeds[dataset]
        if self.kind(dataset) == "image":
            return self.image_seeds if self.image_seeds is not None else self.seeds
        return self.grid_seeds if part == "grid" and self.grid_seeds is not None else self.seeds

    def key(self, dataset: str, method: str, ablation: str, alpha: str, beta: str, seed: int) -> RunKey:
        return RunKey(dataset, method, ablation, alpha, beta, int(seed), self.scale, self.synthetic, self.preset)


def runs_for_table(table_id: str, rc: RunConfig) -> list[RunKey]:
    """Runs a table needs under the config (datasets not in ``rc.datasets`` are not run)."""
    spec = TABLES[str(table_id)]
    keys: list[RunKey] = []
    for ds in spec.datasets:
        if ds not in rc.datasets:
            continue
        for seed in rc.seeds_for(ds, "main" if spec.kind == "main" else "grid"):
            if spec.kind == "main":
                for method in (m for m in rc.methods if OUR_LABEL[m] in spec.methods):  # rows it prints
                    keys.append(rc.key(ds, method, "none", *main_alpha_beta(ds, method, rc.scale), seed))
            else:
                for a in rc.alphas:
                    for b in rc.betas:
                        keys.append(rc.key(ds, "cld", "none", fmt_num(a), fmt_num(b), seed))
    return sorted(set(keys))


def runs_for_figure2(rc: RunConfig) -> list[RunKey]:
    keys = []
    for ds in FIGURE2_DATASETS:
        if ds not in rc.datasets:
            continue
        a, b = main_alpha_beta(ds, "cld", rc.scale)
        for seed in rc.seeds_for(ds, "grid"):
            for abl in rc.ablations:
                keys.append(rc.key(ds, "cld", abl, a, b, seed))
    return sorted(set(keys))


def target_id(target: str) -> str | None:
    """The table id ("2" … "8"), "figure2" or "all" a workflow target names (``paper_tables/table4.md``,
    ``table4``, ``4``, ``figure2``, ``all``); None for any other target (runs.csv, the diff, …)."""
    t = target.rsplit("/", 1)[-1].split(".")[0].replace("table", "")
    return t if t in TABLE_IDS or t in ("figure2", "all") else None


def runs_for_target(target: str, rc: RunConfig) -> list[RunKey]:
    """``target``: a table id ("2" … "8"), "figure2" or "all" (the union, each run once)."""
    if target == "figure2":
        return runs_for_figure2(rc)
    if target == "all":
        keys: set[RunKey] = set(runs_for_figure2(rc))
        for t in TABLE_IDS:
            keys.update(runs_for_table(t, rc))
        return sorted(keys)
    return runs_for_table(target, rc)


# --------------------------------------------------------------------------------------------
# workflow config


def coerce_config(value: Any, schema: Mapping[str, Any]) -> Any:
    """Convert the strings ``snakemake --config`` leaves inside lists and mappings
    (``seeds=[0,1]`` gives ``["0", "1"]``, ``raw_dir=null`` gives ``"null"``) to the types
    ``schema`` (a JSON schema) asks for, so validation sees what the user meant."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(value, str):
        text = value.strip()
        if "null" in types and text.lower() in ("null", "none", "~", ""):
            return None
        if "array" in types and text.startswith("["):
            import yaml

            return coerce_config(yaml.safe_load(text), schema)
        if "integer" in types and _is_int(text):
            return int(text)
        if "number" in types:
            try:
                return float(text)
            except ValueError:
                return value
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        return value
    if isinstance(value, list) and "items" in schema:
        return [coerce_config(v, schema["items"]) for v in value]
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return {k: coerce_config(v, props[k]) if k in props else v for k, v in value.items()}
    return value


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()
