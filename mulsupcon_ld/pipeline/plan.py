"""Which training runs each regenerated table (and Figure 2) needs.

This is the one place that maps the paper's Tables 2–8 and Figure 2 (what they hold:
:mod:`.paper_tables`) onto training runs. The Snakemake workflow asks it which result files a target
needs (:func:`runs_for_target`); the tables, diff and figure (``report.layouts.cell_key``) find the
runs of a cell by the same path text, so both always agree.

A run is identified by :class:`RunKey`; its result file is
``results/runs/{scale}/{data}/{method}/{ablation}/a{alpha}_b{beta}/seed{seed}/metrics.json`` where
``data`` is the registry name, or ``<name>-synthetic`` for the synthetic stand-in (the same naming
as the prepared-data folders), and ``alpha``/``beta`` are ``na`` for MulSupCon (no label-distribution
loss). Identical parameters give identical paths, so a job shared by several tables runs once:
Table 2's CLD run on Scene *is* the grid cell of Tables 5/6 at the default α, β and Figure 2's
"full CLD" run, because the default α, β of :mod:`mulsupcon_ld.settings` lie on the grid.

Hyperparameters are never decided here: a :class:`RunConfig` holds each dataset's settings, resolved
once (:func:`mulsupcon_ld.run_settings.resolve_settings`, with the config's scale, preset, precision
and pretraining lane), and the default α, β of a run come from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..names import ABLATIONS, CONTROL_METHOD, METRICS_FILE, NO_LD_METHODS, PAPER_METHOD, TABLE_METRICS
from ..registry import get_dataset
from ..run_settings import RunSettings, resolve_settings
# what each table holds; read here, and through this module by the summary and the report
from .paper_tables import FIGURE2_DATASETS, PAPER_GRID, QUOTED_METHODS, TABLE_IDS, TABLES  # noqa: F401

# --------------------------------------------------------------------------------------------
# names

OUR_LABEL = {**PAPER_METHOD, **CONTROL_METHOD}
OUR_METHOD = {v: k for k, v in OUR_LABEL.items()}
METRICS = TABLE_METRICS  # the metric names, in the paper's column order
SYNTHETIC_SUFFIX = "-synthetic"
#: between the scale and a preset other than paper in a result path (``smoke+mulsupcon-official``)
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
        scale, _, preset = scale.partition(PRESET_SEP)   # scale_dir_of's inverse
        return cls(dataset, method, ablation, alpha, beta, int(seed), scale, synthetic, preset or "paper")

    @property
    def data(self) -> str:
        return data_name(self.dataset, self.synthetic)

    @staticmethod
    def scale_dir_of(scale: str, preset: str) -> str:
        """A result path's first segment: ``SCALE``, or ``SCALE+PRESET`` for a preset other than paper."""
        return scale if preset == "paper" else f"{scale}{PRESET_SEP}{preset}"

    @staticmethod
    def scale_of(scale_dir: str) -> str:
        """The scale of a result path's first segment (:meth:`scale_dir_of`'s inverse, less the preset)."""
        return scale_dir.partition(PRESET_SEP)[0]

    @property
    def scale_dir(self) -> str:
        return self.scale_dir_of(self.scale, self.preset)

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


def main_alpha_beta(settings: RunSettings, method: str) -> tuple[str, str]:
    """``(alpha, beta)`` path text of a Tables 2–4 run of ``method`` on the dataset of ``settings``:
    its default α, β, or ``na`` for the methods without the label-distribution loss."""
    if method in NO_LD_METHODS:
        return NA, NA
    return fmt_num(settings.loss.alpha), fmt_num(settings.loss.beta)


def config_sets(kind: str, pretrains: bool, hotpath: str | None, precision: str | None) -> list[str]:
    """The ``--set`` values the workflow config adds to a run (the one place that decides them):
    ``hotpath`` for the runs that pretrain an MLP, ``precision`` for every run."""
    sets = [f"pretrain.hotpath={hotpath}"] if hotpath and pretrains and kind == "vector" else []
    return sets + ([f"precision={precision}"] if precision else [])


# --------------------------------------------------------------------------------------------
# which runs a target needs (used by the Snakefile)


@dataclass(frozen=True)
class RunConfig:
    """The part of the workflow config that decides which runs exist, with each dataset's settings
    resolved once (``settings``: those of its runs that pretrain; ``precision`` and ``hotpath`` are
    the config's, :func:`config_sets`). A dataset whose settings cannot be made (e.g. a preset for
    vector datasets only, on an image dataset) is a UserError here, before any job."""

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
    precision: str | None = None
    hotpath: str | None = None
    settings: Mapping[str, RunSettings] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        resolved = {}
        for d in self.datasets:
            kind = get_dataset(d).kind       # which --set values apply depends on it
            resolved[d] = resolve_settings(d, self.scale, self.preset,
                                           config_sets(kind, True, self.hotpath, self.precision))
        object.__setattr__(self, "settings", resolved)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "RunConfig":
        image_seeds, grid_seeds = config.get("image_seeds"), config.get("grid_seeds")
        return cls(
            datasets=tuple(config["datasets"]),
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
            precision=config.get("precision"),
            hotpath=config.get("hotpath"),
        )

    def kind(self, dataset: str) -> str:
        return self.settings[dataset].kind

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
    table = TABLES[str(table_id)]
    keys: list[RunKey] = []
    for ds in table.datasets:
        if ds not in rc.datasets:
            continue
        for seed in rc.seeds_for(ds, "main" if table.kind == "main" else "grid"):
            if table.kind == "main":
                for method in (m for m in rc.methods if OUR_LABEL[m] in table.rows):  # rows it prints
                    keys.append(rc.key(ds, method, "none", *main_alpha_beta(rc.settings[ds], method), seed))
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
        a, b = main_alpha_beta(rc.settings[ds], "cld")
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
