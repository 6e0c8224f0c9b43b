"""The preparers: raw files (a resolved download) → :class:`PreparedContent`, one per raw format.

:data:`PREPARERS` is the one table from the registry's ``raw_format`` to its preparer; add a
format by adding a row here (and its reader under ``data/``). ``tmp`` is the staging directory:
a preparer may write extra files there (the image store), moved into place with the npz files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..download import ResolvedSource
from ..errors import UserError
from ..registry import DatasetSpec
from .arff import read_mulan
from .hdf5 import read_mulsupcon_hdf5
from .image_prepare import prepare_from_resolved as _prep_image
from .prepared import SPLITS, PreparedContent, seeded_split

VAL_SEED = 0
VAL_FRACTION = 0.2
TEST_SEED = 0

Preparer = Callable[[DatasetSpec, ResolvedSource, Path], PreparedContent]


# ---------------------------------------------------------------------------------------------
# splits


def _seeded_val(x: np.ndarray, y: np.ndarray, rows: np.ndarray, of: str
                ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    keep, held = seeded_split(len(x), fraction=VAL_FRACTION, seed=VAL_SEED)
    splits = {"train": {"x": x[keep], "y": y[keep], "source_row": rows[keep]},
              "val": {"x": x[held], "y": y[held], "source_row": rows[held]}}
    return splits, {"method": "seeded-random", "seed": VAL_SEED, "fraction": VAL_FRACTION,
                    "of": of, "n_val": int(len(held)),
                    "rule": "numpy.random.default_rng(seed).permutation(n)[:round(fraction*n)]"}


def _reorder_labels(spec: DatasetSpec, y: np.ndarray, names: list[str], where: str
                    ) -> tuple[np.ndarray, list[str]]:
    """Put label columns in the registry's order when it has one (same order for every source)."""
    if spec.label_names is None:
        return y, names
    if sorted(spec.label_names) != sorted(names):
        raise UserError(f"{where}: labels {names} are not the expected {list(spec.label_names)}")
    order = [names.index(n) for n in spec.label_names]
    return y[:, order], list(spec.label_names)


# ---------------------------------------------------------------------------------------------
# preparers for the vector formats


def _prep_mulsupcon_hdf5(spec: DatasetSpec, resolved: ResolvedSource, tmp: Path) -> PreparedContent:
    src = resolved.source
    splits = {}
    for split in SPLITS:
        f = src.file(split)
        x, y = read_mulsupcon_hdf5(resolved.path(f.name), spec.n_features, spec.n_labels)
        splits[split] = {"x": x, "y": y, "source_row": np.arange(len(x), dtype=np.int64)}
    names = list(spec.label_names or [f"label_{i}" for i in range(spec.n_labels)])
    return PreparedContent(
        splits, names,
        val_split={"method": "source", "file": src.file("val").name,
                   "note": "MulSupCon's official train/val split of Mulan's train set"},
        test_split={"method": "source", "file": src.file("test").name})


def _prep_mulan_arff(spec: DatasetSpec, resolved: ResolvedSource, tmp: Path) -> PreparedContent:
    src = resolved.source
    xml = resolved.path(src.file("labels").name)
    ftrain, ftest = src.file("train"), src.file("test")
    xtr, ytr, names = read_mulan(resolved.path(ftrain.name), xml)
    xte, yte, names_te = read_mulan(resolved.path(ftest.name), xml)
    ytr, names = _reorder_labels(spec, ytr, names, ftrain.name)
    yte, _ = _reorder_labels(spec, yte, names_te, ftest.name)
    splits, val_split = _seeded_val(xtr, ytr, np.arange(len(xtr), dtype=np.int64), ftrain.name)
    splits["test"] = {"x": xte, "y": yte, "source_row": np.arange(len(xte), dtype=np.int64)}
    return PreparedContent(splits, names, val_split,
                           test_split={"method": "source", "file": ftest.name})


def _prep_mulan_single(spec: DatasetSpec, resolved: ResolvedSource, tmp: Path) -> PreparedContent:
    src = resolved.source
    fall = src.file("all")
    x, y, names = read_mulan(resolved.path(fall.name), resolved.path(src.file("labels").name))
    y, names = _reorder_labels(spec, y, names, fall.name)
    n_test = spec.expected.n_test
    pool, test = seeded_split(len(x), count=n_test, seed=TEST_SEED)
    splits, val_split = _seeded_val(x[pool], y[pool], pool.astype(np.int64), fall.name)
    val_split["of"] = f"{fall.name} minus the test rows"
    splits["test"] = {"x": x[test], "y": y[test], "source_row": test.astype(np.int64)}
    test_split = {"method": "seeded-random", "seed": TEST_SEED, "count": int(n_test),
                  "of": fall.name, "official": False,
                  "rule": "numpy.random.default_rng(seed).permutation(n)[:count]",
                  "note": "no official split exists; count taken from Table 1"}
    return PreparedContent(splits, names, val_split, test_split,
                           notes=[f"{spec.title} has no official train/test split: test = "
                                  f"{n_test} rows drawn with seed {TEST_SEED} (not the paper's "
                                  f"split, which is unpublished); source_row in each npz gives "
                                  f"the row of {fall.name}"])


# raw_format (registry) → preparer
PREPARERS: dict[str, Preparer] = {
    "mulsupcon-hdf5": _prep_mulsupcon_hdf5,
    "mulan-arff": _prep_mulan_arff,
    "mulan-arff-single": _prep_mulan_single,
    "voc2007-tar": _prep_image,
    "coco2014-zip": _prep_image,
    "mirflickr25k-zip": _prep_image,
    "nuswide-manual": _prep_image,
}


def preparer_for(spec: DatasetSpec, raw_format: str) -> Preparer:
    if raw_format not in PREPARERS:
        raise UserError(f"preparing {spec.name} (raw format {raw_format}) is not implemented yet; "
                        f"`mulsupcon-ld prepare {spec.name} --synthetic` gives a stand-in")
    return PREPARERS[raw_format]
