"""Image batches: the DataLoader over a prepared image store, one epoch at a time.

``image_epoch(prepared, split, settings, phase, seed, device)``
    One epoch of batches (``settings``: the run's :class:`~mulsupcon_ld.run_settings.RunSettings`): pretraining ``(view1, view2, y)`` (two SimCLR views), fine-tuning
    ``(x, y)`` (one SimCLR view), evaluation ``(x, y)`` (resize + centre crop, stored order).
    :class:`mulsupcon_ld.batches.ImageBatches` calls it once per epoch.

Preparing image datasets lives in :mod:`.image_prepare`; see docs/images.md for the store format.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from .. import device_augment as DA
from .. import transforms as T
from ..errors import UserError
from ..run_settings import ImageDataSettings, RunSettings
from .image_store import STORE_BLOB, ImageStore
from .prepared import META, PreparedDataset


def _prepared_root(prepared: PreparedDataset | str | os.PathLike) -> Path:
    """Folder of a prepared dataset (a :class:`PreparedDataset` or the folder itself)."""
    if isinstance(prepared, (str, os.PathLike)):
        return Path(prepared)
    return Path(prepared.path)


def _prepared_meta(prepared: PreparedDataset | str | os.PathLike, root: Path) -> dict[str, Any]:
    if isinstance(prepared, PreparedDataset):
        return prepared.meta
    p = root / META
    return json.loads(p.read_text()) if p.is_file() else {}


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

    ``precrop`` (device-side augmentation, :mod:`mulsupcon_ld.device_augment`): training modes
    return ``(whole image resized to precrop × precrop, original (H, W), aug_seed, y)`` instead,
    and the views are made on the device.
    """

    def __init__(self, root: Path | None, index: np.ndarray, y: np.ndarray, mode: str, px: int, *,
                 arrays: np.ndarray | None = None, precrop: int | None = None):
        self.store = ImageStore(root) if arrays is None else None
        self.arrays = arrays
        self.index = np.asarray(index, dtype=np.int64)
        self.y = torch.as_tensor(np.asarray(y, dtype=np.uint8))
        self.mode, self.px = mode, int(px)
        self.tf = T.eval_transform(self.px) if mode == "eval" else T.simclr_transform(self.px)
        self._draft = (T.eval_resize(self.px),) * 2 if mode == "eval" else None
        self.precrop = int(precrop) if precrop and mode != "eval" else None

    def __len__(self) -> int:
        return len(self.index)

    def _image(self, i: int):
        row = int(self.index[i])
        if self.arrays is not None:            # in-memory uint8 images (synthetic stand-ins)
            a = self.arrays[row]
            if a.shape[0] == 3 and a.shape[-1] != 3:  # CHW → HWC; PIL ops are much faster than tensor
                a = a.transpose(1, 2, 0)              # ones (docs/performance.md, "In-memory images as HWC")
            return Image.fromarray(np.ascontiguousarray(a), "RGB")
        return self.store.image(row, draft=self._draft)  # type: ignore[union-attr]

    def _precropped(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole image → uint8 ``[3, S, S]`` (aspect not kept) and its stored size ``(H, W)``."""
        s = self.precrop
        if self.arrays is not None:
            img = self._image(i)
            hw = (img.height, img.width)
        else:
            img = Image.open(io.BytesIO(self.store.get(int(self.index[i]))))  # type: ignore[union-attr]
            hw = (img.height, img.width)
            img.draft("RGB", (s, s))          # JPEG: decode at a reduced scale >= S
            img = img.convert("RGB")
        img = img.resize((s, s), Image.BILINEAR)
        return TF.pil_to_tensor(img), torch.tensor(hw, dtype=torch.int64)

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        y = self.y[i]
        if self.precrop:
            x, hw = self._precropped(i)
            return x, hw, torch.tensor(0 if seed is None else int(seed), dtype=torch.int64), y
        img = self._image(i)
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


# DataLoaders with persistent workers, reused across epochs (batches.ImageBatches calls image_epoch
# once per epoch); a few at most, oldest dropped first (its workers exit when it is garbage-collected).
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


PHASES = ("pretrain", "finetune", "eval")


def _image_data(settings: RunSettings) -> ImageDataSettings:
    if not isinstance(settings.data, ImageDataSettings):
        raise ValueError(f"{settings.dataset} is not an image dataset (its settings are {settings.kind!r})")
    return settings.data


def image_size(settings: RunSettings, meta: dict[str, Any]) -> int:
    """Crop size: ``data.image_size``, else the synthetic image size, else 224 (paper)."""
    data = _image_data(settings)
    if data.image_size:
        return int(data.image_size)
    if meta.get("synthetic"):
        shape = (meta.get("image") or {}).get("shape")      # data/prepare.py synthetic: [3, 32, 32]
        if shape:
            return int(min(shape[-2:]))
        if meta.get("image_size"):
            return int(meta["image_size"])
    return 224


def batch_plan(settings: RunSettings, phase: str, n: int) -> tuple[int, int, int, bool, bool]:
    """``(batch_size, n_items, n_batches, drop_last, shuffle)`` for one epoch of ``n`` images.

    Pretraining drops the last partial batch (``pretrain.drop_last``); training never keeps a
    batch of one (it breaks BatchNorm); ``iters_per_epoch`` fixes the count (items drawn again).
    """
    if phase == "eval":
        bs, drop_last, shuffle, ipe = settings.finetune.eval_batch_size, False, False, None
    else:
        cfg = settings.pretrain if phase == "pretrain" else settings.finetune
        drop_last = settings.pretrain.drop_last if phase == "pretrain" else False
        bs, shuffle, ipe = cfg.batch_size, True, cfg.iters_per_epoch
    bs = max(1, min(bs, n))
    if ipe:
        return bs, int(ipe) * bs, int(ipe), True, shuffle
    full, rest = divmod(n, bs)
    if rest == 1 and shuffle:
        drop_last = True          # a batch of one breaks BatchNorm in training
    return bs, n, full + int(rest > 0 and not drop_last), drop_last, shuffle


class ImageEpoch:
    """One epoch of image batches (iterable, with ``__len__``), normalised on ``device``.

    ``device_px``: the loader yields pre-crop batches and the SimCLR views are made on
    ``device`` at this size (:func:`mulsupcon_ld.device_augment.simclr_views`).
    """

    def __init__(self, entry: _Loader, seed: int, n_batches: int, phase: str, device: torch.device,
                 channels_last: bool, device_px: int | None = None):
        self.entry, self.seed, self.n_batches = entry, int(seed), int(n_batches)
        self.phase, self.device, self.channels_last = phase, device, channels_last
        self.device_px = device_px

    def __len__(self) -> int:
        return self.n_batches

    def _views(self, batch) -> tuple[list[torch.Tensor], torch.Tensor, float]:
        """The batch's views (uint8 range, or [0, 1] floats made here), labels, and their max value."""
        if self.device_px is None:
            *views, y = batch
            return views, y, 255.0
        x, hw, seeds, y = batch
        x = x.to(self.device, non_blocking=True)
        n_views = 2 if self.phase == "pretrain" else 1
        return DA.simclr_views(x, hw, seeds, self.device_px, n_views), y, 1.0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        with self.entry.lock:
            self.entry.sampler.seed = self.seed
            it = iter(self.entry.loader)
        cl = self.channels_last and self.device.type == "cuda"
        for count, batch in enumerate(it):
            if count >= self.n_batches:
                break
            views, y, top = self._views(batch)
            out = [T.normalize_batch(v, self.device, channels_last=cl, max_value=top) for v in views]
            yield (*out, y.to(self.device, non_blocking=True).float())


def augment_plan(settings: RunSettings, phase: str, px: int, device: torch.device) -> int | None:
    """Pre-crop size when this phase's SimCLR views are made on the device, else None.

    ``data.augment_on``: ``cpu`` (DataLoader workers, PIL), ``device`` (batched on ``device``) or
    ``auto`` (``device`` on CUDA); evaluation views are always made on the CPU.
    """
    data = _image_data(settings)
    choice = DA.resolve_augment_on(data.augment_on, device)
    if phase == "eval" or choice == "cpu":
        return None
    return DA.precrop_size(px, data.precrop_size)


def image_epoch(prepared: PreparedDataset | str | os.PathLike, split: str, settings: RunSettings, phase: str,
                seed: int, device: torch.device | str = "cpu") -> ImageEpoch:
    """Batches of one epoch of ``split`` of a prepared image dataset (real or synthetic).

    ``phase`` (``pretrain``/``finetune``/``eval``) picks the batch form and the batch size
    (``pretrain.batch_size``, ``finetune.batch_size``, ``finetune.eval_batch_size``). From
    ``settings.data``: ``image_size`` (crop, default 224 or the synthetic size), ``num_workers``,
    ``prefetch_factor``, ``augment_on``, ``precrop_size``. Order and augmentation depend only on
    ``seed``, not on the number of workers.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, not {phase!r}")
    device = torch.device(device)
    root = _prepared_root(prepared)
    meta = _prepared_meta(prepared, root)
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
    data_cfg = _image_data(settings)
    px = image_size(settings, meta)
    bs, n_items, n_batches, drop_last, shuffle = batch_plan(settings, phase, n)
    if n_batches < 1:
        raise UserError(f"split {split!r} has {n} images, fewer than one batch of {bs}")
    workers = data_cfg.num_workers
    workers = default_num_workers(device) if workers is None else int(workers)
    channels_last = settings.model.channels_last
    precrop = augment_plan(settings, phase, px, device)
    key = (str(root.resolve()), split, phase, bs, px, precrop, n_items, drop_last, workers, device.type,
           id(mem) if mem is not None else None, (root / STORE_BLOB).stat().st_mtime if mem is None else 0)

    def build() -> _Loader:
        ds = ImageDataset(root if mem is None else None, index, y, phase, px, arrays=mem, precrop=precrop)
        sampler = SeededSampler(n, shuffle, n_items)
        kw: dict[str, Any] = {}
        if workers > 0:
            kw.update(persistent_workers=True, worker_init_fn=_worker_init,
                      prefetch_factor=int(data_cfg.prefetch_factor or 4))
        g = torch.Generator()
        g.manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF)
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=drop_last,
                                             num_workers=workers, pin_memory=device.type == "cuda",
                                             generator=g, **kw)
        return _Loader(loader, sampler)

    return ImageEpoch(_get_loader(key, build), seed, n_batches, phase, device, channels_last,
                      device_px=px if precrop else None)
