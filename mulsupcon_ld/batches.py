"""Batch sources: the one ``make_batches`` the experiment calls, one source per kind of data.

A batch source has ``epoch(e)`` (an iterable of that epoch's batches) and ``len()`` (batches per
epoch), the :class:`mulsupcon_ld.train.BatchSource` protocol. Vector data: :class:`VectorBatches`
(augment.py). Image data: :class:`ImageBatches` below, one :func:`data.images.image_epoch` per
epoch. Batch forms: pretraining ``(view1, view2, y)``; fine-tuning and evaluation ``(x, y)``.
"""

from __future__ import annotations

import numpy as np
import torch

from .augment import VectorBatches, epoch_seed
from .data import images
from .data.prepared import PreparedDataset
from .run_settings import RunSettings


class ImageBatches:
    """Image batch source: ``epoch(e)`` is :func:`data.images.image_epoch` with a seed that
    depends only on ``(seed, phase, split, e)``; ``phase`` picks the batch form."""

    def __init__(self, prepared: PreparedDataset, split: str, settings: RunSettings, phase: str,
                 seed: int, device: torch.device):
        self.prepared, self.split, self.settings = prepared, split, settings
        self.phase, self.seed, self.device = phase, seed, device
        self._len: int | None = None

    def epoch(self, epoch: int):
        return images.image_epoch(self.prepared, self.split, self.settings, self.phase,
                                  seed=epoch_seed(self.seed, f"{self.phase}-{self.split}", epoch),
                                  device=self.device)

    def __len__(self) -> int:
        if self._len is None:
            self._len = len(self.epoch(0))
        return self._len


def make_batches(prepared: PreparedDataset, split: str, settings: RunSettings, phase: str, seed: int,
                 device: torch.device) -> ImageBatches | VectorBatches:
    """Batch source for ``phase`` in pretrain / finetune / eval, dispatching on ``prepared.kind``."""
    if prepared.kind == "image":
        return ImageBatches(prepared, split, settings, phase, seed, device)
    x, y = prepared.split(split)
    if settings.data.standardize:
        x = standardize(prepared, x)
    if phase == "eval":
        return VectorBatches(x, y, settings.finetune.eval_batch_size, shuffle=False, device=device)
    cfg = settings.pretrain if phase == "pretrain" else settings.finetune
    return VectorBatches(x, y, cfg.batch_size, mask=cfg.mask, two_views=phase == "pretrain",
                         drop_last=bool(cfg.drop_last) if phase == "pretrain" else False,
                         iters_per_epoch=cfg.iters_per_epoch, seed=seed, stream=f"{phase}-{split}", device=device)


def standardize(prepared: PreparedDataset, x: np.ndarray) -> np.ndarray:
    """Z-score ``x`` with the train split's per-feature mean and std (constant features left at 0)."""
    train_x, _ = prepared.split("train")
    mean = train_x.mean(axis=0, dtype=np.float64)
    std = train_x.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return ((x - mean) / std).astype(np.float32)


def release_image_loaders() -> None:
    """Let the cached DataLoaders (persistent workers) of data/images.py go once not needed."""
    images.clear_loader_cache()
