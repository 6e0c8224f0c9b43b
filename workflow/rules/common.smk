import os
import re
import sys
import tempfile
from pathlib import Path

import yaml

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from mulsupcon_ld.errors import UserError
from mulsupcon_ld.names import ABLATIONS, METHODS, METRICS_FILE, SCALES
from mulsupcon_ld.registry import DATASETS
from mulsupcon_ld.settings import PRESETS
from mulsupcon_ld.pipeline import config as wfconfig, cost, plan, summary

# the schema with the registry's names filled in (one home for them); snakemake's validate reads a
# file, so it gets the filled schema as one. `--config seeds=[0,1]` leaves strings inside lists:
# they are converted to the schema's types first.
_SCHEMA = wfconfig.config_schema(workflow.source_path("../schemas/config.schema.yaml"))
config.update(wfconfig.coerce_config(dict(config), _SCHEMA))
with tempfile.TemporaryDirectory(prefix="mulsupcon-schema-") as _tmp:
    _schema_file = Path(_tmp) / "config.schema.yaml"
    _schema_file.write_text(yaml.safe_dump(_SCHEMA, allow_unicode=True))
    validate(config, str(_schema_file))

# which runs exist, each dataset's settings resolved once (run_settings checks presets and the rest)
try:
    RUNS = plan.RunConfig.from_config(config)
except UserError as _e:
    raise WorkflowError(f"config: {_e}")


# ---------------------------------------------------------------------------------------------
# the cost line before a run, dry runs included
#
# Snakemake has no public way to know the requested targets while it parses this file, and onstart
# does not run for dry runs. The input functions of the table, figure and aggregate rules do run,
# for exactly the targets the DAG needs, while snakemake builds the DAG before any job: each prints
# its target's cost line there, once (docs/workflow.md, "Cost"). The same record of what was built
# is what the summary at the end covers.
_ANNOUNCED = []


def announce(target):
    """Print ``target``'s cost line (a table id, "figure2" or "all") the first time the DAG asks for
    it; strict=true stops on placeholders of unavailable runs from an earlier non-strict run,
    which nothing would re-run (their files exist)."""
    if target in _ANNOUNCED:
        return
    _ANNOUNCED.append(target)
    label = f"table{target}" if target in plan.TABLE_IDS else target
    for line in cost.start_lines([label], RUNS):
        print(line, file=sys.stderr)
    held = summary.placeholders([target], RUNS) if config["strict"] else []
    if held:
        summary.report([target], RUNS, strict=True)
        raise WorkflowError(
            f"strict=true: {len(held)} requested runs are unavailable (placeholders such as "
            f"{held[0].result}); delete them and results/data/<dataset>/ to try again"
        )


def all_cost(wildcards):
    """Rule all's first input: its total cost line before those of its tables (no files)."""
    announce("all")
    return []


def built_targets():
    """The table targets the DAG asked for (for the end-of-workflow summary)."""
    return list(_ANNOUNCED)


# envs/mulsupcon.post-deploy.sh installs the project from here into the conda env (--sdm conda)
os.environ.setdefault("MULSUPCON_LD_ROOT", str(Path(workflow.basedir).resolve()))

ENV = "../../envs/mulsupcon.yaml"
_NAMES = "|".join(sorted(DATASETS, key=len, reverse=True))
_NUMBER = r"na|[0-9][0-9.e+-]*"


wildcard_constraints:
    dataset=f"(?:{_NAMES})",
    data=f"(?:{_NAMES})(?:{plan.SYNTHETIC_SUFFIX})?",
    scale=rf"(?:{'|'.join(SCALES)})(?:{re.escape(plan.PRESET_SEP)}(?:{'|'.join(p for p in PRESETS if p != 'paper')}))?",  # plan.RunKey.scale_dir_of
    method="|".join(METHODS),
    ablation="|".join(ABLATIONS),
    alpha=_NUMBER,
    beta=_NUMBER,
    seed=r"\d+",
    table="[2-8]",


# ---------------------------------------------------------------------------------------------
# targets


def run_results(target):
    """Result files (metrics.json) a target needs: a table id, "figure2" or "all"; its cost line
    is printed the first time (:func:`announce`)."""
    announce(target)
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
    if plan.RunKey.scale_of(wildcards.scale) == "smoke":
        return config["resources"]["smoke"]["runtime"]
    return _train_res(wildcards, "runtime")
