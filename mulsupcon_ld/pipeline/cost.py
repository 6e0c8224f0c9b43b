"""``mulsupcon-ld cost TARGET…``: runs and CPU/GPU-hours of workflow targets, before they run.

The per-run estimate is :func:`mulsupcon_ld.cost.run_cost` (FLOPs over rates measured by the
benchmarks); the runs of a target are the workflow's own plan (:mod:`.plan`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ..cost import RunCost, cpu_rates, measurements, run_cost
from ..errors import UserError
from ..machine import isa_class
from ..names import NO_PRETRAIN_METHODS
from . import plan


def table_costs(targets: list[str], config: dict[str, Any], device: str, precision: str | None = None,
                hotpath: str | None = None, isa: str | None = None) -> list[dict]:
    """Per target: runs, and CPU- or GPU-hours (image runs on ``device``, vector runs on CPU in
    ``precision`` and the pretraining lane ``hotpath``; None: the config's, else the settings'
    default); CPU rates of the class ``isa`` (default: this machine's). See :func:`target_costs`."""
    rc = plan.RunConfig.from_config({**config, "precision": precision or config.get("precision"),
                                     "hotpath": hotpath or config.get("hotpath")})
    return target_costs(targets, rc, device, isa)


def target_costs(targets: list[str], rc: plan.RunConfig, device: str, isa: str | None = None) -> list[dict]:
    """:func:`table_costs` of a resolved :class:`plan.RunConfig`: each run is costed with its
    dataset's settings as the workflow resolved them (scale, preset, precision and lane)."""
    rows = []
    for target in targets:
        t = plan.target_id(target)
        if t is None:
            raise UserError(f"unknown target {target!r}; use a table id (2-8, table4, "
                            "paper_tables/table4.md), figure2 or all")
        runs = plan.runs_for_target(t, rc)
        cpu_h = gpu_h = 0.0
        cache: dict[tuple[str, str, bool], RunCost] = {}
        for key in runs:
            dev = device if rc.kind(key.dataset) == "image" else "cpu"
            pretrains = key.method not in NO_PRETRAIN_METHODS
            at = (key.dataset, dev, pretrains)
            if at not in cache:
                cache[at] = run_cost(rc.settings[key.dataset], dev, pretrain=pretrains, isa=isa)
            if dev == "cuda":
                gpu_h += cache[at].hours
            else:
                cpu_h += cache[at].hours
        rows.append({"target": target, "runs": len(runs), "cpu_hours": round(cpu_h, 2),
                     "gpu_hours": round(gpu_h, 2), "scale": plan.RunKey.scale_dir_of(rc.scale, rc.preset)})
    return rows


def start_lines(targets: list[str], rc: plan.RunConfig, device: str = "cuda") -> list[str]:
    """One line per table target (a table id, ``table4``, ``figure2``, ``all``), printed before the
    workflow runs it: runs and the estimated CPU-/GPU-hours (image runs on ``device``: the workflow
    asks a GPU for them). An estimate that cannot be made is one line saying why; it never stops the
    workflow."""
    try:
        rows = target_costs(targets, rc, device)
    except (UserError, KeyError, ValueError, OSError) as e:   # a bad measurements file included
        return [f"cost: no estimate ({type(e).__name__}: {e})"]
    return [f"cost: {r['target']}: {r['runs']} runs, ~{r['cpu_hours']:,.1f} CPU-hours, "
            f"~{r['gpu_hours']:,.1f} GPU-hours (scale {r['scale']}; `mulsupcon-ld cost` for details)"
            for r in rows]


def _load_config(path: str | None, overrides: list[str]) -> dict[str, Any]:
    """The workflow's config as snakemake builds it: the Snakefile's ``config/config.yaml``, updated
    by ``--configfile`` (key by key), then by ``--config KEY=VALUE``."""
    config: dict[str, Any] = {}
    for cfg_path in dict.fromkeys([Path("config/config.yaml")] + ([Path(path)] if path else [])):
        if not cfg_path.exists():
            raise UserError(f"workflow config {cfg_path} not found; run from the repository root or pass --configfile")
        config.update(yaml.safe_load(cfg_path.read_text()) or {})
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--config {item!r} is not KEY=VALUE")
        k, v = item.split("=", 1)
        config[k.strip()] = yaml.safe_load(v)   # as snakemake --config parses values
    return config


def cmd_cost(args: argparse.Namespace) -> int:
    config = _load_config(args.configfile, args.config)
    rows = table_costs(args.targets, config, args.device, args.precision or config.get("precision"),
                       args.hotpath or config.get("hotpath"))
    m = measurements()
    rates, own = cpu_rates(m)
    here = isa_class()
    where = (f"this machine's class ({here})" if own else
             f"NOT this machine's class ({here}: not measured; figures from {rates['isa_class']})")
    print(f"# CPU rates of {where}: {rates['machine']} ({rates['commit']}); "
          f"GPU {m['cuda']['machine']} ({m['cuda']['source']})")
    print(f"{'target':<28} {'runs':>6} {'CPU-hours':>11} {'GPU-hours':>11}  scale")
    for r in rows:
        print(f"{r['target']:<28} {r['runs']:>6} {r['cpu_hours']:>11,.1f} {r['gpu_hours']:>11,.1f}  {r['scale']}")
    return 0
