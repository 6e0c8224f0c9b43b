"""``mulsupcon-ld datasets | download | prepare | info``: thin wrappers that print results."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from ..download import download_dataset, folder_origin, is_downloaded
from ..errors import UserError
from ..registry import DATASETS, get_dataset
from .image_prepare import extracted_source
from .prepare import compare_with_table1, prepare_dataset, prepare_synthetic
from .prepared import SPLITS, is_prepared, label_stats, load_prepared


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, disable_numparse=True)


def cmd_datasets(args: argparse.Namespace) -> int:
    """Registry plus what is downloaded/prepared here (existence checks only, no hashing)."""
    rows = []
    for spec in DATASETS.values():
        e = spec.expected
        downloaded = "yes" if is_downloaded(spec, args.raw_dir) else (
            "manual" if spec.manual_download else "no")
        prepared = [label for label, synth in (("yes", False), ("synthetic", True))
                    if is_prepared(spec.name, args.data_dir, synth)]
        rows.append([spec.name, spec.kind, spec.n_labels, spec.n_features or "-",
                     f"{e.n_train}/{e.n_test}", f"{e.mean_labels_train:.2f}/{e.mean_labels_test:.2f}",
                     spec.raw_format, downloaded, "+".join(prepared) or "no"])
    print(_table(rows, ["name", "kind", "labels", "features", "Table 1 train/test",
                        "mean L/S", "raw format", "downloaded", "prepared"]))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Find or fetch the raw files and say where each one is and how it was checked.

    For an image dataset, an official layout already extracted in the raw folder counts as
    downloaded when the archives are not all there (as for ``prepare``).
    """
    spec = get_dataset(args.name)
    if spec.kind == "image":
        found = extracted_source(spec, args.raw_dir)
        if found is not None:
            src = found.source
            print(f"{spec.name}: source {src.name} ({src.raw_format}), extracted official layout "
                  f"(no archive needed)")
            print(_table([["(extracted layout)", folder_origin(found.extracted_folder, args.raw_dir),
                           str(found.extracted_folder), "-",
                           "structure found; prepare checks it and records expected/found counts"]],
                         ["file", "found", "path", "sha256", "check"]))
            return 0
    resolved = download_dataset(spec.name, args.raw_dir)
    rows = []
    for f in resolved.files.values():
        check = (f"matches published {f.spec.checksum[0]}" if f.verified  # type: ignore[index]
                 else "no published checksum (sha256 recorded)")
        rows.append([f.spec.name, f.origin, str(f.path), f.sha256[:16] + "…", check])
    print(f"{resolved.dataset.name}: source {resolved.source.name} ({resolved.source.raw_format})")
    print(_table(rows, ["file", "found", "path", "sha256", "check"]))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Write the prepared format (or the synthetic stand-in) and summarise it."""
    if args.synthetic:
        ds = prepare_synthetic(args.name, args.data_dir)
    else:
        ds = prepare_dataset(args.name, args.raw_dir, args.data_dir)
    m = ds.meta
    print(f"prepared {ds.name}{' (synthetic)' if ds.synthetic else ''} in {ds.path}: "
          + ", ".join(f"{k} {m['splits'][k]}" for k in SPLITS))
    for note in m.get("notes", []):
        print(f"note: {note}")
    return 0


def _x_shape(ds, split: str) -> tuple[int, ...] | None:
    """Shape of the features (vector) or of the image rows; image stores may lack an ``x``."""
    if ds.kind == "vector":
        return ds.shape(split, "x")
    with np.load(ds.path / f"{split}.npz") as z:
        key = next((k for k in ("x", "index") if k in z.files), None)
    return ds.shape(split, key) if key else None


def dataset_info(name: str, data_dir: Any = None, synthetic: bool = False) -> dict[str, Any]:
    """Sizes and label statistics computed from the prepared arrays, next to Table 1's values."""
    spec = get_dataset(name)
    ds = load_prepared(spec.name, data_dir, synthetic)
    ys, n_features = {}, None
    for split in SPLITS:  # labels only: Bookmarks' features are ~0.75 GB
        y = ds.arrays(split, ("y",))["y"]
        x_shape = _x_shape(ds, split)
        if len(y) != ds.meta["splits"][split] or (x_shape and x_shape[0] != len(y)):
            raise UserError(f"{ds.path / split}.npz has {x_shape[0]} feature rows and {len(y)} "
                            f"label rows, meta.json says {ds.meta['splits'][split]}; re-run "
                            f"`mulsupcon-ld prepare {spec.name}`")
        ys[split] = y
        if ds.kind == "vector":
            n_features = int(x_shape[1])
    stats = label_stats(np.concatenate([ys["train"], ys["val"]]), ys["test"])
    n_labels = int(ys["train"].shape[1])
    e = spec.expected
    info: dict[str, Any] = {
        "name": spec.name,
        "kind": ds.kind,
        "synthetic": bool(ds.meta.get("synthetic", synthetic)),
        "path": str(ds.path),
        "n_train": int(len(ys["train"])),
        "n_val": int(len(ys["val"])),
        "n_test": int(len(ys["test"])),
        "n_train_total": stats["n_train_total"],
        "n_labels": n_labels,
        "mean_labels_train": round(stats["mean_labels_train"], 4),
        "mean_labels_test": round(stats["mean_labels_test"], 4),
        "n_unlabeled_train": int((np.concatenate([ys["train"], ys["val"]]).sum(1) == 0).sum()),
        "n_unlabeled_test": int((ys["test"].sum(1) == 0).sum()),
        "n_labels_unseen_train": int((ys["train"].sum(0) == 0).sum()),
        "n_labels_unseen_trainval": int((np.concatenate([ys["train"], ys["val"]]).sum(0) == 0).sum()),
        "expected_train": e.n_train,
        "expected_test": e.n_test,
        "expected_n_labels": spec.n_labels,
        "expected_mean_labels_train": e.mean_labels_train,
        "expected_mean_labels_test": e.mean_labels_test,
        "differences": compare_with_table1(spec, n_labels, stats["n_train_total"],
                                           stats["n_test"], stats["mean_labels_train"],
                                           stats["mean_labels_test"]),
        "val_split": ds.meta.get("val_split"),
        "test_split": ds.meta.get("test_split"),
        "source_files": ds.meta.get("source_files", {}),
        "notes": ds.meta.get("notes", []),
    }
    if ds.kind == "vector":
        info["n_features"] = n_features
        info["expected_n_features"] = spec.n_features
        if n_features != spec.n_features:
            info["differences"].append({"field": "n_features", "expected": spec.n_features,
                                        "actual": n_features, "note": "feature count differs"})
    return info


def cmd_info(args: argparse.Namespace) -> int:
    """Print :func:`dataset_info` as JSON (``--json``) or as a readable table."""
    name, synthetic = args.name, False
    if name.lower().endswith("-synthetic") and name.lower() not in DATASETS:
        name, synthetic = name[: -len("-synthetic")], True
    info = dataset_info(name, args.data_dir, synthetic)
    if args.json:
        json.dump(info, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    e_train, e_test = info["expected_train"], info["expected_test"]
    rows = [
        ["train (train + val)", f"{info['n_train_total']} ({info['n_train']} + {info['n_val']})",
         e_train],
        ["test", info["n_test"], e_test],
        ["labels", info["n_labels"], info["expected_n_labels"]],
        ["mean labels/sample, train", f"{info['mean_labels_train']:.4f}",
         f"{info['expected_mean_labels_train']:.2f}"],
        ["mean labels/sample, test", f"{info['mean_labels_test']:.4f}",
         f"{info['expected_mean_labels_test']:.2f}"],
        ["rows without a label, train + val / test", f"{info['n_unlabeled_train']} / {info['n_unlabeled_test']}",
         "—"],
        ["labels never in train (train + val)",
         f"{info['n_labels_unseen_train']} ({info['n_labels_unseen_trainval']})", "—"],
    ]
    if info["kind"] == "vector":
        rows.insert(3, ["features", info["n_features"], info["expected_n_features"]])
    title = f"{info['name']}{' (synthetic)' if info['synthetic'] else ''} — {info['path']}"
    print(title)
    print(_table([[str(c) for c in r] for r in rows], ["", "prepared", "Table 1"]))
    if info["differences"]:
        print("differences from Table 1:")
        for d in info["differences"]:
            print(f"  {d['field']}: expected {d['expected']}, got {d['actual']} ({d['note']})")
    else:
        print("no differences from Table 1")
    for note in info["notes"]:
        print(f"note: {note}")
    return 0


__all__ = ["cmd_datasets", "cmd_download", "cmd_info", "cmd_prepare", "dataset_info"]
