"""Label products without gradient: |y_i & y_p| (eqs. 1-2), the positive masks, |P^j(i)| (eq. 3) and
the per-label key sums behind the factorised contrastive terms; sparse sums on CPU."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import _no_autocast


# Label products A @ R^T with A [B, C] sparse (a few labels per anchor) run on CPU as an
# embedding-bag sum of the nnz(A) rows of R^T (nnz(A) * K adds instead of B * C * K multiply-adds)
# when the density of A is at most this; dense matmul otherwise and always on accelerators.
_SPARSE_LABEL_MAX_DENSITY = 0.25


def _nnz(t: torch.Tensor) -> int:
    """The number of nonzeros, to choose the sparse or dense path before paying for ``nonzero()``
    (many times the count's cost at Yeast's shape, and wasted where the dense path is taken;
    docs/performance.md, "Counting nonzeros first")."""
    return int(torch.count_nonzero(t))


def label_overlap(a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``a @ r.T`` for label-shaped operands without gradient: ``a`` [B, C] (mostly zeros), ``r`` [K, C].

    With 0/1 ``a`` and ``r`` this is |y_i & y_p|, the label intersection counts behind eqs. 1-2.
    On CPU and for sparse ``a`` it sums the nnz(a) rows of ``r.T`` (``F.embedding_bag``), which
    is exact for 0/1 values and equal to the product up to summation order otherwise.
    """
    a = a.detach()
    r = r.detach()
    B, C = a.shape
    K = r.shape[0]
    if B == 0 or K == 0 or C == 0:
        return a.new_zeros(B, K)
    if a.device.type == "cpu":
        nnz = _nnz(a)
        if nnz == 0:
            return a.new_zeros(B, K)
        if nnz <= _SPARSE_LABEL_MAX_DENSITY * B * C:
            nz = a.nonzero()  # row-major: grouped by anchor
            rows, cols = nz[:, 0], nz[:, 1]
            counts = torch.bincount(rows, minlength=B)
            offsets = torch.cumsum(counts, 0) - counts
            return F.embedding_bag(cols, r.t().contiguous(), offsets, mode="sum",
                                   per_sample_weights=a[rows, cols])
    return a @ r.t()


def any_positive_mask(query_labels: torch.Tensor, key_labels: torch.Tensor) -> torch.Tensor:
    """Eq. (2), ANY: ``[B, K]`` bool, ``y_p & y_i != {}`` (one label product, no ``B x K x C`` tensor)."""
    dt = torch.float64 if query_labels.dtype == torch.float64 else torch.float32
    with _no_autocast(query_labels.device):
        return label_overlap(query_labels.to(dt), key_labels.to(dt)) > 0


def all_positive_mask(query_labels: torch.Tensor, key_labels: torch.Tensor) -> torch.Tensor:
    """Eq. (1), ALL: ``[B, K]`` bool, ``y_p == y_i`` exactly.

    Computed from the intersection count: two 0/1 rows are equal iff ``|y_i & y_p| = |y_i| = |y_p|``
    (exact in float32 up to 2^24 labels). Two label-free rows are equal (eq. 1 read literally).
    """
    dt = torch.float64 if query_labels.dtype == torch.float64 else torch.float32
    with _no_autocast(query_labels.device):
        yq, yk = query_labels.detach().to(dt), key_labels.detach().to(dt)
        inter = label_overlap(yq, yk)
        return (inter == yq.sum(1, keepdim=True)) & (inter == yk.sum(1).unsqueeze(0))


def per_label_positive_counts(key_labels: torch.Tensor, valid: torch.Tensor | None = None,
                              n_anchors: int | None = None) -> torch.Tensor:
    """|P^j(i)| of eq. (3) for every anchor i and label j: ``[B, C]``.

    ``valid`` ``[B, K]`` bool marks A(i) (``None``: A(i) = all K keys for every anchor, then
    ``n_anchors`` gives B). One ``(B x K) . (K x C)`` product: ``valid @ key_labels``.
    """
    dt = torch.float64 if key_labels.dtype == torch.float64 else torch.float32
    with _no_autocast(key_labels.device):
        yk = key_labels.detach().to(dt)
        if valid is None:
            if n_anchors is None:
                raise ValueError("pass valid [B, K] or n_anchors")
            return yk.sum(0).expand(n_anchors, -1)
        return valid.to(dt) @ yk


def _own_valid(B: int, K: int, device: torch.device) -> torch.Tensor:
    """A(i) = {k_i} + queue as a ``[B, K]`` bool mask (reading ``in_batch_keys="own"``)."""
    return torch.cat([torch.eye(B, dtype=torch.bool, device=device),
                      torch.ones(B, K - B, dtype=torch.bool, device=device)], dim=1)


def _counts(yk_b: torch.Tensor, n_queue: torch.Tensor, own: bool) -> torch.Tensor:
    """|P^j(i)| [B, C] from the structure of A(i) (no (B x K) . (K x C) product needed):
    ``yk_b`` the batch keys' labels [B, C], ``n_queue`` the queue's per-label counts [C]."""
    if own:
        return n_queue.unsqueeze(0) + yk_b
    return (n_queue + yk_b.sum(0)).unsqueeze(0).expand(yk_b.shape[0], -1)


def _label_sums(y: torch.Tensor, wts: torch.Tensor | None, k: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sums over the nonzeros of ``r = y * wts`` (``wts=None``: r = y), without gradient.

    Returns ``(M, col, row)``: ``M = r.T @ k`` [C, d] (per label j, sum_p r_pj k_p),
    ``col = r.sum(0)`` [C] and ``row = r.sum(1)`` [K]. ``y`` [K, C] is 0/1 and gives the sparsity;
    on CPU with sparse labels ``M`` sums the nnz(y) rows of ``k`` with ``F.embedding_bag`` instead
    of a dense ``C x K x d`` product, and no ``K x C`` temporary is made.
    """
    y = y.detach()
    k = k.detach()
    K, C = y.shape
    if K == 0 or C == 0:
        return k.new_zeros(C, k.shape[1]), y.new_zeros(C), y.new_zeros(K)
    if y.device.type == "cpu":
        nnz = _nnz(y)
        if nnz == 0:
            return k.new_zeros(C, k.shape[1]), y.new_zeros(C), y.new_zeros(K)
        if nnz <= _SPARSE_LABEL_MAX_DENSITY * K * C:
            nz = y.nonzero()                       # (key, label) pairs, row-major
            key, lab = nz[:, 0], nz[:, 1]
            vals = y[key, lab] if wts is None else y[key, lab] * wts.detach()[key, lab]
            row = torch.zeros(K, dtype=y.dtype, device=y.device).index_add_(0, key, vals)
            order = torch.sort(lab, stable=True).indices                # group by label
            key, lab, vals = key[order], lab[order], vals[order]
            counts = torch.bincount(lab, minlength=C)
            offsets = torch.cumsum(counts, 0) - counts
            col = torch.zeros(C, dtype=y.dtype, device=y.device).index_add_(0, lab, vals)
            m = F.embedding_bag(key, k, offsets, mode="sum", per_sample_weights=None if wts is None else vals)
            return m, col, row
    r = y if wts is None else y * wts.detach()
    return r.t() @ k, r.sum(0), r.sum(1)
