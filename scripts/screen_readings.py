"""Screen variants of a run on a dataset's VALIDATION split: readings of the LD loss (docs/method.md,
"Readings at many labels") and precisions (docs/method.md, "precision", the validation of ``auto``).

Runs ``mulsupcon-ld run`` for every (variant, method, seed), at a reduced pretraining budget
(``--epochs``) or the preset's (``--epochs`` omitted), side by side (``--jobs`` single-threaded
runs), then summarises what each run's ``metrics.json`` says about validation only: val mAP and val
BCE at the fine-tuning epoch selected by val BCE, the loss parts of the last pretraining epoch, the
precision the run computed in and its pretraining wall time. Test metrics are never read here::

    python scripts/screen_readings.py run --dataset delicious --methods cld,rld --seeds 0,1,2 \\
        --variants printed,normalised,normalised-h --epochs 50 --raw-dir ../shared/data --out screen/delicious
    python scripts/screen_readings.py summarise --out screen/delicious --csv docs/results/delicious/readings_val.csv
    python scripts/screen_readings.py run --dataset yeast --methods cld,mulsupcon --variants fp32,bf16 \\
        --raw-dir ../shared/data --out screen/precision/yeast
    python scripts/screen_readings.py summarise --out screen/precision/yeast screen/precision/scene \\
        --csv benchmarks/results/bf16_validation_vector.csv

A variant is a named list of ``--set`` overrides (:data:`VARIANTS`): a reading sets ``loss.options``
and leaves the precision at its default, a precision sets ``precision`` and leaves the loss as the
dataset's default.

A run whose ``metrics.json`` exists is skipped (re-running resumes; killed runs resume from their
checkpoints, see ``mulsupcon-ld run``).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mulsupcon_ld.names import PRECISIONS
from mulsupcon_ld.settings import LD_READINGS

# name -> loss.options (LDOptions fields); "printed" = the defaults (eqs. 12-15 as printed)
_NORM = LD_READINGS["normalised"]
READINGS: dict[str, dict | None] = {
    "printed": None,
    "normalised": dict(_NORM),
    "normalised-h": {**_NORM, "h_target": "normalized"},
    "normalised-h-own": {**_NORM, "h_target": "normalized", "in_batch_keys": "own"},
    "normalised-h-perlabel": {**_NORM, "h_target": "normalized", "ld_positive_set": "per_label"},
}
# name -> the run's --set overrides: the readings above, then the precisions
VARIANTS: dict[str, list[str]] = {
    **{name: [f"loss.options={json.dumps(options)}"] for name, options in READINGS.items()},
    **{name: [f"precision={name}"] for name in PRECISIONS},
}


def _command(args: argparse.Namespace, variant: str, method: str, seed: int, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "mulsupcon_ld.cli", "run", "--dataset", args.dataset, "--method", method,
           "--seed", str(seed), "--out", str(out), "--set", "threads=1"]
    if args.epochs is not None:
        cmd += ["--set", f"pretrain.epochs={args.epochs}"]
    for override in VARIANTS[variant]:
        cmd += ["--set", override]
    if args.raw_dir:
        cmd += ["--raw-dir", args.raw_dir]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    return cmd


def run(args: argparse.Namespace) -> None:
    unknown = [r for r in args.variants.split(",") if r not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        sys.exit(2)
    jobs = []
    for seed in (int(s) for s in args.seeds.split(",")):       # seed-major: every variant gets seed 0 first
        for variant in args.variants.split(","):
            for method in args.methods.split(","):
                out = Path(args.out) / variant / method / f"seed{seed}"
                if not (out / "metrics.json").exists():
                    jobs.append((_command(args, variant, method, seed, out), out))
    print(f"{len(jobs)} runs to do, {args.jobs} at a time", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def one(job: tuple[list[str], Path]) -> str:
        cmd, out = job
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "run.log", "w") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        return f"{'ok' if rc == 0 else f'FAILED ({rc})'} {out}"

    with cf.ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(one, jobs):
            print(line, flush=True)


def summarise(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    outs = args.out if isinstance(args.out, list) else [args.out]
    for path in sorted(p for out in outs for p in Path(out).glob("*/*/seed*/metrics.json")):
        m = json.loads(path.read_text())
        ft = m["training"]["finetune"]                     # per-epoch lists: val_mAP, val_loss, …
        hist, best = ft, ft["selected_epoch"]
        parts = m["training"]["pretrain"].get("parts") or [{}]   # one dict of loss terms per epoch
        last = parts[-1]
        calibration = m.get("precision") or {}
        rows.append({"dataset": m.get("dataset"), "reading": path.parts[-4], "method": path.parts[-3], "seed": m["seed"],
                     "val_mAP": hist["val_mAP"][best - 1], "val_bce": hist["val_loss"][best - 1],
                     "selected_epoch": best, "pretrain_epochs": m["config"]["settings"]["pretrain"]["epochs"],
                     "pretrain_s": m["wall_time_s"]["pretrain"], "finetune_s": m["wall_time_s"]["finetune"],
                     **{f"part_{k}": v for k, v in last.items()},
                     "precision": (m.get("precision") or {}).get("chosen", m["config"]["settings"]["precision"]),
                     "options": json.dumps(m["config"]["settings"]["loss"]["options"]), "commit": m.get("git_commit"),
                     "flush_denormal": m["config"]["settings"].get("flush_denormal"), "cpu": m.get("cpu"),
                     "calib_fp32_ms": calibration.get("fp32_ms_per_iter"),
                     "calib_bf16_ms": calibration.get("bf16_ms_per_iter"), "result_hash": m.get("result_hash")})
    df = pd.DataFrame(rows)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(args.csv) + ".partial")
        df.to_csv(tmp, index=False)
        tmp.replace(args.csv)
    if len(df):
        print(readings_table(df))
    return df


def readings_table(df: pd.DataFrame) -> str:
    """One markdown row per (method, variant): val mAP per seed, mean ± sd, val BCE, the loss terms of
    the last pretraining epoch and the pretraining wall time (seed means), and the precision computed."""
    rows = []
    by_dataset = "dataset" in df and df["dataset"].nunique() > 1     # one row per dataset too, never a mean across
    keys = ["dataset", "method", "reading"] if by_dataset else ["method", "reading"]
    for key, g in df.sort_values("seed").groupby(keys, sort=False):
        method, variant = key[-2:]
        label = f"{key[0]} {method}".upper() if by_dataset else method.upper()
        sd = g["val_mAP"].std() if len(g) > 1 else float("nan")
        parts = [f"{g[f'part_{k}'].mean():,.3g}" if f"part_{k}" in g else "—"
                 for k in ("contrastive", "g", "alpha_h", "beta_w")]
        rows.append([label, variant, ", ".join(f"{v:.4f}" for v in g["val_mAP"]),
                     f"{g['val_mAP'].mean():.4f}" + ("" if sd != sd else f" ± {sd:.4f}"),
                     f"{g['val_bce'].mean():.4f}", *parts, f"{g['pretrain_s'].mean():.0f}",
                     "/".join(sorted(set(g["precision"].astype(str)))) if "precision" in g else "—"])
    head = ["method", "variant", "val mAP per seed", "mean ± sd", "val BCE", "contrastive", "G", "α·H", "β‖W‖²",
            "pretrain s", "precision"]
    order = {r: i for i, r in enumerate(VARIANTS)}
    rows.sort(key=lambda r: (r[0], order.get(r[1], 99)))
    return pd.DataFrame(rows, columns=head).to_markdown(index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", required=True)
    r.add_argument("--methods", default="cld,rld")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--variants", "--readings", dest="variants", default="printed,normalised,normalised-h",
                   help=f"comma list of: {', '.join(VARIANTS)}")
    r.add_argument("--epochs", type=int, default=None,
                   help="pretraining epochs (a reduced budget; default: the preset's)")
    r.add_argument("--raw-dir")
    r.add_argument("--data-dir")
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--out", required=True)
    s = sub.add_parser("summarise")
    s.add_argument("--out", required=True, nargs="+", help="one or more `run --out` folders")
    s.add_argument("--csv")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else summarise(args)


if __name__ == "__main__":
    main()
