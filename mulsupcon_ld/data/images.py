"""Image datasets: raw files → prepared image store, and the DataLoader that feeds training.

Public API
----------
``prepare_image_dataset(spec, raw_folder, out_dir, seed=0, **options) -> dict``
    Reads the official files of PASCAL VOC 2007, MS-COCO 2014, MIRFLICKR-25k or NUS-WIDE from
    ``raw_folder`` (archives as downloaded, or their extracted layout), writes the image store and
    ``train/val/test.npz`` into ``out_dir`` and returns the ``meta`` dict (the caller writes
    ``meta.json``). Options: ``difficult`` (pascal), ``include_crowd`` (coco), ``labels`` and
    ``split`` (nuswide), ``val_fraction`` (all, default 0.2), ``short_side`` (256), ``quality`` (90),
    ``workers``; unknown options are an error. Defaults come from the registry entry's
    ``options`` (``Source.options``, e.g. pascal's ``difficult="negative"``, nuswide21's
    ``labels="21"``); keyword arguments override them.
``has_image_layout(spec, folder) -> bool``
    True when ``folder`` holds a dataset's extracted layout (for the download step: such a folder
    needs no archive).
``write_image_dataset(out_dir, name, label_names, splits, ...) -> dict``
    Store + npz files for in-memory images (synthetic stand-ins).
``make_batches(prepared, split, settings, train, seed, device)``
    One epoch of batches: pretraining ``(view1, view2, y)`` (two SimCLR views), fine-tuning
    ``(x, y)`` (one SimCLR view), evaluation ``(x, y)`` (resize + centre crop, stored order).

See docs/images.md for sources, label conventions, split choices and the store format.
"""

from __future__ import annotations

import collections
import math
import os
import threading
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import UserError
from .image_store import (DEFAULT_QUALITY, DEFAULT_SHORT_SIDE, STORE_BLOB, STORE_FORMAT, STORE_OFFSETS,
                          ImageStore, Source, write_store, write_store_arrays)

FORMAT_VERSION = 1
DEFAULT_VAL_FRACTION = 0.2  # as the vector datasets (data/prepare.py VAL_FRACTION)
VAL_SEED_STREAM = 7000

# raw_format prefix (registry) → module with collect(); the registry names them e.g. "voc2007-tar"
_FORMATS = {"voc2007": "voc", "coco2014": "coco", "mirflickr25k": "mirflickr", "nuswide": "nuswide"}
_BY_NAME = {"pascal": "voc", "voc": "voc", "coco": "coco", "mscoco": "coco", "mirflickr": "mirflickr",
            "nuswide": "nuswide"}
_FORMAT_OPTIONS = {
    "voc": {"difficult": "negative"},
    "coco": {"include_crowd": True},
    "mirflickr": {"train_fraction": 0.8},
    "nuswide": {"labels": "81", "split": "paper"},
}
_COMMON_OPTIONS = {"val_fraction": DEFAULT_VAL_FRACTION, "short_side": DEFAULT_SHORT_SIDE,
                   "quality": DEFAULT_QUALITY, "workers": None}


@dataclass
class SplitItems:
    """One split as found in the raw files: image members, labels, original ids."""

    items: list[tuple[int, str]]   # (index into Collected.sources, member name)
    y: np.ndarray                  # uint8 [N, C]
    ids: list[str]


@dataclass
class Collected:
    """What a format reader found: labels per split, where the images are, what to record."""

    label_names: list[str]
    splits: dict[str, SplitItems]  # "train" and "test"
    sources: list[Source]
    counts: dict[str, Any]
    notes: list[str]
    options: dict[str, Any]
    test_split: dict[str, Any]
    label_order: str
    extra: dict[str, Any] = field(default_factory=dict)


def image_format(spec: Any) -> str:
    """``voc`` / ``coco`` / ``mirflickr`` / ``nuswide`` for a registry entry (raw_format, else name)."""
    raw_format = str(getattr(spec, "raw_format", "") or "").lower()
    for prefix, mod in _FORMATS.items():
        if raw_format.startswith(prefix):
            return mod
    name = str(getattr(spec, "name", spec)).lower().replace("-", "").replace("_", "")
    if name in _BY_NAME:
        return _BY_NAME[name]
    raise UserError(f"no image reader for dataset {getattr(spec, 'name', spec)!r} "
                    f"(raw_format {raw_format!r}); known formats: {', '.join(_FORMATS)}")


def _module(fmt: str):
    import importlib

    return importlib.import_module(f"{__package__}.{fmt}")


def has_image_layout(spec: Any, folder: str | os.PathLike) -> bool:
    """Cheap check that ``folder`` holds an extracted official layout of ``spec`` (no archives needed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    fmt = image_format(spec)
    if fmt == "voc":
        from .voc import find_sources

        return len(find_sources(folder)[0]) == 2
    if fmt == "coco":
        return all(((folder / d).is_dir() or (folder / "images" / d).is_dir()) for d in ("train2014", "val2014")) \
            and all(any((folder / c).is_file() for c in (f"annotations/{j}", j))
                    for j in ("instances_train2014.json", "instances_val2014.json"))
    if fmt == "mirflickr":
        imgs = any(any((folder / d).glob("im*.jpg")) for d in ("mirflickr", "mirflickr25k", "images", ".")
                   if (folder / d).is_dir())
        anns = any((c / "sky.txt").is_file() for c in [folder, *folder.glob("*"), *folder.glob("*/*")] if c.is_dir())
        return imgs and anns
    # nuswide is always a manual layout
    return any(folder.glob("*/AllLabels")) or (folder / "Groundtruth.zip").is_file()


# ------------------------------------------------------------------------------------------
# preparation
# ------------------------------------------------------------------------------------------
def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy must not append ".npz" to the temp name
            np.savez(fh, **arrays)


def _expected(spec: Any) -> dict[str, Any]:
    exp = getattr(spec, "expected", None)
    if exp is None:
        return {}
    return asdict(exp) if is_dataclass(exp) else dict(exp)


def carve_val(n_train: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the train list kept for train and moved to val (both sorted), seeded."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), not {val_fraction}")
    n_val = int(round(val_fraction * n_train))
    perm = np.random.default_rng([int(seed), VAL_SEED_STREAM]).permutation(n_train)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _label_stats(y: np.ndarray) -> dict[str, float]:
    return {"n": int(len(y)), "mean_labels": round(float(y.sum(axis=1).mean()), 4) if len(y) else 0.0}


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


def _options(spec: Any, fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = {**_COMMON_OPTIONS, **_FORMAT_OPTIONS[fmt]}
    given = {}
    for holder in (getattr(spec, "options", None), getattr(getattr(spec, "primary", None), "options", None)):
        if holder:
            given.update(dict(holder))
    given.update({k: v for k, v in options.items() if v is not None})
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for {getattr(spec, 'name', fmt)}; "
                        f"known: {', '.join(sorted(allowed))}")
    return {**allowed, **given}


def build_image_content(spec: Any, raw_folder: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0,
                        **options: Any) -> ImageContent:
    """Read the raw files, write the image store into ``out_dir``, return the split arrays.

    The npz files are not written here (see :func:`prepare_image_dataset` and :data:`PREPARERS`).
    """
    raw_folder, out_dir = Path(raw_folder), Path(out_dir)
    fmt = image_format(spec)
    opts = _options(spec, fmt, options)
    fmt_opts = {k: opts[k] for k in _FORMAT_OPTIONS[fmt]}
    collected: Collected = _module(fmt).collect(raw_folder, seed=seed, **fmt_opts)

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

    keep, val = carve_val(len(row_tr), float(opts["val_fraction"]), seed)
    C = len(collected.label_names)

    def arrays(y, idx, ids):
        idx = idx.astype(np.int64)
        return {"y": np.ascontiguousarray(y, dtype=np.uint8).reshape(-1, C), "index": idx, "x": idx, "ids": ids}

    splits = {"train": arrays(y_tr[keep], row_tr[keep], ids_tr[keep]),
              "val": arrays(y_tr[val], row_tr[val], ids_tr[val]),
              "test": arrays(y_te, row_te, ids_te)}

    counts = dict(collected.counts)
    counts["unreadable_images"] = {"count": len(res.failures),
                                   "first": [f"{m}: {e}" for m, e in res.failures[:20]]}
    for split, ok in (("train", ok_tr), ("test", ok_te)):
        c = dict(counts.get(split, {}))
        c["found"] = int(ok.sum())
        counts[split] = c
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
        _save_npz(out_dir / f"{split}.npz", **arrays)
    if source_files is None:
        from ..download import file_digests

        source_files = dict(content.source_files)
        for p in sorted(Path(raw_folder).iterdir()) if Path(raw_folder).is_dir() else []:
            if p.is_file() and p.suffix in (".zip", ".tar"):
                source_files[p.name] = file_digests(p)["sha256"]
    s = content.splits
    y_tv = np.concatenate([s["train"]["y"], s["val"]["y"]])
    meta = {
        "format_version": FORMAT_VERSION,
        "name": str(getattr(spec, "name", "")),
        "kind": "image",
        "n_labels": len(content.label_names),
        "label_names": content.label_names,
        "splits": {k: int(len(v["y"])) for k, v in s.items()},
        "val_split": content.val_split,
        "test_split": content.test_split,
        "source_files": dict(source_files),
        "synthetic": False,
        "expected": _expected(spec),
        "stats": {"n_train_total": int(len(y_tv)), "n_test": int(len(s["test"]["y"])),
                  "mean_labels_train": float(y_tv.sum(1).mean()),
                  "mean_labels_test": float(s["test"]["y"].sum(1).mean())},
        "notes": content.notes,
        **content.extra_meta,
    }
    return meta


# ------------------------------------------------------------------------------------------
# hooks for data/prepare.py and download
# ------------------------------------------------------------------------------------------
def extracted_source(spec: Any, raw_dir: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None):
    """A ``download.ResolvedSource`` without files for an extracted official layout, or None.

    Looks in ``RAW/<folder>/`` (pre-staged) then ``CACHE/<folder>/``, ``<folder>`` being the
    dataset's raw folder (``raw_folder_name``: its name, or the dataset a variant derives from).
    Archives take precedence: when all files of the source are present, returns None (the normal
    download path verifies them). The folder is in the attribute ``extracted_folder``.
    """
    from ..download import ResolvedSource
    from ..paths import download_cache_dir, raw_dir as resolve_raw_dir

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


def _preparer(spec: Any, resolved: Any, tmp: Path):
    """``data.prepare`` preparer: store into the staging dir, splits back as PreparedContent."""
    import shutil

    from .prepare import PreparedContent

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


# raw_format (registry) → preparer, picked up by data.prepare._preparer_for
PREPARERS = {"voc2007-tar": _preparer, "coco2014-zip": _preparer, "mirflickr25k-zip": _preparer,
             "nuswide-manual": _preparer}


def write_image_dataset(out_dir: str | os.PathLike, name: str, label_names: Sequence[str],
                        splits: dict[str, tuple[Sequence[np.ndarray] | np.ndarray, np.ndarray]], *,
                        synthetic: bool = True, quality: int = DEFAULT_QUALITY,
                        extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write in-memory uint8 ``[H, W, 3]`` images (e.g. synthetic ones) as a prepared image dataset.

    ``splits`` maps ``train``/``val``/``test`` to ``(images, y)``. Returns meta (caller writes meta.json).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    order = [s for s in ("train", "val", "test") if s in splits]
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
        _save_npz(out_dir / f"{s}.npz", y=np.asarray(y, dtype=np.uint8).reshape(sizes[s], len(label_names)),
                  index=idx, x=idx, ids=np.asarray([f"{s}{i}" for i in range(sizes[s])], dtype=str))
    meta = {
        "name": name, "kind": "image", "n_labels": len(label_names), "label_names": list(label_names),
        "n_features": None, "splits": sizes, "synthetic": bool(synthetic), "format_version": FORMAT_VERSION,
        "image_size": px,
        "image_store": {"format": STORE_FORMAT, "blob": STORE_BLOB, "offsets": STORE_OFFSETS,
                        "n_images": int(n), "short_side": px, "jpeg_quality": int(quality)},
    }
    meta.update(extra_meta or {})
    return meta


# ------------------------------------------------------------------------------------------
# batches
# ------------------------------------------------------------------------------------------
def _prepared_root(prepared: Any) -> Path:
    """Folder of a prepared dataset: a path, or an object with a path-like attribute."""
    if isinstance(prepared, (str, os.PathLike)):
        return Path(prepared)
    for attr in ("path", "root", "directory", "dir", "folder", "data_dir"):
        v = getattr(prepared, attr, None)
        if isinstance(v, (str, os.PathLike)) and (Path(v) / "train.npz").exists():
            return Path(v)
    meta = getattr(prepared, "meta", None) or {}
    for key in ("path", "root", "dir"):
        if isinstance(meta.get(key), (str, os.PathLike)):
            return Path(meta[key])
    raise UserError("make_batches needs the folder of the prepared image dataset; the prepared object "
                    f"{type(prepared).__name__} has no path attribute")


def _prepared_meta(prepared: Any, root: Path) -> dict[str, Any]:
    meta = getattr(prepared, "meta", None)
    if isinstance(meta, dict):
        return meta
    p = root / "meta.json"
    if p.is_file():
        import json

        return json.loads(p.read_text())
    return {}


_SPLIT_CACHE: dict[tuple[str, str, float], dict[str, np.ndarray]] = {}


def _load_split(root: Path, split: str) -> dict[str, np.ndarray]:
    path = root / f"{split}.npz"
    if not path.is_file():
        raise UserError(f"{path} is missing; re-run `mulsupcon-ld prepare` for this dataset")
    key = (str(path.resolve()), split, path.stat().st_mtime)
    if key not in _SPLIT_CACHE:
        with np.load(path, allow_pickle=False) as z:
            _SPLIT_CACHE[key] = {k: z[k] for k in z.files}
    return _SPLIT_CACHE[key]


class ImageDataset(torch.utils.data.Dataset):
    """Decodes store images and applies the view transforms; returns uint8 tensors.

    ``mode``: ``"pretrain"`` → ``(view1, view2, y)``, ``"finetune"`` → ``(view, y)`` (SimCLR
    augmentation), ``"eval"`` → ``(centre crop, y)``. Keys are ``(row, aug_seed)`` pairs from
    :class:`SeededSampler`; the augmentation of a sample depends only on its seed, never on
    which worker handles it (the CPU generator is reseeded and restored around it).
    """

    def __init__(self, root: Path | None, index: np.ndarray, y: np.ndarray, mode: str, px: int, *,
                 arrays: np.ndarray | None = None):
        from .. import transforms as T

        self.store = ImageStore(root) if arrays is None else None
        self.arrays = arrays
        self.index = np.asarray(index, dtype=np.int64)
        self.y = torch.as_tensor(np.asarray(y, dtype=np.uint8))
        self.mode, self.px = mode, int(px)
        self.tf = T.eval_transform(self.px) if mode == "eval" else T.simclr_transform(self.px)
        self._draft = (T.eval_resize(self.px),) * 2 if mode == "eval" else None

    def __len__(self) -> int:
        return len(self.index)

    def _image(self, i: int):
        row = int(self.index[i])
        if self.arrays is not None:            # in-memory uint8 images (synthetic stand-ins)
            from PIL import Image

            a = self.arrays[row]
            if a.shape[0] == 3 and a.shape[-1] != 3:  # CHW → HWC; PIL ops are ~8x faster than tensor ones
                a = a.transpose(1, 2, 0)
            return Image.fromarray(np.ascontiguousarray(a), "RGB")
        return self.store.image(row, draft=self._draft)  # type: ignore[union-attr]

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        img = self._image(i)
        y = self.y[i]
        if self.mode == "eval":
            return self.tf(img), y
        # seed only the CPU generator (torch.manual_seed would also reseed CUDA in the main
        # process when num_workers=0) and restore it afterwards
        gen = torch.default_generator
        state = gen.get_state()
        try:
            if seed is not None:
                gen.manual_seed(int(seed))
            if self.mode == "pretrain":
                return self.tf(img), self.tf(img), y
            return self.tf(img), y
        finally:
            gen.set_state(state)


class SeededSampler(torch.utils.data.Sampler):
    """Yields ``(row, aug_seed)``; order and seeds come from ``seed`` only (set per epoch)."""

    def __init__(self, n: int, shuffle: bool, n_items: int | None = None):
        self.n, self.shuffle = int(n), bool(shuffle)
        self.n_items = int(n_items) if n_items is not None else self.n
        self.seed = 0

    def __len__(self) -> int:
        return self.n_items

    def __iter__(self):
        rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFFFFFFFFFF, 7003])
        if self.shuffle:
            passes = max(1, math.ceil(self.n_items / self.n))
            order = np.concatenate([rng.permutation(self.n) for _ in range(passes)])[: self.n_items]
        else:
            order = np.arange(self.n_items) % self.n
        seeds = rng.integers(0, 2**62, size=len(order))
        return iter(zip(order.tolist(), seeds.tolist()))


def _worker_init(worker_id: int) -> None:
    # per-worker seeds for anything outside the per-sample seeded transforms
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
    torch.set_num_threads(1)


def default_num_workers(device: torch.device) -> int:
    """``$MULSUPCON_NUM_WORKERS``, else all but one usable CPU on CUDA (≤ 16), else min(2, CPUs − 1)."""
    env = os.environ.get("MULSUPCON_NUM_WORKERS")
    if env:
        return max(0, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        n = os.cpu_count() or 1
    if device.type == "cuda":
        return max(1, min(16, n - 1))
    return max(0, min(2, n - 1))


@dataclass
class _Loader:
    loader: torch.utils.data.DataLoader
    sampler: SeededSampler
    lock: threading.Lock = field(default_factory=threading.Lock)


# DataLoaders with persistent workers, reused across epochs (the runner calls make_batches once per
# epoch); a few at most, oldest dropped first (its workers exit when it is garbage-collected).
_LOADERS: "collections.OrderedDict[tuple, _Loader]" = collections.OrderedDict()
_MAX_LOADERS = 4


def _get_loader(key: tuple, build) -> _Loader:
    if key in _LOADERS:
        _LOADERS.move_to_end(key)
        return _LOADERS[key]
    entry = build()
    _LOADERS[key] = entry
    while len(_LOADERS) > _MAX_LOADERS:
        _LOADERS.popitem(last=False)
    return entry


def clear_loader_cache() -> None:
    """Drop the cached DataLoaders (their persistent workers exit)."""
    _LOADERS.clear()


def _phase_of(settings: dict[str, Any], train: bool) -> str:
    phase = settings.get("phase")
    if phase is None:
        return "pretrain" if train else "eval"
    if phase not in ("pretrain", "finetune", "eval"):
        raise UserError(f"settings['phase'] must be pretrain, finetune or eval, not {phase!r}")
    return phase


def image_size(settings: dict[str, Any], meta: dict[str, Any]) -> int:
    """Crop size: ``settings['data']['image_size']``, else the synthetic image size, else 224 (paper)."""
    data = settings.get("data") or {}
    for v in (data.get("image_size"), (settings.get("model") or {}).get("image_size")):
        if v:
            return int(v)
    if meta.get("synthetic"):
        shape = (meta.get("image") or {}).get("shape")      # data/prepare.py synthetic: [3, 32, 32]
        if shape:
            return int(min(shape[-2:]))
        if meta.get("image_size"):
            return int(meta["image_size"])
    return 224


class ImageBatches:
    """One epoch of image batches (iterable, with ``__len__``), normalised on ``device``."""

    def __init__(self, entry: _Loader, seed: int, n_batches: int, phase: str, device: torch.device,
                 channels_last: bool):
        self.entry, self.seed, self.n_batches = entry, int(seed), int(n_batches)
        self.phase, self.device, self.channels_last = phase, device, channels_last

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        from ..transforms import normalize_batch

        with self.entry.lock:
            self.entry.sampler.seed = self.seed
            it = iter(self.entry.loader)
        cl = self.channels_last and self.device.type == "cuda"
        for count, batch in enumerate(it):
            if count >= self.n_batches:
                break
            *views, y = batch
            out = [normalize_batch(v, self.device, channels_last=cl) for v in views]
            yield (*out, y.to(self.device, non_blocking=True).float())


def make_batches(prepared: Any, split: str, settings: dict[str, Any], train: bool, seed: int,
                 device: torch.device | str = "cpu") -> ImageBatches:
    """Batches of one epoch of ``split`` of a prepared image dataset (real or synthetic).

    ``settings`` is :func:`mulsupcon_ld.settings.get_settings`'s dict; ``settings["phase"]``
    (``pretrain``/``finetune``/``eval``; default ``pretrain`` when ``train`` else ``eval``) picks
    the batch form and the batch size (``pretrain.batch_size``, ``finetune.batch_size``,
    ``finetune.eval_batch_size``). Optional ``settings["data"]``: ``image_size`` (crop, default
    224 or the synthetic size), ``num_workers``, ``prefetch_factor``. Order and augmentation depend
    only on ``seed``, not on the number of workers.
    """
    device = torch.device(device)
    root = _prepared_root(prepared)
    meta = _prepared_meta(prepared, root)
    phase = _phase_of(settings, train)
    arrays = _load_split(root, split)
    if "y" not in arrays:
        raise UserError(f"{root / (split + '.npz')} has no 'y'; re-run prepare")
    y = arrays["y"]
    mem = None
    if "index" in arrays:
        index = arrays["index"]
    elif "x" in arrays and arrays["x"].ndim == 4 and arrays["x"].dtype == np.uint8:
        mem, index = arrays["x"], np.arange(len(arrays["x"]))   # in-memory uint8 images
    else:
        raise UserError(f"{root / (split + '.npz')} is not an image split (needs 'index' into the store, "
                        "or 'x' uint8 [N, H, W, 3]); re-run prepare")
    n = len(index)
    if n == 0:
        raise UserError(f"split {split!r} of {root.name} is empty")
    data_cfg = settings.get("data") or {}
    px = image_size(settings, meta)
    if phase == "pretrain":
        cfg = settings.get("pretrain", {})
        bs, drop_last, shuffle = int(cfg.get("batch_size", 128)), bool(cfg.get("drop_last", True)), True
        ipe = cfg.get("iters_per_epoch")
    elif phase == "finetune":
        cfg = settings.get("finetune", {})
        bs, drop_last, shuffle = int(cfg.get("batch_size", 128)), bool(cfg.get("drop_last", False)), True
        ipe = cfg.get("iters_per_epoch")
    else:
        cfg = settings.get("finetune", {})
        bs, drop_last, shuffle, ipe = int(cfg.get("eval_batch_size", 256)), False, False, None
    bs = max(1, min(bs, n))
    if ipe:
        n_items, n_batches, drop_last = int(ipe) * bs, int(ipe), True
    else:
        full, rest = divmod(n, bs)
        if rest == 1 and shuffle:
            drop_last = True          # a batch of one breaks BatchNorm in training
        n_items, n_batches = n, full + int(rest > 0 and not drop_last)
    if n_batches < 1:
        raise UserError(f"split {split!r} has {n} images, fewer than one batch of {bs}")
    workers = data_cfg.get("num_workers")
    workers = default_num_workers(device) if workers is None else int(workers)
    channels_last = bool((settings.get("model") or {}).get("channels_last", False))
    key = (str(root.resolve()), split, phase, bs, px, n_items, drop_last, workers, device.type,
           id(mem) if mem is not None else None, (root / STORE_BLOB).stat().st_mtime if mem is None else 0)

    def build() -> _Loader:
        ds = ImageDataset(root if mem is None else None, index, y, phase, px, arrays=mem)
        sampler = SeededSampler(n, shuffle, n_items)
        kw: dict[str, Any] = {}
        if workers > 0:
            kw.update(persistent_workers=True, worker_init_fn=_worker_init,
                      prefetch_factor=int(data_cfg.get("prefetch_factor") or 4))
        g = torch.Generator()
        g.manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF)
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=drop_last,
                                             num_workers=workers, pin_memory=device.type == "cuda",
                                             generator=g, **kw)
        return _Loader(loader, sampler)

    return ImageBatches(_get_loader(key, build), seed, n_batches, phase, device, channels_last)
