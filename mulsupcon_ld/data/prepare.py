"""Raw files → the prepared format: find or download, run the preparer, validate, write.

A preparer (:data:`mulsupcon_ld.data.preparers.PREPARERS`) turns a
:class:`~mulsupcon_ld.download.ResolvedSource` into a :class:`PreparedContent`; this module
validates it, builds ``meta.json`` (provenance and the comparison with Table 1) and writes the
directory atomically (``meta.json`` last). :func:`ensure_prepared` is what the experiment calls.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..atomic import write_json
from ..errors import UserError
from ..download import download_dataset, folder_origin
from ..registry import DatasetSpec, get_dataset
from .image_prepare import extracted_source
from .prepared import (META, SPLITS, PreparedContent, PreparedDataset, base_meta, dataset_lock,
                       label_stats,
                       is_prepared, load_prepared, prepared_dir, save_split, staging_dir)
from .preparers import preparer_for
from .synthetic import IMAGE_SIZE, name_seed, synthetic_arrays

MEAN_TOLERANCE = 0.005  # Table 1 prints two decimals: a mean "matches" when it rounds to it


# ---------------------------------------------------------------------------------------------
# validation, statistics, notes


def _validate(spec: DatasetSpec, content: PreparedContent) -> None:
    if set(content.splits) != set(SPLITS):
        raise UserError(f"{spec.name}: preparer produced splits {sorted(content.splits)}")
    if len(content.label_names) != spec.n_labels:
        raise UserError(f"{spec.name}: {len(content.label_names)} label names, Table 1 says "
                        f"{spec.n_labels} labels")
    for split, arrays in content.splits.items():
        x, y = arrays.get("x"), arrays.get("y")
        if y is None or y.ndim != 2 or y.shape[1] != spec.n_labels:
            raise UserError(f"{spec.name} {split}: labels have shape "
                            f"{None if y is None else y.shape}, expected [N, {spec.n_labels}]")
        if y.dtype != np.uint8 or not np.isin(y, (0, 1)).all():
            raise UserError(f"{spec.name} {split}: labels must be uint8 0/1")
        if x is not None and x.shape[0] != y.shape[0]:
            raise UserError(f"{spec.name} {split}: {x.shape[0]} feature rows, {y.shape[0]} label rows")
        if spec.kind == "vector":
            if x is None or x.ndim != 2 or x.shape[1] != spec.n_features:
                raise UserError(f"{spec.name} {split}: features have shape "
                                f"{None if x is None else x.shape}, expected [N, {spec.n_features}]")
            if x.dtype != np.float32:
                raise UserError(f"{spec.name} {split}: features must be float32, not {x.dtype}")
            if not np.isfinite(x).all():
                raise UserError(f"{spec.name} {split}: {int((~np.isfinite(x)).sum())} NaN/inf "
                                f"feature value(s)")
        if len(y) == 0:
            raise UserError(f"{spec.name} {split}: no rows")


def _row_digests(x: np.ndarray, y: np.ndarray | None = None) -> list[bytes]:
    out = []
    for i in range(len(x)):
        h = hashlib.blake2b(x[i].tobytes(), digest_size=16)
        if y is not None:
            h.update(y[i].tobytes())
        out.append(h.digest())
    return out


def _duplicate_stats(x_tv: np.ndarray, y_tv: np.ndarray, x_te: np.ndarray,
                     y_te: np.ndarray) -> dict[str, int]:
    """Repeated rows within train + val and within test, and test rows whose features also
    occur in train + val: facts worth knowing when row counts differ from the paper's."""
    stats = {}
    for part, x, y in (("train", x_tv, y_tv), ("test", x_te, y_te)):
        stats[f"n_duplicate_rows_{part}"] = len(x) - len(set(_row_digests(x, y)))
        stats[f"n_duplicate_features_{part}"] = len(x) - len(set(_row_digests(x)))
    seen = set(_row_digests(x_tv))
    stats["n_test_features_in_train"] = sum(d in seen for d in _row_digests(x_te))
    return stats


def compare_with_table1(spec: DatasetSpec, n_labels: int, n_trainval: int, n_test: int,
                        mean_train: float, mean_test: float) -> list[dict[str, Any]]:
    """Every way the prepared data differs from Table 1 (sizes exactly, means to 2 decimals)."""
    e = spec.expected
    diffs = []
    for field_, want, got in (("n_labels", spec.n_labels, n_labels),
                              ("n_train", e.n_train, n_trainval), ("n_test", e.n_test, n_test)):
        if want != got:
            what = " (train + val)" if field_ == "n_train" else ""
            diffs.append({"field": field_, "expected": want, "actual": got,
                          "note": f"{got - want:+d} rows{what} vs Table 1" if field_ != "n_labels"
                          else "label count differs from Table 1"})
    for field_, want, got in (("mean_labels_train", e.mean_labels_train, mean_train),
                              ("mean_labels_test", e.mean_labels_test, mean_test)):
        if abs(got - want) > MEAN_TOLERANCE + 1e-9:
            diffs.append({"field": field_, "expected": want, "actual": round(got, 4),
                          "note": "does not round to Table 1's two-decimal value"})
    return diffs


def _notes(spec: DatasetSpec, content: PreparedContent, synthetic: bool = False
           ) -> tuple[list[str], dict[str, Any]]:
    s = content.splits
    y_tv = np.concatenate([s["train"]["y"], s["val"]["y"]])
    y_te = s["test"]["y"]
    stats = label_stats(y_tv, y_te)
    stats["n_unlabeled_train"] = int((y_tv.sum(1) == 0).sum())
    stats["n_unlabeled_test"] = int((y_te.sum(1) == 0).sum())
    # label coverage: a label no training row carries cannot be learnt, and its test AP is undefined
    # or luck; counted on our train split, on train + val, and for the labels test has
    seen_train, seen_tv = s["train"]["y"].sum(0) > 0, y_tv.sum(0) > 0
    stats["n_labels_unseen_train"] = int((~seen_train).sum())
    stats["n_labels_unseen_trainval"] = int((~seen_tv).sum())
    stats["n_test_labels_unseen_trainval"] = int(((y_te.sum(0) > 0) & ~seen_tv).sum())
    notes = list(content.notes)
    if synthetic:
        return notes, stats
    notes.append(f"label coverage: {stats['n_labels_unseen_train']} of {y_tv.shape[1]} labels never occur in "
                 f"our train split ({stats['n_labels_unseen_trainval']} in train + val); "
                 f"{stats['n_test_labels_unseen_trainval']} labels present in test never occur in train + val")
    if spec.kind == "vector":
        stats.update(_duplicate_stats(np.concatenate([s["train"]["x"], s["val"]["x"]]), y_tv,
                                      s["test"]["x"], y_te))
    e = spec.expected
    for part, n, want, unl in (("train + val", stats["n_train_total"], e.n_train,
                                stats["n_unlabeled_train"]),
                               ("test", stats["n_test"], e.n_test, stats["n_unlabeled_test"])):
        if n != want:
            msg = f"{part} has {n} rows, Table 1 says {want} ({n - want:+d}); all source rows kept"
            if unl and n - unl == want:
                msg += (f"; Table 1's count equals ours minus the {unl} rows without any label, "
                        f"so the paper probably dropped them")
            elif unl:
                msg += f"; {unl} rows have no label"
            else:
                msg += "; no row lacks labels, so that is not the cause"
            notes.append(msg)
        elif unl:
            notes.append(f"{part}: {unl} rows have no label (kept)")
    if spec.kind == "vector":
        facts = [f"{stats[f'n_duplicate_rows_{p}']} repeated rows (features and labels) and "
                 f"{stats[f'n_duplicate_features_{p}']} repeated feature vectors in {p}"
                 for p in ("train", "test")
                 if stats[f"n_duplicate_rows_{p}"] or stats[f"n_duplicate_features_{p}"]]
        if stats["n_test_features_in_train"]:
            facts.append(f"{stats['n_test_features_in_train']} test feature vectors also occur "
                         f"in train + val")
        if facts:
            notes.append("kept as published: " + "; ".join(facts))
    if spec.notes:
        notes.append(spec.notes)
    return notes, stats


def _meta(spec: DatasetSpec, content: PreparedContent, *, synthetic: bool,
          source: dict[str, Any], source_files: dict[str, str]) -> dict[str, Any]:
    notes, stats = _notes(spec, content, synthetic)
    s = content.splits
    meta = base_meta(
        spec.name, spec.kind, content.label_names, {k: int(len(s[k]["y"])) for k in SPLITS}, synthetic=synthetic,
        title=spec.title,
        val_split=content.val_split,
        test_split=content.test_split,
        source=source,
        source_files=source_files,
        expected={"n_train": spec.expected.n_train, "n_test": spec.expected.n_test,
                  "n_labels": spec.n_labels,
                  "mean_labels_train": spec.expected.mean_labels_train,
                  "mean_labels_test": spec.expected.mean_labels_test,
                  "from": "paper, Table 1 (train = our train + val)"},
        stats=stats,
        differences=compare_with_table1(spec, spec.n_labels, stats["n_train_total"],
                                        stats["n_test"], stats["mean_labels_train"],
                                        stats["mean_labels_test"]),
        notes=notes,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        mulsupcon_ld_version=__version__,
    )
    if spec.kind == "vector":
        meta["n_features"] = spec.n_features
    meta.update(content.extra_meta)
    return meta


def _write(spec: DatasetSpec, final: Path, build: Callable[[Path], tuple[PreparedContent, dict]]
           ) -> None:
    # called with the dataset lock held: staging dirs left by a killed run are stale
    for stale in final.parent.glob(f".{final.name}.*.partial"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    with staging_dir(final) as tmp:
        content, meta_kw = build(tmp)
        _validate(spec, content)
        meta = _meta(spec, content, **meta_kw)
        for split in SPLITS:
            save_split(tmp, split, content.splits[split])
        write_json(tmp / META, meta)  # last: its presence means "done"


def _source_meta(resolved, raw_dir: str | os.PathLike | None,
                 content: PreparedContent) -> dict[str, Any]:
    """``meta.json`` → ``source``: the files used and how each was checked, or the extracted
    folder (checked by structure and counts, which the image preparer records in ``counts``)."""
    src = resolved.source
    meta: dict[str, Any] = {"name": src.name, "raw_format": src.raw_format,
                            "split_notes": src.split_notes, "notes": src.notes}
    if src.options:
        meta["registry_options"] = dict(src.options)
    folder = getattr(resolved, "extracted_folder", None)
    if folder is None:
        meta["files"] = {f.name: {"urls": list(f.urls), "origin": resolved.files[f.name].origin,
                                  "verified_against_published_checksum":
                                      resolved.files[f.name].verified}
                         for f in src.files}
        return meta
    meta["extracted_folder"] = {
        "path": str(folder),
        "origin": folder_origin(folder, raw_dir),
        "checked": "structure of the official layout and expected vs found counts (meta.json "
                   "counts); extracted files have no published checksum",
        # the folders actually read (as found by the format reader) and what was found there
        "read": sorted(content.extra_meta.get("extracted_folders", {})),
        "counts": content.extra_meta.get("counts", {}),
        "instead_of": {f.name: {"urls": list(f.urls)} for f in src.files},
    }
    return meta


# ---------------------------------------------------------------------------------------------
# public entry points


def prepare_dataset(name: str, raw_dir: str | os.PathLike | None = None,
                    data_dir: str | os.PathLike | None = None, *, source: str | None = None,
                    quiet: bool = False, _locked: bool = False) -> PreparedDataset:
    """Download (or find) the raw files of ``name`` and write ``DATA_DIR/<name>/`` atomically.

    For an image dataset, an official layout already extracted in the raw folder (pre-staged,
    then cache; see :func:`mulsupcon_ld.data.image_prepare.extracted_source`) is used when the archives
    are not all there; ``meta.json`` → ``source`` then names the folder instead of the files.
    An existing prepared directory is replaced only once the new one is complete.
    """
    spec = get_dataset(name)
    final = prepared_dir(spec.name, data_dir)
    resolved = None
    if spec.kind == "image" and source in (None, spec.primary.name):
        resolved = extracted_source(spec, raw_dir)
        if resolved is not None and not quiet:
            print(f"{spec.name}: using the extracted layout in {resolved.extracted_folder}",
                  file=sys.stderr)
    if resolved is None:
        resolved = download_dataset(spec.name, raw_dir, source=source, quiet=quiet)
    preparer = preparer_for(spec, resolved.source.raw_format)

    def build(tmp: Path):
        content = preparer(spec, resolved, tmp)
        return content, {"synthetic": False, "source": _source_meta(resolved, raw_dir, content),
                         "source_files": resolved.source_files()}

    if _locked:
        _write(spec, final, build)
    else:
        with dataset_lock(final):
            _write(spec, final, build)
    return load_prepared(spec.name, data_dir)


def synthetic_content(spec: DatasetSpec) -> PreparedContent:
    """The stand-in of ``spec`` as a :class:`PreparedContent` (see :mod:`.synthetic`)."""
    seed = name_seed(spec.name)
    splits = synthetic_arrays(spec.kind, spec.n_labels, spec.expected.mean_labels_train,
                              spec.n_features, seed)
    names = list(spec.label_names or [f"label_{i}" for i in range(spec.n_labels)])
    extra = {}
    if spec.kind == "image":
        extra["image"] = {"key": "x", "layout": "NCHW", "dtype": "uint8",
                          "shape": [3, IMAGE_SIZE, IMAGE_SIZE]}
    return PreparedContent(
        splits, names,
        val_split={"method": "synthetic", "seed": seed},
        test_split={"method": "synthetic", "seed": seed},
        notes=[f"SYNTHETIC stand-in, not the real data: {spec.n_labels} labels"
               + (f", {spec.n_features} features" if spec.kind == "vector" else ", 3x32x32 images")
               + f", ~{spec.expected.mean_labels_train} labels per sample (Table 1), seed {seed}"
               " (CRC32 of the name); labels are thresholded noisy linear functions of 8 latent "
               "factors that also generate the features"],
        extra_meta=extra)


def prepare_synthetic(name: str, data_dir: str | os.PathLike | None = None, *,
                      _locked: bool = False) -> PreparedDataset:
    """Write ``DATA_DIR/<name>-synthetic/``: a small deterministic stand-in of the same shape."""
    spec = get_dataset(name)
    final = prepared_dir(spec.name, data_dir, synthetic=True)

    def build(tmp: Path):
        return synthetic_content(spec), {
            "synthetic": True, "source": {"name": "synthetic", "raw_format": "synthetic",
                                          "generator": "mulsupcon_ld.data.synthetic"},
            "source_files": {}}

    if _locked:
        _write(spec, final, build)
    else:
        with dataset_lock(final):
            _write(spec, final, build)
    return load_prepared(spec.name, data_dir, synthetic=True)


def ensure_prepared(name: str | DatasetSpec, raw_dir: str | os.PathLike | None = None,
                    data_dir: str | os.PathLike | None = None, synthetic: bool = False,
                    quiet: bool = False) -> PreparedDataset:
    """Load the prepared dataset, downloading and preparing it first when it is missing."""
    if is_prepared(name, data_dir, synthetic):
        return load_prepared(name, data_dir, synthetic)
    with dataset_lock(prepared_dir(name, data_dir, synthetic)):
        if is_prepared(name, data_dir, synthetic):  # another process finished it meanwhile
            return load_prepared(name, data_dir, synthetic)
        if synthetic:
            return prepare_synthetic(name, data_dir, _locked=True)
        return prepare_dataset(name, raw_dir, data_dir, quiet=quiet, _locked=True)
