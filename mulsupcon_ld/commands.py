"""``mulsupcon-ld run | pretrain | finetune | settings``: arguments → :class:`ExperimentSpec`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .experiment import ExperimentSpec, run_experiment
from .settings import format_settings, get_settings


def experiment_spec(args: argparse.Namespace, phases: tuple[str, ...]) -> ExperimentSpec:
    """The parsed ``run`` / ``pretrain`` / ``finetune`` arguments as an :class:`ExperimentSpec`."""
    return ExperimentSpec(dataset=args.dataset, method=args.method, out=Path(args.out), seed=args.seed,
                          alpha=args.alpha, beta=args.beta, ablation=args.ablation, scale=args.scale,
                          synthetic=args.synthetic, overrides=tuple(args.set), device=args.device,
                          raw_dir=args.raw_dir, data_dir=args.data_dir, phases=phases,
                          preset=args.preset)


def cmd_run(args: argparse.Namespace) -> int:
    run_experiment(experiment_spec(args, ("pretrain", "finetune")))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    run_experiment(experiment_spec(args, ("pretrain",)))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    run_experiment(experiment_spec(args, ("finetune",)))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    s = get_settings(args.dataset, args.scale, preset=args.preset)
    print(json.dumps(s, indent=2) if args.json else format_settings(s))
    return 0
