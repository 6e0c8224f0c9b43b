"""Image datasets: raw files → image store + split arrays (the image preparer), and synthetic images.

``prepare_image_dataset(spec, raw_folder, out_dir, seed=0, **options) -> dict``
    Reads the official files of PASCAL VOC 2007, MS-COCO 2014, MIRFLICKR-25k or NUS-WIDE from
    ``raw_folder`` (archives as downloaded, or their extracted layout), writes the image store and
    ``train/val/test.npz`` into ``out_dir`` and returns the ``meta`` dict (the caller writes
    ``meta.json``). Options: ``difficult`` (pascal), ``include_crowd`` (coco), ``labels`` and
    ``split`` (nuswide), ``val_fraction`` (all, default 0.2), ``short_side`` (256), ``quality`` (90),
    ``workers``; unknown options are an error. Defaults come from the registry entry's
    ``Source.options`` (e.g. pascal's ``difficult="negative"``, nuswide21's ``labels="21"``);
    keyword arguments override them.
``prepare_from_resolved(spec, resolved, tmp)``
    The preparer of every image raw format (see :data:`mulsupcon_ld.data.preparers.PREPARERS`).
``write_image_dataset(out_dir, name, label_names, splits, ...) -> dict``
    Store + npz files for in-memory images (synthetic stand-ins, benchmarks).

See docs/images.md for sources, label conventions, split choices and the store format.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import save_npz
from ..download import ResolvedSource, file_digests
from ..errors import UserError
from ..paths import download_cache_dir, raw_dir as resolve_raw_dir
from ..registry import DatasetSpec
from .image_store import (DEFAULT_QUALITY, DEFAULT_SHORT_SIDE, STORE_BLOB, STORE_FORMAT, STORE_OFFSETS,
                          write_store, write_store_arrays)
from .prepared import SPLITS, PreparedContent, base_meta, label_stats, seeded_split
from .reader_types import Collected
from .readers import FORMAT_OPTIONS, has_image_layout, image_format, reader

DEFAULT_VAL_FRACTION = 0.2  # as the vector datasets (data/preparers.py VAL_FRACTION)
VAL_SEED_STREAM = 7000
_COMMON_OPTIONS = {"val_fraction": DEFAULT_VAL_FRACTION, "short_side": DEFAULT_SHORT_SIDE,
                   "quality": DEFAULT_QUALITY, "workers": None}


def _expected(spec: DatasetSpec) -> dict[str, Any]:
    return asdict(spec.expected)


@dataclass
class ImageContent:
    """Split arrays of a prepared image dataset (store already written) and what to record."""

    splits: dict[str, dict[str, np.ndarray]]   # split -> {"y", "index", "x" (= index), "ids"}
    label_names: list[str]
    val_split: dict[str, Any]
    test_split: dict[str, Any]
    notes: list[str]
    extra_meta: dict[str, Any]
    source_files: dict[str, str]


def _options(spec: DatasetSpec, fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = {**_COMMON_OPTIONS, **FORMAT_OPTIONS[fmt]}
    given = dict(spec.primary.options or {})   # the registry's defaults for this source
    given.update({k: v for k, v in options.items() if v is not None})
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for {getattr(spec, 'name', fmt)}; "
                        f"known: {', '.join(sorted(allowed))}")
    return {**allowed, **given}


def _counts(collected: Collected, res: Any, ok_tr: np.ndarray, ok_te: np.ndarray) -> dict[str, Any]:
    """The reader's counts plus the unreadable images and the images found per split."""
    counts = dict(collected.counts)
    counts["unreadable_images"] = {"count": len(res.failures),
                                   "first": [f"{m}: {e}" for m, e in res.failures[:20]]}
    for split, ok in (("train", ok_tr), ("test", ok_te)):
        c = dict(counts.get(split, {}))
        c["found"] = int(ok.sum())
        counts[split] = c
    return counts


def build_image_content(spec: Any, raw_folder: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0,
                        **options: Any) -> ImageContent:
    """Read the raw files, write the image store into ``out_dir``, return the split arrays.

    The npz files are not written here (see :func:`prepare_image_dataset` and :data:`PREPARERS`).
    """
    raw_folder, out_dir = Path(raw_folder), Path(out_dir)
    fmt = image_format(spec)
    opts = _options(spec, fmt, options)
    fmt_opts = {k: opts[k] for k in FORMAT_OPTIONS[fmt]}
    collected: Collected = reader(fmt).collect(raw_folder, seed=seed, **fmt_opts)

    notes = list(collected.notes)
    n_labels_spec = getattr(spec, "n_labels", None)
    if n_labels_spec is not None and len(collected.label_names) != int(n_labels_spec):
        notes.append(f"{len(collected.label_names)} labels prepared; the registry (Table 1) says {n_labels_spec}")

    # one store for all images: train first, then test
    tr, te = collected.splits["train"], collected.splits["test"]
    items = tr.items + te.items
    out_dir.mkdir(parents=True, exist_ok=True)
    name = str(getattr(spec, "name", fmt))
    print(f"{name}: resizing {len(items)} images (shorter side {opts['short_side']}) into the image store",
          flush=True)
    try:
        res = write_store(out_dir, collected.sources, items, short_side=int(opts["short_side"]),
                          quality=int(opts["quality"]), workers=opts["workers"], label=name)
    finally:
        for s in collected.sources:
            s.close()
    row = np.cumsum(res.ok) - 1                     # item → store row (valid where ok)
    ok_tr, ok_te = res.ok[: len(tr.items)], res.ok[len(tr.items):]
    row_tr, row_te = row[: len(tr.items)][ok_tr], row[len(tr.items):][ok_te]
    y_tr, y_te = tr.y[ok_tr], te.y[ok_te]
    ids_tr = np.asarray([i for i, k in zip(tr.ids, ok_tr) if k], dtype=str)
    ids_te = np.asarray([i for i, k in zip(te.ids, ok_te) if k], dtype=str)
    if len(row_tr) == 0 or len(row_te) == 0:
        raise UserError(f"{name}: no readable training or test image in {raw_folder}; see meta counts")

    keep, val = seeded_split(len(row_tr), fraction=float(opts["val_fraction"]), seed=seed, stream=VAL_SEED_STREAM)
    C = len(collected.label_names)

    def arrays(y, idx, ids):
        idx = idx.astype(np.int64)
        return {"y": np.ascontiguousarray(y, dtype=np.uint8).reshape(-1, C), "index": idx, "x": idx, "ids": ids}

    splits = {"train": arrays(y_tr[keep], row_tr[keep], ids_tr[keep]),
              "val": arrays(y_tr[val], row_tr[val], ids_tr[val]),
              "test": arrays(y_te, row_te, ids_te)}

    counts = _counts(collected, res, ok_tr, ok_te)
    if res.failures:
        notes.append(f"{len(res.failures)} images could not be decoded and were dropped (see counts)")
    source_files: dict[str, str] = {}
    for s in collected.sources:
        if s.kind == "dir":
            source_files[s.path.as_posix() + "/"] = "extracted folder (checked by structure and counts)"
    val_split = {"method": "seeded-random", "of": "train", "fraction": float(opts["val_fraction"]),
                 "seed": int(seed), "seed_stream": [int(seed), VAL_SEED_STREAM], "n_val": int(len(val)),
                 "rule": "numpy.random.default_rng([seed, 7000]).permutation(n_train)"
                         "[:round(fraction*n_train)] → val"}
    extra = {
        "label_order": collected.label_order,
        "counts": counts,
        "options": {**collected.options, "val_fraction": float(opts["val_fraction"])},
        "image": {"key": "index", "store": STORE_BLOB, "offsets": STORE_OFFSETS, "format": STORE_FORMAT,
                  "n_images": int(res.n_images), "bytes": int(res.bytes_total),
                  "short_side": int(opts["short_side"]), "jpeg_quality": int(opts["quality"]),
                  "npz_keys": {"y": "uint8 [N, C]", "index": "int64 [N] store row",
                               "x": "int64 [N], = index (for generic (x, y) readers)",
                               "ids": "str [N] original id"}},
        **collected.extra,
    }
    return ImageContent(splits, list(collected.label_names), val_split, collected.test_split, notes, extra,
                        source_files)


def prepare_image_dataset(spec: Any, raw_folder: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0,
                          *, source_files: dict[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """Raw files of an image dataset → ``out_dir/{images.bin, images_offsets.npy, train,val,test.npz}``.

    Standalone entry point (the CLI goes through :data:`PREPARERS` and ``data.prepare``).
    ``source_files`` (file name → sha256, e.g. ``ResolvedSource.source_files()``) is recorded as
    is; without it the sha256 of every archive read is computed. Returns the meta dict; writing
    ``meta.json`` (last, atomically) is the caller's job.
    """
    out_dir = Path(out_dir)
    content = build_image_content(spec, raw_folder, out_dir, seed, **options)
    for split, arrays in content.splits.items():
        save_npz(out_dir / f"{split}.npz", **arrays)
    if source_files is None:
        source_files = dict(content.source_files)
        for p in sorted(Path(raw_folder).iterdir()) if Path(raw_folder).is_dir() else []:
            if p.is_file() and p.suffix in (".zip", ".tar"):
                source_files[p.name] = file_digests(p)["sha256"]
    s = content.splits
    y_tv = np.concatenate([s["train"]["y"], s["val"]["y"]])
    return base_meta(spec.name, "image", content.label_names, {k: int(len(v["y"])) for k, v in s.items()},
                     synthetic=False, val_split=content.val_split, test_split=content.test_split,
                     source_files=dict(source_files), expected=_expected(spec),
                     stats=label_stats(y_tv, s["test"]["y"]), notes=content.notes, **content.extra_meta)


# ------------------------------------------------------------------------------------------
# for data/prepare.py and the download command
# ------------------------------------------------------------------------------------------
def extracted_source(spec: Any, raw_dir: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None):
    """A ``download.ResolvedSource`` without files for an extracted official layout, or None.

    Looks in ``RAW/<folder>/`` (pre-staged) then ``CACHE/<folder>/``, ``<folder>`` being the
    dataset's raw folder (``raw_folder_name``: its name, or the dataset a variant derives from).
    Archives take precedence: when all files of the source are present, returns None (the normal
    download path verifies them). The folder is in the attribute ``extracted_folder``.
    """
    raw = resolve_raw_dir(raw_dir)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else download_cache_dir()
    folder = getattr(spec, "raw_folder_name", None) or spec.name
    for root in ([raw / folder] if raw is not None else []) + [cache / folder]:
        if all((root / f.name).is_file() for f in spec.primary.files):
            return None
        if has_image_layout(spec, root):
            return ResolvedSource(spec, spec.primary, extracted_folder=root)
    return None


def _raw_folder_of(resolved: Any, tmp: Path) -> tuple[Path, Path | None]:
    """The folder to read: the extracted layout, the archives' folder, or a folder of links to them."""
    folder = getattr(resolved, "extracted_folder", None)
    if folder is not None:
        return Path(folder), None
    paths = [Path(f.path) for f in resolved.files.values()]
    parents = {p.parent.resolve() for p in paths}
    if len(parents) == 1:
        return paths[0].parent, None
    links = tmp / ".raw-links"          # files split between pre-staged dir and cache
    links.mkdir(parents=True, exist_ok=True)
    for p in paths:
        (links / p.name).symlink_to(p.resolve())
    return links, links


def prepare_from_resolved(spec: DatasetSpec, resolved: ResolvedSource, tmp: Path) -> PreparedContent:
    """The image preparer: store into the staging dir ``tmp``, splits back as PreparedContent."""
    folder, cleanup = _raw_folder_of(resolved, Path(tmp))
    try:
        content = build_image_content(spec, folder, tmp, seed=0)
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
    extra = dict(content.extra_meta)
    if content.source_files:
        extra["extracted_folders"] = content.source_files
    return PreparedContent(content.splits, content.label_names, content.val_split, content.test_split,
                           notes=content.notes, extra_meta=extra)



def write_image_dataset(out_dir: str | os.PathLike, name: str, label_names: Sequence[str],
                        splits: dict[str, tuple[Sequence[np.ndarray] | np.ndarray, np.ndarray]], *,
                        synthetic: bool = True, quality: int = DEFAULT_QUALITY,
                        extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write in-memory uint8 ``[H, W, 3]`` images (e.g. synthetic ones) as a prepared image dataset.

    ``splits`` maps ``train``/``val``/``test`` to ``(images, y)``. Returns meta (caller writes meta.json).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    order = [s for s in SPLITS if s in splits]
    sizes = {s: len(splits[s][1]) for s in order}

    def all_images():
        for s in order:
            yield from splits[s][0]

    n = write_store_arrays(out_dir, all_images(), quality=quality)
    start = 0
    px = None
    for s in order:
        imgs, y = splits[s]
        if px is None and len(imgs):
            px = int(min(np.asarray(imgs[0]).shape[:2]))
        idx = np.arange(start, start + sizes[s], dtype=np.int64)
        start += sizes[s]
        save_npz(out_dir / f"{s}.npz", y=np.asarray(y, dtype=np.uint8).reshape(sizes[s], len(label_names)),
                  index=idx, x=idx, ids=np.asarray([f"{s}{i}" for i in range(sizes[s])], dtype=str))
    return base_meta(name, "image", list(label_names), sizes, synthetic=synthetic, n_features=None,
                     image_size=px, **{"image_store": {"format": STORE_FORMAT, "blob": STORE_BLOB,
                                                       "offsets": STORE_OFFSETS, "n_images": int(n),
                                                       "short_side": px, "jpeg_quality": int(quality)},
                                       **(extra_meta or {})})
