"""Batches for vector data: the whole split in memory, masking done on whole batches.

Section 4: "During the pretraining phase, we randomly mask 50% of the elements" and, for
fine-tuning, "All masks are set to 0.4, except for Delicious and Mediamill, which are set to 0.2
and 0". We read "mask p" as: every feature of every sample is zeroed independently with
probability p, independently for each view (MulSupCon's per-sample transform does the same one
sample at a time; here it is one ``torch.rand`` per batch).

A batch source is any object with ``epoch(epoch: int) -> Iterator[batch]`` and ``__len__``
(iterations per epoch). Pretraining batches are ``(view1, view2, y)``, fine-tuning and evaluation
batches ``(x, y)``. The randomness of an epoch (order, masks) depends only on ``(seed, epoch)``,
so a job resumed at an epoch boundary sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch


def epoch_seed(seed: int, stream: str, epoch: int) -> int:
    """A 63-bit seed for ``(seed, stream, epoch)`` that does not depend on Python's hash salt."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), *stream.encode()])
    return int(ss.generate_state(1, dtype=np.uint64)[0]) >> 1


def random_mask(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each element of ``x`` independently with probability ``p`` (no rescaling)."""
    if p <= 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep


class VectorBatches:
    """Shuffled mini-batches over in-memory tensors, with optional masking and two views.

    ``iters_per_epoch=None`` means one pass over the data (``drop_last`` decides whether the final
    short batch is kept); an integer draws that many batches per epoch from consecutive shuffled
    passes (MulSupCon's fixed ``iters_per_epoch``). ``shuffle=False`` gives the evaluation order.
    A final batch of a single sample is always dropped in training (BatchNorm cannot use it).
    """

    def __init__(self, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, batch_size: int, *,
                 mask: float = 0.0, two_views: bool = False, shuffle: bool = True, drop_last: bool = False,
                 iters_per_epoch: int | None = None, seed: int = 0, stream: str = "batches",
                 device: str | torch.device = "cpu"):
        self.x = torch.as_tensor(np.asarray(x, dtype=np.float32) if isinstance(x, np.ndarray) else x,
                                 dtype=torch.float32).to(device)
        self.y = torch.as_tensor(np.asarray(y) if isinstance(y, np.ndarray) else y).to(device).float()
        self.n = int(self.x.shape[0])
        if self.n == 0:
            raise ValueError("empty split")
        self.batch_size = min(int(batch_size), self.n)
        self.mask, self.two_views, self.shuffle = float(mask), bool(two_views), bool(shuffle)
        self.drop_last, self.iters_per_epoch = bool(drop_last), iters_per_epoch
        self.seed, self.stream, self.device = int(seed), stream, torch.device(device)

    def __len__(self) -> int:
        if self.iters_per_epoch:
            return int(self.iters_per_epoch)
        full, rest = divmod(self.n, self.batch_size)
        keep_rest = rest > 0 and not self.drop_last and not (self.shuffle and rest == 1)
        return full + int(keep_rest)

    def _generator(self, epoch: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(epoch_seed(self.seed, self.stream, epoch))
        return g

    def _order(self, g: torch.Generator) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n, device=self.device)
        if self.iters_per_epoch:
            passes = math.ceil(self.iters_per_epoch * self.batch_size / self.n)
            return torch.cat([torch.randperm(self.n, generator=g, device=self.device) for _ in range(passes)])
        return torch.randperm(self.n, generator=g, device=self.device)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        g = self._generator(epoch)
        order = self._order(g)
        bs = self.batch_size
        for i in range(len(self)):
            idx = order[i * bs:(i + 1) * bs]
            x, y = self.x[idx], self.y[idx]
            if self.two_views:
                yield random_mask(x, self.mask, g), random_mask(x, self.mask, g), y
            else:
                yield random_mask(x, self.mask, g), y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self.epoch(0)
