"""The MoCo queue as its own block of A(i), and its labels as a dense matrix or as padded label lists."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .products import _label_sums, label_overlap


# From this many labels on, the MoCo label queue is also kept as padded label lists (``Queue.lists``,
# built once per key at enqueue): the label products over the queue then read the ~nnz(Q_ll) list
# entries instead of finding the nonzeros of the dense ``n x C`` queue every iteration, which on CPU
# costs more than the whole rest of the loss at Delicious' shape (docs/performance.md, "Label lists
# for many labels"). Below it (Yeast 14, Scene 6 labels) the dense path is cheap and keeps its arithmetic.
LIST_MIN_LABELS = 64


def use_label_lists(n_labels: int, device: torch.device) -> bool:
    """Whether the queue's labels should be kept as label lists (CPU, many labels)."""
    return device.type == "cpu" and n_labels >= LIST_MIN_LABELS


def label_lists(labels: torch.Tensor, width: int = 0) -> torch.Tensor:
    """Padded label lists of 0/1 rows: ``[n, L]`` int64, row p = the labels j with y_pj != 0, in
    increasing order, then the pad value ``C`` (= ``labels.shape[1]``); ``L = max(width, max_p |y_p|, 1)``."""
    n, C = labels.shape
    nz = labels.detach().nonzero()
    counts = torch.bincount(nz[:, 0], minlength=n)
    L = max(int(width), int(counts.max()) if n else 0, 1)
    out = torch.full((n, L), C, dtype=torch.long, device=labels.device)
    if nz.shape[0]:
        pos = torch.arange(nz.shape[0], device=labels.device) - (torch.cumsum(counts, 0) - counts)[nz[:, 0]]
        out[nz[:, 0], pos] = nz[:, 1]
    return out


@dataclass(frozen=True)
class Queue:
    """The MoCo queue as its own block of A(i), so that the batch and the queue are never concatenated
    (the ``[B + n, C]`` concatenations would copy the queue's labels and distributions every step;
    docs/performance.md, "The queue as its own loss block").

    ``keys`` [n, d] (Q), ``labels`` [n, C] (Q_ll, 0/1), ``dist`` [n, C] (Q_ld; ``None`` for MulSupCon),
    ``lists``: ``label_lists(labels)`` kept by :class:`mulsupcon_ld.moco.MoCo` when
    :func:`use_label_lists` (``None``: the dense labels are used). Nothing here carries gradient.
    """

    keys: torch.Tensor
    labels: torch.Tensor
    dist: torch.Tensor | None = None
    lists: torch.Tensor | None = None


class _DenseLabels:
    """The queue's 0/1 labels as the dense ``[n, C]`` matrix (accelerators, few labels)."""

    def __init__(self, y: torch.Tensor) -> None:
        self.y = y

    def per_label(self) -> torch.Tensor:
        """sum_p y_pj over the queue: [C]."""
        return self.y.sum(0)

    def per_key(self) -> torch.Tensor:
        """|y_p|: [n]."""
        return self.y.sum(1)

    def overlap(self, a: torch.Tensor) -> torch.Tensor:
        """``a @ y.T`` [B, n] (|y_i & y_p| for 0/1 ``a``)."""
        return label_overlap(a, self.y)

    def contrastive(self, a: torch.Tensor, qs: torch.Tensor, d: torch.Tensor | None, k: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, col, row)``: x_i = sum_p (a_i . r_p) (qs_i . k_p) with r = y * d (``d=None``: r = y),
        with gradient to ``qs``; col = r.sum(0) [C]; row = r.sum(1) [n]. Via the label sums
        M = r.T @ k (:func:`_label_sums`)."""
        m, col, row = _label_sums(self.y, d, k)
        return (qs * (a @ m)).sum(1), col, row


class _ListLabels:
    """The queue's labels as padded label lists ``[n, L]`` (pad = C, see :func:`label_lists`).

    Every product with the labels is an embedding-bag sum over the list entries: ``a @ y.T`` reads
    the rows of ``a.T`` (plus a zero row for the pad), nnz(y) * B adds instead of n * C * B
    multiply-adds, and nothing scans the dense ``n x C`` labels.
    """

    def __init__(self, lists: torch.Tensor, n_labels: int, dtype: torch.dtype) -> None:
        self.lists, self.C, self.dtype = lists, n_labels, dtype
        self.valid = lists < n_labels

    def per_label(self) -> torch.Tensor:
        return torch.bincount(self.lists.flatten(), minlength=self.C + 1)[: self.C].to(self.dtype)

    def per_key(self) -> torch.Tensor:
        return self.valid.sum(1).to(self.dtype)

    def _bag(self, a: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``a @ r.T`` as ``[B, n]`` (a transposed view), r the 0/1 labels or ``weights`` on them."""
        table = torch.cat([a.detach().t(), a.new_zeros(1, a.shape[0])])      # row C: the pad's zeros
        # no padding_idx: the pad row is zero anyway, and padding_idx takes a much slower kernel
        # (docs/performance.md, "embedding_bag without padding_idx")
        return F.embedding_bag(self.lists, table, mode="sum", per_sample_weights=weights).t()

    def overlap(self, a: torch.Tensor) -> torch.Tensor:
        return self._bag(a)

    def contrastive(self, a: torch.Tensor, qs: torch.Tensor, d: torch.Tensor | None, k: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`_DenseLabels.contrastive`, via s = a @ r.T [B, n] and x = qs . (s @ k)."""
        if d is None:
            vals = self.valid.to(self.dtype)
        else:
            vals = d.detach().gather(1, self.lists.clamp(max=self.C - 1)).mul_(self.valid)
        col = torch.zeros(self.C + 1, dtype=self.dtype, device=vals.device).index_add_(
            0, self.lists.flatten(), vals.flatten())[: self.C]
        s = self._bag(a, None if d is None else vals)
        return (qs * (s @ k.detach())).sum(1), col, vals.sum(1)


def _queue_labels(y: torch.Tensor, lists: torch.Tensor | None, dt: torch.dtype) -> "_DenseLabels | _ListLabels":
    if lists is not None and lists.device.type == "cpu":
        return _ListLabels(lists, y.shape[1], dt)
    return _DenseLabels(y.detach().to(dt))


def _check_queue(queue: Queue, d: int, C: int, need_dist: bool) -> None:
    n = queue.keys.shape[0]
    if queue.keys.dim() != 2 or queue.keys.shape[1] != d or tuple(queue.labels.shape) != (n, C):
        raise ValueError(f"queue keys [n, d={d}] and labels [n, C={C}] expected, got "
                         f"{tuple(queue.keys.shape)} and {tuple(queue.labels.shape)}")
    if need_dist and (queue.dist is None or tuple(queue.dist.shape) != (n, C)):
        raise ValueError(f"queue.dist [n={n}, C={C}] expected for the LD losses")
    if queue.lists is not None and (queue.lists.dim() != 2 or queue.lists.shape[0] != n):
        raise ValueError(f"queue.lists [n={n}, L] expected, got {tuple(queue.lists.shape)}")
