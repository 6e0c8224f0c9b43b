"""The numbers of ``docs/method.md`` that come from runs, computed from their recorded per-run rows.

``docs/method.md`` is typed prose with generated blocks (``<!-- generated: NAME -->``, rendered from
``docs/templates/blocks/NAME.md.j2`` by ``mulsupcon-ld docs``, :mod:`.docs`). Each function here reads one
file of per-run rows (:data:`SOURCES`) and returns what a block states: means ± sample sd over seeds,
per-seed values, differences paired by seed, counts of pairs. :func:`context` is what the blocks see.
"""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd

from . import precision_numbers
from .doc_format import dot3, fmt, md, pm, read_csv, sig, signed, signed_list, slash

BUDGET = "docs/results/budget/budget_val_runs.csv"
NORMALISATION = "docs/results/budget/normalisation_val_runs.csv"
DELICIOUS_50 = "docs/results/delicious/readings_val.csv"
DELICIOUS_400 = "docs/results/delicious/readings_val_400.csv"
ASL_SELECTION = "docs/results/asl/selection_val.csv"
#: the snapshot's Delicious records (the normalised reading at the paper budget: the 400-epoch table's seeds)
SNAPSHOT_DELICIOUS = "docs/results/runs/paper/delicious"
SOURCES = (BUDGET, NORMALISATION, DELICIOUS_50, DELICIOUS_400, ASL_SELECTION, SNAPSHOT_DELICIOUS,
           *precision_numbers.SOURCES)
SEEDS_400 = (0, 1, 2)

#: the budget table's rows per dataset: (pretraining, fine-tuning, variant in budget_val_runs.csv)
BUDGET_ROWS = {
    "yeast": (("one pass", "paper", "onepass"), ("one pass", "mask 0", "onepass-mask0"),
              ("one pass", "`backbone_lr_mult` 0.1", "onepass-lrp01"),
              ("one pass", "published recipe", "onepass-ftofficial"),
              ("100/epoch", "paper", "yeast-ipe100"), ("100/epoch", "mask 0", "ipe100-mask0"),
              ("100/epoch", "published recipe", "ipe100-ftofficial")),
    "scene": (("one pass", "paper", "onepass"), ("one pass", "mask 0", "onepass-mask0"),
              ("one pass", "`backbone_lr_mult` 0.1", "onepass-lrp01"),
              ("one pass", "published recipe", "onepass-ftofficial"),
              ("30/epoch", "paper", "scene-ipe30"), ("30/epoch", "published recipe", "scene-ipe30-ftofficial")),
}
PAIRS = (("yeast", "mulsupcon"), ("yeast", "cld"), ("scene", "mulsupcon"), ("scene", "cld"))
NAMES = {"yeast": "Yeast", "scene": "Scene", "mulsupcon": "MulSupCon", "cld": "CLD", "rld": "RLD"}
READINGS = ("printed", "normalised", "normalised-h")
PARTS = ("contrastive", "g", "alpha_h", "beta_w")
PART_HEADERS = ("contrastive", "G", "α·H", "β‖W‖²")


def _validation_at_selection(record: dict[str, Any]) -> tuple[float, float]:
    """A run's val mAP and val BCE at the fine-tuning epoch it selected (1-based in the record)."""
    ft = record["training"]["finetune"]
    epoch = ft["selected_epoch"]
    return ft["val_mAP"][epoch - 1], ft["val_loss"][epoch - 1]


def snapshot_400(root: Path, method: str) -> dict[str, Any]:
    """Seeds :data:`SEEDS_400` of the snapshot's Delicious ``method`` runs (normalised reading, 400 epochs):
    val mAP and val BCE each, and the commit they ran at."""
    maps, bces, commits = [], [], set()
    for seed in SEEDS_400:
        path = next((root / SNAPSHOT_DELICIOUS / method).glob(f"none/*/seed{seed}/metrics.json.gz"))
        record = json.loads(gzip.decompress(path.read_bytes()))
        if record["arithmetic"]["reading"] != "normalised":
            raise ValueError(f"{path}: reading {record['arithmetic']['reading']!r}, the table needs 'normalised'")
        val_map, val_bce = _validation_at_selection(record)
        maps.append(val_map)
        bces.append(val_bce)
        commits.add(record["arithmetic"]["code"][:7])
    return {"maps": maps, "bces": bces, "commit": "/".join(sorted(commits))}


# ------------------------------------------------------------------------------------ the budget
def budget_cells(root: Path) -> dict[tuple[str, str, str], pd.DataFrame]:
    """budget_val_runs.csv per (variant, dataset, method): its runs (one per seed)."""
    frame = read_csv(root, BUDGET).sort_values("seed")
    return {key: rows for key, rows in frame.groupby(["variant", "dataset", "method"])}


def budget_table(root: Path) -> str:
    """The budget table: val mAP and val BCE mean ± sd over seeds, mean pretraining seconds; iteration
    counts at the first row of each pretraining, the paper's fine-tuning spelled out at its first row."""
    cells, seen, body = budget_cells(root), set(), []
    for dataset, rows in BUDGET_ROWS.items():
        for method in ("mulsupcon", "cld"):
            for pretraining, finetuning, variant in rows:
                c = cells[(variant, dataset, method)]
                pre, ft = pretraining, finetuning
                if (dataset, pretraining) not in seen:
                    seen.add((dataset, pretraining))
                    pre = f"{pretraining} ({int(c['iters'].iloc[0]):,})"
                if finetuning not in seen:
                    seen.add(finetuning)
                    ft = "paper (mask 0.4, AdamW, cosine)" if finetuning == "paper" else finetuning
                body.append([NAMES[dataset], NAMES[method], pre, ft, pm(c["val_map"]), pm(c["val_bce"]),
                             f"{c['pre_s'].mean():.0f}"])
    return md(["dataset", "method", "pretraining", "fine-tuning", "val mAP", "val BCE", "pretrain s"], body)


def finetuning_effect(root: Path, variant: str) -> dict[str, Any]:
    """A one-pass fine-tuning variant against the paper's, per (dataset, method) pair (:data:`PAIRS`):
    the differences of mean val mAP, and in how many pairs val mAP and val BCE are lower."""
    cells = budget_cells(root)
    d_map, d_bce = [], []
    for dataset, method in PAIRS:
        new, old = cells[(variant, dataset, method)], cells[("onepass", dataset, method)]
        d_map.append(new["val_map"].mean() - old["val_map"].mean())
        d_bce.append(new["val_bce"].mean() - old["val_bce"].mean())
    return {"pairs": len(PAIRS), "map_deltas": signed_list(d_map, 3),
            "map_lower": sum(bool(d < 0) for d in d_map), "bce_lower": sum(bool(d < 0) for d in d_bce)}


#: the longer pretraining per dataset: (its variant, the same with the published fine-tuning recipe)
LONG = {"yeast": ("yeast-ipe100", "ipe100-ftofficial"), "scene": ("scene-ipe30", "scene-ipe30-ftofficial")}
FIXED_EPOCHS = 400 * 1000   # the published code's 400 x iters_per_epoch 1000


def budget_cost(root: Path) -> dict[str, dict[str, Any]]:
    """Per dataset, the longer-pretraining runs' milliseconds per pretraining iteration (min, max over
    runs) and what 400 × 1000 iterations would then take, in hours of one core."""
    frame = read_csv(root, BUDGET)
    out = {}
    for dataset, (variant, _) in LONG.items():
        rows = frame[(frame["dataset"] == dataset) & (frame["variant"] == variant)]
        per_iter = rows["pre_s"] / rows["iters"]
        out[dataset] = {"ms": f"{1e3 * per_iter.min():.0f}–{1e3 * per_iter.max():.0f}",
                        "hours": f"{FIXED_EPOCHS * per_iter.min() / 3600:.1f}–{FIXED_EPOCHS * per_iter.max() / 3600:.1f}"}
    return out


def official_recipe(root: Path) -> dict[str, dict[str, Any]]:
    """The longer pretraining with the published fine-tuning recipe, per dataset and method: val mAP mean ±
    sd, and its rank among that method's rows of the budget table (1 = highest mean val mAP)."""
    cells = budget_cells(root)
    out: dict[str, dict[str, Any]] = {}
    for dataset, (_, official) in LONG.items():
        variants = [v for _, _, v in BUDGET_ROWS[dataset]]
        for method in ("mulsupcon", "cld"):
            means = sorted((cells[(v, dataset, method)]["val_map"].mean() for v in variants), reverse=True)
            c = cells[(official, dataset, method)]
            out.setdefault(dataset, {})[method] = {"map": pm(c["val_map"]), "rank": means.index(c["val_map"].mean()) + 1,
                                                   "of": len(variants), "iters": f"{int(c['iters'].iloc[0]):,}"}
    return out


# ------------------------------------------------------------------------------------ normalisation
def normalisation_parts(root: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Seed 0's loss terms (last-epoch means of one batch's loss) per dataset and reading."""
    frame = read_csv(root, NORMALISATION)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in frame[frame["seed"] == 0].itertuples(index=False):
        out.setdefault(r.dataset, {})[r.variant] = ast.literal_eval(r.parts)
    return out


def _summary(val_map: pd.Series, val_bce: pd.Series) -> dict[str, Any]:
    return {"map": pm(val_map), "map_mean": float(val_map.mean()), "bce": f"{val_bce.mean():.4f}"}


def normalisation_validation(root: Path) -> dict[str, dict[str, Any]]:
    """CLD, one-pass budget, seeds 0–2, per dataset: val mAP (mean ± sd) and mean val BCE of each
    reading, and the gain normalised − printed in mean val mAP. Printed Yeast and Scene are the budget
    table's one-pass CLD runs; the stand-in's printed runs are in normalisation_val_runs.csv."""
    norm, budget = read_csv(root, NORMALISATION), read_csv(root, BUDGET)
    out = {}
    for dataset in ("yeast", "scene", "delicious-synthetic"):
        if dataset.startswith("delicious"):
            printed = norm[(norm["variant"] == "printed") & (norm["dataset"] == dataset)]
        else:
            printed = budget[(budget["variant"] == "onepass") & (budget["dataset"] == dataset)
                             & (budget["method"] == "cld")]
        normalised = norm[(norm["variant"] == "normalised") & (norm["dataset"] == dataset)]
        out[dataset] = {"printed": _summary(printed["val_map"], printed["val_bce"]),
                        "normalised": _summary(normalised["val_map"], normalised["val_bce"])}
        out[dataset]["gain"] = out[dataset]["normalised"]["map_mean"] - out[dataset]["printed"]["map_mean"]
    return out


# ------------------------------------------------------------------------------------ Delicious
def delicious_screening(root: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """readings_val.csv (50 epochs) per method and reading: val mAP per seed and mean ± sd, mean val BCE,
    the loss terms averaged over seeds; per method the normalised − printed val mAP paired by seed."""
    frame = read_csv(root, DELICIOUS_50).sort_values("seed")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (method, reading), rows in frame.groupby(["method", "reading"]):
        cell = {"seeds": list(rows["seed"]), "maps": list(rows["val_mAP"]), "map": pm(rows["val_mAP"]),
                "map_mean": float(rows["val_mAP"].mean()), "bce_mean": float(rows["val_bce"].mean())}
        cell.update({p: float(rows[f"part_{p}"].mean()) for p in PARTS})
        out.setdefault(method, {})[reading] = cell
    for cells in out.values():
        by_seed = dict(zip(cells["printed"]["seeds"], cells["printed"]["maps"]))
        cells["paired"] = [m - by_seed[s] for s, m in zip(cells["normalised"]["seeds"], cells["normalised"]["maps"])]
        cells["gain"] = cells["normalised"]["map_mean"] - cells["printed"]["map_mean"]
    return out


def delicious_terms(screening: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """What the 50-epoch loss terms say, per reading over CLD and RLD: α·H, its ratio to the contrastive
    term, the contrastive term's range, and RLD's G."""
    def over(reading: str, f) -> list[float]:
        return [f(screening[m][reading]) for m in ("cld", "rld")]

    def ratio(c: dict[str, Any]) -> float:
        return c["alpha_h"] / c["contrastive"]

    return {"printed_alpha_h": sum(over("printed", lambda c: c["alpha_h"])) / 2,
            "printed_ratio": dict(zip(("cld", "rld"), over("printed", ratio))),
            "rld_g": max(c["g"] for r, c in screening["rld"].items() if r in READINGS),
            "normalised_alpha_h": over("normalised", lambda c: c["alpha_h"]),
            "normalised_contrastive": over("normalised", lambda c: c["contrastive"]),
            "h_alpha_h": sum(over("normalised-h", lambda c: c["alpha_h"])) / 2,
            "h_ratio": over("normalised-h", ratio)}


def delicious_table(screening: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The 50-epoch screening table (pandas' markdown: loss terms to 3 significant digits)."""
    rows = []
    for method in ("cld", "rld"):
        for reading in READINGS:
            c = screening[method][reading]
            rows.append({"method": NAMES[method], "reading": reading,
                         "val mAP per seed": ", ".join(f"{m:.4f}" for m in c["maps"]), "mean ± sd": c["map"],
                         "val BCE": round(c["bce_mean"], 4),
                         **{h: float(f"{c[p]:.3g}") for h, p in zip(PART_HEADERS, PARTS)}})
    return pd.DataFrame(rows).to_markdown(index=False)


def delicious_400(root: Path, screening: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The paper-budget confirmation per method: normalised val mAP/BCE of the snapshot's seeds 0–2
    (:func:`snapshot_400`), printed seed 0 (readings_val_400.csv), normalised − printed at seed 0 here and at
    50 epochs."""
    printed = read_csv(root, DELICIOUS_400).set_index("method")
    out = {}
    for method in ("cld", "rld"):
        normalised = snapshot_400(root, method)
        p = printed.loc[method]
        at50 = screening[method]
        out[method] = {**normalised, "printed_map": float(p["val_mAP"]), "printed_bce": float(p["val_bce"]),
                       "printed_commit": str(p["commit"])[:7],
                       "diff": normalised["maps"][0] - float(p["val_mAP"]), "diff_50": at50["paired"][0],
                       "map_50": at50["normalised"]["maps"][0], "printed_map_50": at50["printed"]["maps"][0]}
    return out


def delicious_400_table(rows: dict[str, dict[str, Any]]) -> str:
    """The paper-budget table: per method its normalised seeds, then printed seed 0 with the differences."""
    body = []
    for method, r in rows.items():
        body.append([NAMES[method], "normalised", ", ".join(f"{m:.4f}" for m in r["maps"]),
                     ", ".join(f"{b:.4f}" for b in r["bces"]), "", "", f"`{r['commit']}` (the snapshot)"])
        body.append([NAMES[method], "printed", f"{r['printed_map']:.4f}", f"{r['printed_bce']:.4f}",
                     f"**{signed(r['diff'])}**", signed(r["diff_50"]), f"`{r['printed_commit']}`"])
    return md(["method", "reading", "val mAP per seed", "val BCE", "normalised − printed (seed 0)",
               "at 50 epochs (seed 0)", "commit"], body)


# ------------------------------------------------------------------------------------ ASL
def asl_selection(root: Path) -> dict[str, dict[str, Any]]:
    """selection_val.csv's Yeast rows selected by val BCE: the official form (sum, focusing weights
    detached) and the plain derivative (weights not detached)."""
    frame = read_csv(root, ASL_SELECTION)
    frame = frame[frame["select"] == "val_loss"]
    pick = {"detached": frame[(frame["focal_weights"] == "detached") & (frame["reduction"] == "sum")],
            "through": frame[frame["focal_weights"] == "through"]}
    return {k: rows.iloc[0].to_dict() for k, rows in pick.items()}


def context(root: Path) -> dict[str, Any]:
    """What docs/method.md's blocks read, computed from :data:`SOURCES` under ``root``."""
    screening = delicious_screening(root)
    d400 = delicious_400(root, screening)
    return {
        "budget_table": budget_table(root), "budget_cost": budget_cost(root), "official": official_recipe(root),
        "mask0": finetuning_effect(root, "onepass-mask0"),
        "lrp01": finetuning_effect(root, "onepass-lrp01"), "parts": normalisation_parts(root),
        "norm_val": normalisation_validation(root), "delicious": screening,
        "delicious_table": delicious_table(screening), "delicious_terms": delicious_terms(screening),
        "delicious_400": d400, "delicious_400_table": delicious_400_table(d400), "asl": asl_selection(root),
        **precision_numbers.context(root),
        "signed": signed, "signed_list": signed_list, "sig": sig, "fmt": fmt, "dot3": dot3, "slash": slash,
    }
