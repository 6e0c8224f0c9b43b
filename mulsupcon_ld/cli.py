"""Command-line interface: ``mulsupcon-ld <command> …``.

This module only parses arguments; each command's work lives in the module that owns it and
is imported lazily so ``mulsupcon-ld --help`` stays fast. Every :class:`UserError` becomes one
``error: …`` line on stderr and exit status 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from .errors import UserError
from .names import ABLATIONS, HOTPATHS, METHODS, PRECISIONS, PROTOCOLS, SCALES
from .settings import PRESETS

# command -> "module:function"; the function takes the parsed Namespace and returns an exit code
_HANDLERS = {
    "datasets": "mulsupcon_ld.data.commands:cmd_datasets",
    "download": "mulsupcon_ld.data.commands:cmd_download",
    "prepare": "mulsupcon_ld.data.commands:cmd_prepare",
    "info": "mulsupcon_ld.data.commands:cmd_info",
    "evaluate": "mulsupcon_ld.evaluate:cmd_evaluate",
    "run": "mulsupcon_ld.commands:cmd_run",
    "pretrain": "mulsupcon_ld.commands:cmd_pretrain",
    "finetune": "mulsupcon_ld.commands:cmd_finetune",
    "settings": "mulsupcon_ld.commands:cmd_settings",
    "diff": "mulsupcon_ld.report.diff:cmd_diff",
    "claims": "mulsupcon_ld.report.claims:cmd_claims",
    "docs": "mulsupcon_ld.report.docs:cmd_docs",
    "cost": "mulsupcon_ld.pipeline.cost:cmd_cost",
}


def _add_dirs(p: argparse.ArgumentParser, raw: bool = True, data: bool = True) -> None:
    if raw:
        p.add_argument("--raw-dir", default=None,
                       help="pre-staged download directory, one folder per dataset (DIR/yeast/…); "
                            "default: $MULSUPCON_RAW_DIR")
    if data:
        p.add_argument("--data-dir", default=None,
                       help="where prepared datasets live; default: $MULSUPCON_DATA_DIR or ./data")


def _add_preset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=tuple(PRESETS), default="paper",
                   help="named hyperparameter set: paper (Section 4) or mulsupcon-official (the published "
                        "code's Yeast configs); --set overrides apply on top")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset name (see `mulsupcon-ld datasets`)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=None, help="weight of the H term (eqs. 9, 11)")
    p.add_argument("--beta", type=float, default=None, help="weight of the ||W||_F^2 term (eqs. 9, 11)")
    p.add_argument("--ablation", choices=ABLATIONS, default="none")
    p.add_argument("--scale", choices=SCALES, default="paper")
    _add_preset(p)
    p.add_argument("--device", default=None, help="torch device; default: cuda if available, else cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (e.g. --set pretrain.epochs=10); repeatable")
    p.add_argument("--synthetic", action="store_true",
                   help="use the small deterministic stand-in of the dataset (prepared on demand)")
    p.add_argument("--out", required=True, help="output directory (metrics.json, checkpoints)")
    _add_dirs(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mulsupcon-ld", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("datasets", help="list the dataset registry and what is downloaded/prepared")
    _add_dirs(p)

    p = sub.add_parser("download", help="fetch (or find pre-staged) raw files and verify them")
    p.add_argument("name")
    _add_dirs(p, data=False)

    p = sub.add_parser("prepare", help="convert raw files to the prepared format")
    p.add_argument("name")
    p.add_argument("--synthetic", action="store_true",
                   help="write a small deterministic stand-in of the same shape instead of real data")
    _add_dirs(p)

    p = sub.add_parser("info", help="sizes and label statistics of a prepared dataset vs Table 1")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    _add_dirs(p, raw=False)

    p = sub.add_parser("evaluate", help="the paper's six metrics for a score matrix")
    p.add_argument("--scores", required=True, help=".npy, [N, C] probabilities in [0, 1]")
    p.add_argument("--labels", required=True, help=".npy, [N, C] 0/1")
    p.add_argument("--protocol", choices=PROTOCOLS, default="paper")
    p.add_argument("--val-scores")
    p.add_argument("--val-labels")
    p.add_argument("--criterion", choices=("miF1", "HA", "ebF1", "maF1", "per-metric"), default="miF1",
                   help="val-threshold protocol: which validation metric picks the threshold")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("run", help="pretrain → fine-tune → evaluate, writes OUT/metrics.json")
    _add_run_args(p)
    p = sub.add_parser("pretrain", help="contrastive pretraining only, writes OUT/pretrained.pt")
    _add_run_args(p)
    p = sub.add_parser("finetune", help="BCE fine-tuning from OUT/pretrained.pt, then evaluate")
    _add_run_args(p)

    p = sub.add_parser("settings", help="print the per-dataset hyperparameters (Section 4)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--scale", choices=SCALES, default="paper")
    _add_preset(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("diff", help="per-cell ours − paper for the regenerated tables")
    p.add_argument("--runs", default="results/runs.csv", help="aggregated runs CSV")
    p.add_argument("--tolerance", type=float, default=0.02)
    p.add_argument("--out", default=None, help="write the markdown diff here (default: stdout)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="show cells whose runs computed differently, marked MIXED (default: refuse them)")

    p = sub.add_parser("docs", help="regenerate the documents whose numbers come from the snapshot's runs")
    p.add_argument("--root", default=".", help="repository root (default: here)")
    p.add_argument("--collect", action="store_true",
                   help="first gather docs/results/runs/**/metrics.json.gz into docs/results/runs.csv")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a committed document is stale")

    p = sub.add_parser("claims", help="test the paper's claims on the runs (CI, p, Holm, verdict)")
    p.add_argument("--runs", default="results/runs.csv", help="aggregated runs CSV")
    p.add_argument("--out", default="paper_tables/claims.md", help="markdown; the CSV goes beside it")
    p.add_argument("--csv", default=None, help="the claims CSV (default: --out with .csv)")
    p.add_argument("--registry", default=None, help="claims registry (default: baselines/paper_claims.csv)")
    p.add_argument("--figure", default=None, help="also draw ours − paper per cell here (.png and .pdf)")
    p.add_argument("--tables-dir", default=None, help="also regenerate here the tables that have runs and diff.md")
    p.add_argument("--tolerance", type=float, default=0.02, help="for --tables-dir")
    p.add_argument("--allow-mixed", action="store_true",
                   help="test pairs and show cells whose runs computed differently, marked MIXED (default: refuse)")
    p = sub.add_parser("cost", help="runs and estimated CPU/GPU-hours of workflow targets")
    p.add_argument("targets", nargs="+", metavar="TARGET", help="2-8, table4, paper_tables/table4.md, figure2, all")
    p.add_argument("--configfile", default=None, help="workflow config (default config/config.yaml)")
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="as snakemake --config")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where image runs would run")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="vector runs' precision (default: the settings'; auto: the faster where measured)")
    p.add_argument("--hotpath", choices=HOTPATHS, default=None,
                   help="vector runs' pretraining lane (default: the settings' pretrain.hotpath)")
    return parser


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_resolve(_HANDLERS[args.command])(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
