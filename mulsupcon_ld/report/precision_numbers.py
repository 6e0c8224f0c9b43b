"""The numbers of ``docs/method.md``'s arithmetic sections, computed from their recorded per-run rows:
the bf16-against-fp32 validation (Yeast, Scene, Delicious), what ``precision=auto`` chose when calibrating
itself, and the subnormal benchmark. :func:`context` is what their blocks see (merged into
:func:`.method_numbers.context`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .doc_format import md, ms, pm, read_csv, signed, signed_list

#: ``scripts/screen_readings.py summarise`` of the Yeast and Scene screenings (variants fp32, bf16, auto)
BF16_VECTOR = "benchmarks/results/bf16_validation_vector.csv"
#: Delicious: fp32 = the workflow runs of an earlier snapshot, bf16 = the screening (its ``source`` column)
BF16_DELICIOUS = "benchmarks/results/bf16_validation_delicious.csv"
DENORMAL = "benchmarks/results/bench_denormal_cpu.jsonl"
SOURCES = (BF16_VECTOR, BF16_DELICIOUS, DENORMAL)

DATASETS = {"yeast": "Yeast", "scene": "Scene", "delicious": "Delicious"}
METHODS = {"cld": "CLD", "mulsupcon": "MulSupCon"}


def bf16_cell(rows: pd.DataFrame) -> dict[str, Any]:
    """One (dataset, method) of the validation: val mAP mean ± sd per precision, bf16 − fp32 (means and per
    seed), the pooled seed sd and whether the difference lies within it, mean pretraining seconds, the
    difference of mean val BCE."""
    fp32, bf16 = (rows[rows["precision"] == p].sort_values("seed").set_index("seed") for p in ("fp32", "bf16"))
    pooled = math.sqrt((fp32["val_mAP"].var() + bf16["val_mAP"].var()) / 2)
    diff = bf16["val_mAP"].mean() - fp32["val_mAP"].mean()
    per_seed = (bf16["val_mAP"] - fp32["val_mAP"]).dropna()
    return {"fp32": pm(fp32["val_mAP"]), "bf16": pm(bf16["val_mAP"]), "diff_value": diff, "diff": signed(diff),
            "pooled_value": pooled, "pooled": f"{pooled:.4f}", "within": abs(diff) <= pooled,
            "per_seed": signed_list(per_seed), "sd_fp32": fp32["val_mAP"].std(), "sd_bf16": bf16["val_mAP"].std(),
            "pre": f"{fp32['pretrain_s'].mean():.0f} / {bf16['pretrain_s'].mean():.0f}",
            "speedup": fp32["pretrain_s"].mean() / bf16["pretrain_s"].mean(),
            "bce_diff": abs(bf16["val_bce"].mean() - fp32["val_bce"].mean()),
            "commits": "/".join(sorted(set(rows["commit"].astype(str).str[:7])))}


def _cells(frame: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d, m): bf16_cell(frame[(frame["dataset"] == d) & (frame["method"] == m)])
            for d in DATASETS for m in METHODS if ((frame["dataset"] == d) & (frame["method"] == m)).any()}


def bf16_validation(root: Path) -> dict[str, Any]:
    """The validation table (a row per dataset × method, Yeast and Scene from :data:`BF16_VECTOR`, Delicious
    from :data:`BF16_DELICIOUS`) and what its prose states: whether every difference lies within one pooled
    seed sd, the largest val BCE difference, the cell whose bf16 − fp32 is largest."""
    vector = read_csv(root, BF16_VECTOR)
    vector = vector[vector["reading"].isin(["fp32", "bf16"])]
    cells = {**_cells(vector), **_cells(read_csv(root, BF16_DELICIOUS))}
    rows = [[DATASETS[d], METHODS[m], c["fp32"], c["bf16"], f"{c['diff']} ({c['pooled']})", f"{c['pre']} s"]
            for (d, m), c in cells.items()]
    table = md(["dataset", "method", "val mAP fp32", "val mAP bf16", "bf16 − fp32 (pooled seed sd)",
                "pretraining fp32 / bf16"], rows)
    vector_cells = {k: c for k, c in cells.items() if k[0] != "delicious"}
    largest = max(vector_cells, key=lambda k: abs(vector_cells[k]["diff_value"]))
    return {"table": "\n".join("  " + line for line in table.splitlines()),
            "cells": {f"{d}_{m}": c for (d, m), c in cells.items()},
            "all_within": all(c["within"] for c in cells.values()),
            "outside": [f"{DATASETS[d]} {METHODS[m]}" for (d, m), c in cells.items() if not c["within"]],
            "bce_bound": math.ceil(max(c["bce_diff"] for c in vector_cells.values()) * 1e4) / 1e4,
            "largest": {"name": f"{DATASETS[largest[0]]} {METHODS[largest[1]]}", **vector_cells[largest]},
            "vector_commit": "/".join(sorted(set(vector["commit"].astype(str).str[:7]))),
            "vector_cpu": "/".join(sorted(set(vector["cpu"].astype(str)))) if "cpu" in vector else ""}


def bf16_delicious(validation: dict[str, Any]) -> dict[str, Any]:
    """bf16 − fp32 on Delicious per method (the validation's Delicious cells) and the largest difference of
    mean val BCE."""
    cells = {m: validation["cells"][f"delicious_{m}"] for m in METHODS}
    return {**cells, "bce_bound": math.ceil(max(c["bce_diff"] for c in cells.values()) * 1e4) / 1e4}


def auto_choices(root: Path) -> list[dict[str, Any]]:
    """``precision=auto`` at seed 0 per (dataset, method) of :data:`BF16_VECTOR`: the calibration's ratio
    (fp32 ms / bf16 ms per iteration), the precision it chose, and whether the run's result hash equals the
    seed-0 run that asked for that precision."""
    frame = read_csv(root, BF16_VECTOR)
    out = []
    for _, auto in frame[frame["reading"] == "auto"].sort_values(["dataset", "method"], ascending=[False, True]).iterrows():
        twin = frame[(frame["reading"] == auto["precision"]) & (frame["dataset"] == auto["dataset"])
                     & (frame["method"] == auto["method"]) & (frame["seed"] == auto["seed"])]
        out.append({"name": f"{DATASETS[auto['dataset']]} {METHODS[auto['method']]}", "chose": auto["precision"],
                    "ratio": auto["calib_fp32_ms"] / auto["calib_bf16_ms"],
                    "equal": bool(len(twin)) and bool((twin["result_hash"] == auto["result_hash"]).all())})
    return out


def denormal_bench(root: Path) -> dict[str, Any]:
    """bench_denormal_cpu.jsonl: the step and its backward with flush-to-zero off and on, the ratios,
    the checkpoint's epoch and the fraction of subnormal fc weights in it."""
    rows = {r["flush_denormal"]: r for r in map(json.loads, (root / DENORMAL).read_text().splitlines())}
    off, on = rows[False], rows[True]
    return {"epoch": off["state_epoch"], "subnormal": off["fc_weight_subnormal_fraction"],
            "step": f"{ms(off['step_ms'])} → {ms(on['step_ms'])}",
            "backward": f"{ms(off['backward_ms'])} → {ms(on['backward_ms'])}",
            "step_ratio": off["step_ms"] / on["step_ms"], "backward_ratio": off["backward_ms"] / on["backward_ms"]}


def context(root: Path) -> dict[str, Any]:
    """What the arithmetic blocks of docs/method.md read."""
    validation = bf16_validation(root)
    return {"bf16": validation, "bf16_delicious": bf16_delicious(validation), "auto": auto_choices(root),
            "denormal": denormal_bench(root)}
