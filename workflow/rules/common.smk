import os
import sys
from pathlib import Path

import yaml

from snakemake.cli import get_argument_parser
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from mulsupcon_ld.names import ABLATIONS, METHODS, METRICS_FILE, SCALES
from mulsupcon_ld.registry import DATASETS
from mulsupcon_ld.settings import PRESETS
from mulsupcon_ld.pipeline import cost, plan, summary

# `--config seeds=[0,1]` leaves strings inside lists: convert them to the schema's types first
with open(workflow.source_path("../schemas/config.schema.yaml")) as _fh:
    config.update(plan.coerce_config(dict(config), yaml.safe_load(_fh)))
validate(config, "../schemas/config.schema.yaml")

_unknown = [d for d in config["datasets"] if d not in DATASETS]
if _unknown:
    raise WorkflowError(
        f"config datasets: unknown {', '.join(_unknown)}; known: {', '.join(DATASETS)}"
    )

if config["preset"] != "paper":
    _image = [d for d in config["datasets"] if DATASETS[d].kind == "image"]
    if _image:
        raise WorkflowError(
            f"config preset {config['preset']}: vector datasets only; drop {', '.join(_image)}"
        )

# which runs exist: the config part that matters, resolved once (α, β defaults: mulsupcon_ld.settings)
RUNS = plan.RunConfig.from_config(config)


def _requested_targets():
    """The targets on snakemake's command line (the DAG settings do not exist yet at parse time)."""
    try:
        return get_argument_parser().parse_known_args(sys.argv[1:])[0].targets or []
    except SystemExit:  # not started from the snakemake CLI (API use): say nothing
        return None


# what the requested targets cost, once, in the main snakemake process (jobs re-parse this file;
# onstart would miss dry runs, which is when a user most wants to know)
if workflow.is_main_process:
    _targets = _requested_targets()
    for _line in cost.start_lines(_targets, config) if _targets is not None else []:
        print(_line, file=sys.stderr)
    # strict=true and placeholders of unavailable runs from an earlier run: nothing would re-run
    # them (their files exist), so stop here rather than finish "done"
    _held = (
        summary.placeholders(_targets, RUNS)
        if config["strict"] and _targets is not None
        else []
    )
    if _held:
        summary.report(_targets, RUNS, strict=True)
        raise WorkflowError(
            f"strict=true: {len(_held)} requested runs are unavailable (placeholders such as "
            f"{_held[0].result}); delete them and results/data/<dataset>/ to try again"
        )

# envs/mulsupcon.post-deploy.sh installs the project from here into the conda env (--sdm conda)
os.environ.setdefault("MULSUPCON_LD_ROOT", str(Path(workflow.basedir).resolve()))

ENV = "../../envs/mulsupcon.yaml"
_NAMES = "|".join(sorted(DATASETS, key=len, reverse=True))
_NUMBER = r"na|[0-9][0-9.e+-]*"


wildcard_constraints:
    dataset=f"(?:{_NAMES})",
    data=f"(?:{_NAMES})(?:{plan.SYNTHETIC_SUFFIX})?",
    scale=rf"(?:{'|'.join(SCALES)})(?:\{plan.PRESET_SEP}(?:{'|'.join(p for p in PRESETS if p != 'paper')}))?",  # SCALE[+PRESET], plan.RunKey.scale_dir
    method="|".join(METHODS),
    ablation="|".join(ABLATIONS),
    alpha=_NUMBER,
    beta=_NUMBER,
    seed=r"\d+",
    table="[2-8]",


# ---------------------------------------------------------------------------------------------
# targets


def run_results(target):
    """Result files (metrics.json) a target needs: a table id, "figure2" or "all"."""
    return [key.result for key in plan.runs_for_target(target, RUNS)]


def table_results(wildcards):
    return run_results(wildcards.table)


def figure2_results(wildcards):
    return run_results("figure2")


def all_results(wildcards):
    return run_results("all")


# ---------------------------------------------------------------------------------------------
# data


def download_status(wildcards):
    """Synthetic stand-ins need no download."""
    dataset, synthetic = plan.split_data_name(wildcards.data)
    return [] if synthetic else plan.DOWNLOAD_STATUS.format(dataset=dataset)


def data_kind(wildcards):
    name = (
        getattr(wildcards, "dataset", None) or plan.split_data_name(wildcards.data)[0]
    )
    return RUNS.kind(name)


def data_runtime(wildcards):
    """Minutes for a download/prepare job (image archives are tens of GB)."""
    return 600 if data_kind(wildcards) == "image" else 30


# ---------------------------------------------------------------------------------------------
# training


def _train_res(wildcards, name, default=0):
    return config["resources"][data_kind(wildcards)].get(name, default)


def train_threads(wildcards):
    return _train_res(wildcards, "threads", 1)


def train_mem_mb(wildcards):
    return _train_res(wildcards, "mem_mb")


def train_gpu(wildcards):
    return _train_res(wildcards, "gpu")


def train_runtime(wildcards):
    if wildcards.scale.partition("+")[0] == "smoke":
        return config["resources"]["smoke"]["runtime"]
    return _train_res(wildcards, "runtime")
