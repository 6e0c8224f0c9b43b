"""``mulsupcon-ld run | pretrain | finetune | settings``: arguments → :class:`ExperimentSpec`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .errors import UserError
from .experiment import PHASES, ExperimentSpec, resolve_run, run_experiment
from .run_settings import resolve_settings
from .settings import format_settings


def experiment_spec(args: argparse.Namespace, phases: tuple[str, ...]) -> ExperimentSpec:
    """The parsed ``run`` / ``pretrain`` / ``finetune`` arguments as an :class:`ExperimentSpec`
    (a negative seed is refused here, before anything is prepared or written: seeds are >= 0, as
    the workflow's config schema has them)."""
    if args.seed < 0:
        raise UserError(f"--seed must be an integer >= 0, got {args.seed}")
    return ExperimentSpec(dataset=args.dataset, method=args.method, out=Path(args.out), seed=args.seed,
                          alpha=args.alpha, beta=args.beta, ablation=args.ablation, scale=args.scale,
                          synthetic=args.synthetic, overrides=tuple(args.set), device=args.device,
                          raw_dir=args.raw_dir, data_dir=args.data_dir, phases=phases,
                          preset=args.preset)


def _run_phases(args: argparse.Namespace, phases: tuple[str, ...]) -> int:
    """The body of ``run`` / ``pretrain`` / ``finetune``: resolve the settings, set the thread count
    and the subnormal mode here, at the process edge (the library never changes them), run."""
    run = resolve_run(experiment_spec(args, phases))
    if run.settings.threads:
        torch.set_num_threads(run.settings.threads)
    torch.set_flush_denormal(run.settings.flush_denormal)
    run_experiment(run)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return _run_phases(args, PHASES)


def cmd_pretrain(args: argparse.Namespace) -> int:
    return _run_phases(args, ("pretrain",))


def cmd_finetune(args: argparse.Namespace) -> int:
    return _run_phases(args, ("finetune",))


def cmd_settings(args: argparse.Namespace) -> int:
    s = resolve_settings(args.dataset, args.scale, args.preset).to_dict()
    print(json.dumps(s, indent=2) if args.json else format_settings(s))
    return 0
