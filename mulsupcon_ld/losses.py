"""Losses of Section 3: MulSupCon (eqs. 1-4) and MulSupCon_LD, RLD (eqs. 5-9, 12, 14) and CLD
(eqs. 5, 10, 11, 13, 15), vectorised over anchors x (batch keys + queue).

Conventions shared by every function here (docs/method.md has the equation -> function table and
every reading of the paper that had to be chosen):

* ``query`` ``[B, d]``: the L2-normalised query-encoder outputs z_i (with gradient).
* ``keys`` ``[K, d]``: the L2-normalised key-encoder outputs of the batch, rows ``0..B-1`` in the
  same order as ``query`` (row ``i`` is k_i, the positive key of anchor ``i``), followed by the
  queue ``Q`` (``K = B + len(queue)``; a queue that is not yet full is just a shorter ``K``).
  Keys are always detached here: no gradient reaches the key encoder or the queue.
* ``query_labels`` ``[B, C]`` and ``key_labels`` ``[K, C]``: logical labels in {0, 1} (any dtype);
  ``key_labels[:B]`` must equal ``query_labels`` (the batch's own labels; ``Q_ll`` after them).
* ``A(i)``, the candidates of anchor ``i`` (the softmax denominator of eqs. 3, 5 and 10): all ``K``
  keys, i.e. every key of the batch (k_i included, as MoCo's positive) and the whole queue
  (MulSupCon's convention). ``LDOptions.in_batch_keys="own"`` selects the MoCo / Algorithm 1 literal
  reading A(i) = {k_i} + queue for the LD losses.
* ``P^j(i) = {p in A(i): y_p^j = 1}``; |P^j(i)| >= 1 for every label j of i because k_i is in A(i)
  and carries y_i. Should a caller break that (``key_labels[:B] != query_labels``) an empty
  ``P^j(i)`` contributes 0 instead of NaN.

Everything is computed in float32 (float64 inputs stay float64) with autocast disabled inside the
loss, so the functions can be called from a bf16-autocast region: the only large products are
``B x K x d`` and ``B x K x C`` and cost little next to the encoder.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from .names import ABLATIONS, LD_METHODS as VARIANTS

__all__ = [
    "ABLATIONS",
    "VARIANTS",
    "LDOptions",
    "Queue",
    "label_lists",
    "use_label_lists",
    "all_positive_mask",
    "any_positive_mask",
    "label_overlap",
    "per_label_positive_counts",
    "mulsupcon_loss",
    "ld_loss",
]


# Label products A @ R^T with A [B, C] sparse (a few labels per anchor) run on CPU as an
# embedding-bag sum of the nnz(A) rows of R^T (nnz(A) * K adds instead of B * C * K multiply-adds)
# when the density of A is at most this; dense matmul otherwise and always on accelerators.
_SPARSE_LABEL_MAX_DENSITY = 0.25

# From this many labels on, the MoCo label queue is also kept as padded label lists (``Queue.lists``,
# built once per key at enqueue): the label products over the queue then read the ~nnz(Q_ll) list
# entries instead of finding the nonzeros of the dense ``n x C`` queue every iteration, which on CPU
# costs more than the whole rest of the loss at Delicious' shape (``torch.nonzero`` of 4096 x 983:
# about 10 ms; the two list products: about 2.5 ms; benchmarks/results/bench_delicious_cpu.jsonl).
# Below it (Yeast 14, Scene 6 labels) the dense path is cheap and keeps its arithmetic.
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
    (at Delicious' shape the ``[B + n, C]`` concatenations of labels and distributions cost ~7 ms a step).

    ``keys`` [n, d] (Q), ``labels`` [n, C] (Q_ll, 0/1), ``dist`` [n, C] (Q_ld; ``None`` for MulSupCon),
    ``lists``: ``label_lists(labels)`` kept by :class:`mulsupcon_ld.moco.MoCo` when
    :func:`use_label_lists` (``None``: the dense labels are used). Nothing here carries gradient.
    """

    keys: torch.Tensor
    labels: torch.Tensor
    dist: torch.Tensor | None = None
    lists: torch.Tensor | None = None


# ------------------------------------------------------------------------------------ options
_CHOICES: dict[str, tuple[str, ...]] = {
    "ld_positive_set": ("any", "all", "per_label"),
    "in_batch_keys": ("all", "own"),
    "g2_weight": ("neg_log_prob", "raw", "prob"),
    "h_target": ("raw", "normalized"),
    "weight_grad": ("batch", "none"),
    "pos_norm": ("none", "per_label"),
    "beta_per": ("anchor", "batch"),
    "reduction": ("sum", "mean"),
}


@dataclass(frozen=True)
class LDOptions:
    """Readings of the ambiguous parts of Section 3.2 (docs/method.md, "Ambiguities and readings").

    The defaults are the chosen readings; every other value is a plausible alternative.

    ld_positive_set: positive set P(i) of the label-distribution terms G (eq. 7) and H (eq. 8):
        ``"any"`` (eq. 2; Algorithm 1 line 11, abstract, introduction), ``"all"`` (eq. 1; the
        sentence before eq. 5), ``"per_label"`` (the multiset of the P^j(i) of eq. 12: key p counted
        |y_i & y_p| times). With "any"/"all" the own key k_i is always in P(i) (Algorithm 1 line 13
        stacks k[i] unconditionally; this matters only for an anchor without labels).
    in_batch_keys: ``"all"``: A(i) = every batch key + queue (eqs. 2/5 text, MulSupCon);
        ``"own"``: A(i) = {k_i} + queue (Algorithm 1 stacks only k[i]; MoCo's l_pos/l_neg).
    g2_weight: the weight of G^(2) (eq. 11) built from C^(2) (eq. 10, a log-probability <= 0):
        ``"neg_log_prob"`` (-C^(2) >= 0, the contrastive loss of the pair; eq. 5 lacks its minus
        sign and eq. 10 copies eq. 5), ``"raw"`` (C^(2) as printed; pushes distributions apart),
        ``"prob"`` (exp C^(2), a similarity kernel like C^(1)).
    detach_g_weight: C^(1) / C^(2) inside G are constants (graph weights, as DLDL's RBF graph);
        False lets G also move the embeddings.
    h_target: ``"raw"``: H = ||y_p - d_p||^2 with 0/1 labels as printed; ``"normalized"``: y_p/|y_p|.
    weight_grad: gradient through the weights d_p^j of the contrastive term of eqs. 12/13:
        ``"batch"`` (Algorithm 1: D = softmax(fc(q)) carries gradient; the queue part never does),
        ``"none"`` (the weights are constants).
    pos_norm: ``"none"``: eqs. 12/13 as printed (no 1/|P^j(i)|); ``"per_label"``: divide each label's
        sum by |P^j(i)| as eq. 3 does.
    beta_per: ``"anchor"``: beta*||W||_F^2 inside every L_i and summed by eq. 14 (B times);
        ``"batch"``: once per batch.
    reduction: ``"sum"`` over anchors (eqs. 14/15 as printed) or ``"mean"`` (the sum / B).
    """

    ld_positive_set: str = "any"
    in_batch_keys: str = "all"
    g2_weight: str = "neg_log_prob"
    detach_g_weight: bool = True
    h_target: str = "raw"
    weight_grad: str = "batch"
    pos_norm: str = "none"
    beta_per: str = "anchor"
    reduction: str = "sum"

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"LDOptions.{name}={value!r}; choose one of {', '.join(allowed)}")
        if not isinstance(self.detach_g_weight, bool):
            raise ValueError(f"LDOptions.detach_g_weight must be a bool, got {self.detach_g_weight!r}")

    @classmethod
    def coerce(cls, options: "LDOptions | Mapping[str, Any] | None") -> "LDOptions":
        """``None`` -> defaults; a mapping (e.g. from a config file) -> ``LDOptions(**mapping)``."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(options) - known)
            if unknown:
                raise ValueError(f"unknown LDOptions field(s) {unknown}; known: {sorted(known)}")
            return cls(**dict(options))
        raise TypeError(f"options must be LDOptions, a mapping or None, not {type(options).__name__}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ helpers
def _no_autocast(device: torch.device):
    dev = device.type
    available = getattr(torch.amp, "is_autocast_available", None)
    if available is not None and available(dev):
        return torch.autocast(device_type=dev, enabled=False)
    return contextlib.nullcontext()


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_shapes(query: torch.Tensor, keys: torch.Tensor, query_labels: torch.Tensor,
                  key_labels: torch.Tensor) -> tuple[int, int, int]:
    if query.dim() != 2 or keys.dim() != 2 or query.shape[1] != keys.shape[1]:
        raise ValueError(f"query [B, d] and keys [K, d] expected, got {tuple(query.shape)} and {tuple(keys.shape)}")
    B, K = query.shape[0], keys.shape[0]
    if K < B:
        raise ValueError(f"keys must hold the batch's own B={B} keys first (then the queue); got K={K}")
    if query_labels.dim() != 2 or query_labels.shape[0] != B:
        raise ValueError(f"query_labels must be [B={B}, C], got {tuple(query_labels.shape)}")
    C = query_labels.shape[1]
    if tuple(key_labels.shape) != (K, C):
        raise ValueError(f"key_labels must be [K={K}, C={C}], got {tuple(key_labels.shape)}")
    return B, K, C


def _nnz(t: torch.Tensor) -> int:
    """The number of nonzeros, to choose the sparse or dense path before paying for ``nonzero()``
    (about 10x the count at Yeast's shape, and wasted where the dense path is taken)."""
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


def _safe_inv(n: torch.Tensor) -> torch.Tensor:
    """1/n where n > 0, else 0 (an empty P^j(i) contributes nothing)."""
    return torch.where(n > 0, 1.0 / n.clamp_min(1e-30), torch.zeros_like(n))


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


def _sqnorm(x: torch.Tensor, one_pass: bool = False) -> torch.Tensor:
    """Row-wise squared norm without a full-size temporary. ``one_pass`` (the many-label path):
    ``vector_norm(...)^2``, since ``einsum("kc,kc->k")`` runs as K batched dot products on CPU
    (10 ms instead of 0.5 ms for 4096 x 983); otherwise the einsum, the arithmetic of earlier commits."""
    return torch.linalg.vector_norm(x, dim=1).square() if one_pass else torch.einsum("kc,kc->k", x, x)


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
        # no padding_idx: the pad row is zero anyway, and padding_idx takes a 10x slower kernel
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


# exp(e) for shifted logits e >= -2 * bound stays a normal float32 number while bound <= this
_BOUND_SHIFT_MAX = 40.0


def _lse_parts(qs: torch.Tensor, k: torch.Tensor, n_own: int, keep: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:class:`_SimLogSumExp`'s forward without autograd: ``(lse, e, m, p, total)``, where ``p`` is
    the unnormalised ``exp(e)`` over A(i) and ``total`` its row sums (what the backward needs)."""
    m = None
    if qs.device.type == "cpu" and k.shape[0]:
        bound = torch.linalg.vector_norm(qs, dim=1, keepdim=True) * torch.linalg.vector_norm(k, dim=1).max()
        if float(bound.max()) <= _BOUND_SHIFT_MAX:
            m = bound
            e = torch.addmm(m, qs, k.t(), beta=-1.0)        # l - m, one pass less
    if m is None:
        e = qs @ k.t()
        if n_own:
            diag = e[:, :n_own].diagonal().unsqueeze(1).clone()     # e is shifted in place below
            m = torch.maximum(diag, e[:, n_own:].amax(1, keepdim=True)) if e.shape[1] > n_own else diag
        else:
            m = e.amax(1, keepdim=True)
        e.sub_(m)
    p = e.exp() if keep else e.exp_()
    if n_own:
        p[:, :n_own].mul_(torch.eye(n_own, dtype=p.dtype, device=p.device))
    total = p.sum(1, keepdim=True)                  # sum over A(i) of exp(l - m)
    lse = (m + total.log()).squeeze(1)
    e_out = e if keep else e.new_empty(0)
    m_out = m.squeeze(1)
    return lse, e_out, m_out, p, total


class _SimLogSumExp(torch.autograd.Function):
    """``lse_i = log sum_{a in A(i)} exp(qs_i . k_a)`` with gradient to ``qs`` (keys are constants).

    Also returns the shifted logits ``e = qs @ k.T - m`` (when ``keep``; an empty tensor otherwise)
    and the shift ``m`` [B], both without gradient; the caller may overwrite ``e``. ``n_own > 0``
    restricts A(i) to {k_i} + keys[n_own:] (``in_batch_keys="own"``).

    Fewer passes over ``B x K`` than autograd's matmul + logsumexp: on CPU the shift is the
    Cauchy-Schwarz bound m_i = |qs_i| max_p |k_p| >= max_p l_ip, folded into the GEMM (addmm), when
    that bound is small enough for exp not to underflow (|l| <= 40, e.g. unit vectors and tau >= 0.025);
    otherwise (and on accelerators) the row maximum. The unnormalised exp(e) is saved, and the
    backward is ``(exp(e) @ k) * g / sum exp(e)``: no elementwise pass over ``B x K`` at all.
    """

    @staticmethod
    def forward(ctx, qs: torch.Tensor, k: torch.Tensor, n_own: int, keep: bool):
        lse, e_out, m_out, p, total = _lse_parts(qs, k, n_own, keep)
        ctx.save_for_backward(p, total, k)
        ctx.mark_non_differentiable(e_out, m_out)
        return lse, e_out, m_out

    @staticmethod
    def backward(ctx, grad_lse: torch.Tensor, grad_e, grad_m):
        p, total, k = ctx.saved_tensors
        grad_qs = (p @ k) * (grad_lse.unsqueeze(1) / total)
        return grad_qs, None, None, None


# ------------------------------------------------------------------------------------ MulSupCon
def mulsupcon_loss(query: torch.Tensor, keys: torch.Tensor, query_labels: torch.Tensor,
                   key_labels: torch.Tensor, temperature: float = 0.1, queue: Queue | None = None
                   ) -> torch.Tensor:
    """MulSupCon batch loss, eqs. (3)-(4).

    L_i = sum_{j in y_i} -1/|P^j(i)| sum_{p in P^j(i)} log softmax_{a in A(i)}(z_i.z_a/tau)[p]   (3)
    L   = (1 / sum_i |y_i|) sum_i L_i                                                       (4)

    A(i) = all K keys (the batch's keys, k_i included as MoCo's positive, then the queue), as in
    MulSupCon's reference code; P^j(i) = {p in A(i): y_p^j = 1}, so |P^j(i)| = N_j, the column
    count of ``key_labels``. With l_ip = z_i.z_p/tau and a_ij = y_i^j / N_j the sum factorises:

        L_i = sum_j a_ij sum_p y_p^j (lse_i - l_ip) = lse_i sum_j a_ij N_j - (z_i/tau).(a @ M)_i,

    where M_j = sum_p y_p^j z_p (label sums of the keys). So only the ``B x K`` similarity and its
    logsumexp are dense; no ``B x K x C`` product. Anchors without labels contribute 0 and nothing
    to the normaliser sum_i |y_i|; a batch without any label gives 0 (with a graph). ``keys`` are
    detached. With ``queue``, ``keys``/``key_labels`` are the batch's own B keys only and the queue
    is its own block (:class:`Queue`; same value, no concatenation).
    """
    if queue is not None:
        return _mulsupcon_blocks(query, keys, query_labels, key_labels, temperature, queue)
    B, K, C = _check_shapes(query, keys, query_labels, key_labels)
    dt = _compute_dtype(query)
    with _no_autocast(query.device):
        q = query.to(dt)
        k = keys.detach().to(dt)
        yq = query_labels.detach().to(dt)
        yk = key_labels.detach().to(dt)
        return _MulSupConNode.apply(q, k, yq, yk, temperature)


class _MulSupConNode(torch.autograd.Function):
    """:func:`mulsupcon_loss` over all K keys as ONE autograd node, gradient to ``q`` only.

    The forward is the factorised eqs. (3)-(4); the backward is, op for op, what autograd computes
    for the same forward written as tensor operations (``DivBackward0``, ``SumBackward0``,
    ``SubBackward0``, ``MulBackward0``, ``SumBackward1``, :class:`_SimLogSumExp`'s backward,
    ``DivBackward1``: every element gets the same IEEE operations, and the one sum of two
    contributions is commutative), so loss and gradient are those of that composition bit for bit
    (tests/test_losses.py) with about 20 graph nodes and 60 operator calls fewer per step.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, yq: torch.Tensor, yk: torch.Tensor, temperature: float):
        qs = q / temperature
        lse, _, _, p, total = _lse_parts(qs, k, 0, False)     # log sum_{a in A(i)} exp(l_ia)
        m_lab, n, _ = _label_sums(yk, None, k)                 # M_j and N_j = |P^j(i)|
        a = yq * _safe_inv(n)
        v = a @ m_lab                                          # x_i = qs_i . v_i = sum_p W_ip l_ip
        c = (a * n).sum(1)
        per_anchor = lse * c - (qs * v).sum(1)                 # L_i of eq. (3)
        n_labels = yq.sum().clamp_min(1.0)
        ctx.save_for_backward(p, total, k, v, c, n_labels)
        ctx.temperature = temperature
        return per_anchor.sum() / n_labels                     # eq. (4)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p, total, k, v, c, n_labels = ctx.saved_tensors
        g = grad / n_labels                                    # d loss / d L_i
        grad_qs = (p @ k) * ((g * c).unsqueeze(1) / total) + v * -g     # via lse_i, via x_i
        return grad_qs / ctx.temperature, None, None, None, None


def _mulsupcon_blocks(query: torch.Tensor, keys_b: torch.Tensor, query_labels: torch.Tensor,
                      key_labels_b: torch.Tensor, temperature: float, queue: Queue) -> torch.Tensor:
    """:func:`mulsupcon_loss` with A(i) given as the batch block and the queue block (without label
    lists: concatenated, the arithmetic of earlier commits bit for bit; cheap at few labels)."""
    _check_shapes(query, keys_b, query_labels, key_labels_b)
    _check_queue(queue, keys_b.shape[1], query_labels.shape[1], need_dist=False)
    if queue.lists is None or query.device.type != "cpu":
        return mulsupcon_loss(query, torch.cat([keys_b, queue.keys.to(keys_b.dtype)]), query_labels,
                              torch.cat([key_labels_b, queue.labels.to(key_labels_b.dtype)]), temperature)
    dt = _compute_dtype(query)
    with _no_autocast(query.device):
        qs = query.to(dt) / temperature
        k_b, k_q = keys_b.detach().to(dt), queue.keys.detach().to(dt)
        yq, yk_b = query_labels.detach().to(dt), key_labels_b.detach().to(dt)
        ql = _queue_labels(queue.labels, queue.lists, dt)
        lse = _SimLogSumExp.apply(qs, torch.cat([k_b, k_q]), 0, False)[0]
        n = ql.per_label() + yk_b.sum(0)                       # N_j = |P^j(i)|
        a = yq * _safe_inv(n)
        x_q = ql.contrastive(a, qs, None, k_q)[0]
        x = (qs * ((a @ yk_b.t()) @ k_b)).sum(1) + x_q         # sum_p W_ip l_ip, batch + queue
        per_anchor = lse * (a * n).sum(1) - x
        return per_anchor.sum() / yq.sum().clamp_min(1.0)


def _check_queue(queue: Queue, d: int, C: int, need_dist: bool) -> None:
    n = queue.keys.shape[0]
    if queue.keys.dim() != 2 or queue.keys.shape[1] != d or tuple(queue.labels.shape) != (n, C):
        raise ValueError(f"queue keys [n, d={d}] and labels [n, C={C}] expected, got "
                         f"{tuple(queue.keys.shape)} and {tuple(queue.labels.shape)}")
    if need_dist and (queue.dist is None or tuple(queue.dist.shape) != (n, C)):
        raise ValueError(f"queue.dist [n={n}, C={C}] expected for the LD losses")
    if queue.lists is not None and (queue.lists.dim() != 2 or queue.lists.shape[0] != n):
        raise ValueError(f"queue.lists [n={n}, L] expected, got {tuple(queue.lists.shape)}")


# ------------------------------------------------------------------------------------ MulSupCon_LD
def _log_tiny(dtype: torch.dtype) -> float:
    """log of the smallest normal number: exp of anything below is subnormal (slow on CPUs) or 0.

    C^(1) with sigma = 0.01 is exp(-5000 ||z_i - z_p||^2), subnormal for almost every pair; those
    weights are set to exactly 0 (what flush-to-zero arithmetic would give; the in-place path
    shifts every weight down by exp(log tiny + 1) ~ 3e-38 in float32 to get there).
    """
    return math.log(torch.finfo(dtype).tiny)


def _g_weight(variant: str, opt: LDOptions, l: torch.Tensor, lse: torch.Tensor, nq: torch.Tensor | None,
              nk: torch.Tensor | None, temperature: float, sigma: float, inplace: bool = False) -> torch.Tensor:
    """c_ip of G: C^(1) (eq. 6) for RLD, a function of C^(2) = l_ip - lse_i (eq. 10) for CLD.

    ``l`` [B, n]: logits of a block of keys; ``nq`` [B, 1] and ``nk`` [1, n]: squared norms
    (RLD only). ``inplace`` overwrites ``l`` (a buffer without gradient).
    """
    if not inplace:
        l = l.clone()
    if variant == "rld":      # -||z_i - z_p||^2 / 2 sigma^2 = (2 tau l_ip - |z_i|^2 - |z_p|^2) / 2 sigma^2 <= 0
        inv = 0.5 / (sigma * sigma)
        floor = _log_tiny(l.dtype) + 1.0          # exp(floor) is a normal number; subtracted below
        e = l.mul_(2.0 * temperature * inv).sub_(nq * inv).sub_(nk * inv).clamp_(floor, 0.0).exp_()
        return e.sub_(math.exp(floor)).clamp_(min=0.0)
    if opt.g2_weight == "neg_log_prob":
        return l.neg_().add_(lse.unsqueeze(1))
    l.sub_(lse.unsqueeze(1))
    return l if opt.g2_weight == "raw" else l.exp_()


def _g_weight_autograd(variant: str, opt: LDOptions, l: torch.Tensor, lse: torch.Tensor,
                       nq: torch.Tensor | None, nk: torch.Tensor | None, temperature: float,
                       sigma: float) -> torch.Tensor:
    """Out-of-place twin of ``_g_weight`` for ``detach_g_weight=False`` (gradient through c)."""
    if variant == "rld":
        e = (nq + nk - (2.0 * temperature) * l).clamp_min(0.0) * (-0.5 / (sigma * sigma))
        return torch.exp(e.masked_fill(e.detach() < _log_tiny(e.dtype), float("-inf")))
    if opt.g2_weight == "neg_log_prob":
        return lse.unsqueeze(1) - l
    if opt.g2_weight == "raw":
        return l - lse.unsqueeze(1)
    return torch.exp(l - lse.unsqueeze(1))


def _multiplicity(opt: LDOptions, inter: torch.Tensor, nyq: torch.Tensor, nyk: torch.Tensor) -> torch.Tensor:
    """m_ip: how often key p is in P(i) (0/1 for ANY/ALL, |y_i & y_p| for per-label).

    ``inter`` (the |y_i & y_p| counts, a fresh buffer) may be overwritten.
    """
    if opt.ld_positive_set == "per_label":
        return inter
    if opt.ld_positive_set == "any":
        return inter.clamp_(max=1.0)                      # counts are integers >= 0
    pos = (inter == nyq.unsqueeze(1)) & (inter == nyk.unsqueeze(0))
    return pos.to(inter.dtype)


@dataclass
class _LDBatch:
    """The operands of ``ld_loss`` in the compute dtype, split into the batch (``_b``) and queue
    (``_q``) blocks of the keys. Only ``q``, ``dq`` and ``dk_b`` carry gradient."""

    B: int
    own: bool                  # in_batch_keys == "own": A(i) = {k_i} + queue
    q: torch.Tensor            # z_i [B, d]
    qs: torch.Tensor           # z_i / tau
    k: torch.Tensor            # all keys [K, d]
    yq: torch.Tensor           # y_i [B, C]
    yk_b: torch.Tensor         # y_p of the batch's own keys [B, C]
    ql: Any                    # y_p of the queue: _DenseLabels or _ListLabels
    dq: torch.Tensor           # d_i, anchor side [B, C]
    dk_b: torch.Tensor         # d_p of the batch's own keys (gradient kept) [B, C]
    dk_q: torch.Tensor         # Q_ld, never any gradient [K - B, C]


def _ld_batch(query, keys, query_labels, key_labels, query_dist, key_dist, opt: LDOptions,
              temperature: float, queue: Queue | None) -> _LDBatch:
    """Split A(i) into the batch block and the queue block (``queue=None``: rows ``B:`` of the keys)."""
    dt = _compute_dtype(query)
    B = query.shape[0]
    q = query.to(dt)
    if queue is None:
        k = keys.detach().to(dt)
        queue = Queue(keys=k[B:], labels=key_labels[B:], dist=key_dist[B:])
    else:
        k = torch.cat([keys.detach().to(dt), queue.keys.detach().to(dt)])
    return _LDBatch(B=B, own=opt.in_batch_keys == "own", q=q, qs=q / temperature, k=k,
                    yq=query_labels.detach().to(dt), yk_b=key_labels[:B].detach().to(dt),
                    ql=_queue_labels(queue.labels, queue.lists, dt), dq=query_dist.to(dt),
                    dk_b=key_dist[:B].to(dt), dk_q=queue.dist.detach().to(dt))


def _check_ld_args(variant: str, ablation: str, sigma: float, B: int, K: int, C: int,
                   query_dist: torch.Tensor, key_dist: torch.Tensor) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}; choose one of {', '.join(VARIANTS)}")
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation={ablation!r}; choose one of {', '.join(ABLATIONS)}")
    if tuple(query_dist.shape) != (B, C) or tuple(key_dist.shape) != (K, C):
        raise ValueError(f"query_dist [B={B}, C={C}] and key_dist [K={K}, C={C}] expected, got "
                         f"{tuple(query_dist.shape)} and {tuple(key_dist.shape)}")
    if variant == "rld" and not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")


def _log_softmax_parts(t: _LDBatch, fast: bool):
    """Eqs. (5)/(10): C^(2)_ip = l_ip - lse_i over A(i), l_ip = z_i.z_p / tau.

    Returns ``(lse, l, shift, l_bg)``: ``lse`` [B] (gradient), ``l`` [B, K] (``fast``: the shifted
    logits ``l - shift`` without gradient, a buffer the G weights may overwrite; else the logits
    with gradient), ``shift`` [B] (``fast`` only) and ``l_bg`` the batch block with gradient
    (``[B, B]``, or the diagonal l_ii for ``own``).
    """
    B, own, qs, k = t.B, t.own, t.qs, t.k
    if fast:
        lse, l, shift = _SimLogSumExp.apply(qs, k, B if own else 0, True)
        l_bg = (qs * k[:B]).sum(1) if own else qs @ k[:B].t()
        return lse, l, shift, l_bg
    l = qs @ k.t()
    if own:
        l_own = l[:, :B].diagonal()
        lse = torch.logaddexp(l_own, torch.logsumexp(l[:, B:], dim=1)) if k.shape[0] > B else l_own
    else:
        lse = torch.logsumexp(l, dim=1)
    return lse, l, None, (l[:, :B].diagonal() if own else l[:, :B])


def _contrastive_term(t: _LDBatch, opt: LDOptions, lse: torch.Tensor, l_bg: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """First term of eqs. (12)/(13), T_i = sum_j a_ij sum_{p in A(i)} r_pj (lse_i - l_ip), with
    r_pj = y_p^j d_p^j and a_ij = y_i^j (or y_i^j / |P^j(i)| for ``pos_norm="per_label"``).

    Returns ``(T [B], row_rq)``; ``row_rq`` [K - B] = sum_j y_p^j d_p^j of the queue keys (reused by H).
    """
    B, own, yq = t.B, t.own, t.yq
    a = yq * _safe_inv(_counts(t.yk_b, t.ql.per_label(), own)) if opt.pos_norm == "per_label" else yq
    r_b = t.yk_b * (t.dk_b if opt.weight_grad == "batch" else t.dk_b.detach())
    x, col_rq, row_rq = t.ql.contrastive(a, t.qs, t.dk_q, t.k[B:])    # queue part of sum r l, r = y * d
    if own:
        r_sum = col_rq.unsqueeze(0) + r_b                              # sum_{p in A(i)} r_pj
        x = x + (a * r_b).sum(1) * l_bg
    else:
        r_sum = (col_rq + r_b.sum(0)).unsqueeze(0)
        x = x + ((a @ r_b.t()) * l_bg).sum(1)
    return lse * (a * r_sum).sum(1) - x, row_rq


def _h_per_key(t: _LDBatch, opt: LDOptions, row_rq: torch.Tensor, nyk_b: torch.Tensor, nyk_q: torch.Tensor,
               nd_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (8) per key p: ||t_p - d_p||^2 with t = y (raw) or y / |y| (normalized), as
    ``(h_b [B], h_q [K - B])``; the queue's from the sums above (||t||^2 - 2 t.d + ||d||^2)."""
    t_b = t.yk_b * _safe_inv(nyk_b).unsqueeze(1) if opt.h_target == "normalized" else t.yk_b
    h_b = ((t_b - t.dk_b) ** 2).sum(1)
    if opt.h_target == "normalized":
        return h_b, _safe_inv(nyk_q) * (1.0 - 2.0 * row_rq) + nd_q.squeeze(1)
    return h_b, nyk_q - 2.0 * row_rq + nd_q.squeeze(1)


def _g_term(w: torch.Tensor, dq: torch.Tensor, dd: torch.Tensor, dk: torch.Tensor,
            nd: torch.Tensor | None = None, many: bool = False) -> torch.Tensor:
    """Eqs. (7)/(11), G_i = sum_p w_ip ||d_i - d_p||^2, for one block of keys (per anchor, [B]).

    ``w`` [B, n] (weights c_ip times the multiplicity of p in P(i)) is expanded as
    |d_i|^2 sum_p w_ip + sum_p w_ip |d_p|^2 - 2 d_i . sum_p w_ip d_p with one
    ``(B x n) . (n x (C + 2))`` product (``dd`` = |d_i|^2 [B], ``nd`` = |d_p|^2 [n, 1]); ``many``
    (the many-label path) takes ``w @ dk`` and the two sums apart instead, saving the ``[n, C + 2]``
    copy of the queue's distributions per step (~1.4 ms at Delicious' shape);
    ``w`` [B] is the diagonal block (key p = i only, ``dk`` [B, C] aligned with ``dq``).
    """
    if w.dim() == 1:
        return w * ((dq - dk) ** 2).sum(1)
    if many:
        return dd * w.sum(1) + (w @ nd).squeeze(1) - 2.0 * (dq * (w @ dk)).sum(1)
    C = dq.shape[1]
    stats = w @ torch.cat([dk, nd, torch.ones_like(nd)], dim=1)
    return dd * stats[:, C + 1] + stats[:, C] - 2.0 * (dq * stats[:, :C]).sum(1)


@dataclass
class _GWeights:
    """How to get c_ip of G for a block of logits (``fn`` = ``_g_weight`` or its autograd twin)."""

    fn: Any
    fast: bool
    variant: str
    opt: LDOptions
    l: torch.Tensor
    lse: torch.Tensor
    nq: torch.Tensor | None
    nk: torch.Tensor | None
    temperature: float
    sigma: float

    @classmethod
    def make(cls, t: _LDBatch, variant: str, opt: LDOptions, lse, l, shift, temperature, sigma) -> "_GWeights":
        fast = opt.detach_g_weight
        nq = nk = None
        if variant == "rld":
            nq = (t.q * t.q).sum(1, keepdim=True)
            nk = (t.k * t.k).sum(1).unsqueeze(0)
        if not fast:
            return cls(_g_weight_autograd, False, variant, opt, l, lse, nq, nk, temperature, sigma)
        # the buffer holds l - shift: C^(2) = (l - shift) - (lse - shift), and for RLD
        # 2 tau l - |z_i|^2 = 2 tau (l - shift) - (|z_i|^2 - 2 tau shift)
        if variant == "rld":
            nq = nq.detach() - (2.0 * temperature) * shift.unsqueeze(1)
        return cls(_g_weight, True, variant, opt, l, lse.detach() - shift, nq, nk, temperature, sigma)

    def block(self, cols: slice, diagonal: bool = False, inplace: bool = False) -> torch.Tensor:
        """c for the logits ``l[:, cols]`` ([B, n]; ``diagonal``: the [B] entries l_ii)."""
        l = self.l[:, cols]
        nk = None if self.nk is None else self.nk[:, cols]
        if diagonal:
            l, nk = l.diagonal().unsqueeze(1), None if nk is None else nk[0].unsqueeze(1)
        extra = {"inplace": True} if (self.fast and inplace) else {}
        with torch.no_grad() if self.fast else contextlib.nullcontext():
            c = self.fn(self.variant, self.opt, l, self.lse, self.nq, nk, self.temperature, self.sigma, **extra)
        return c.squeeze(1) if diagonal else c


def _batch_block(t: _LDBatch, opt: LDOptions, gw: _GWeights, nyq, nyk_b, dd, h_b):
    """G and H (eqs. 7/11, 8) over the batch's own keys: all B keys, or only k_i (``own``)."""
    B = t.B
    if t.own:
        m_own = nyq if opt.ld_positive_set == "per_label" else torch.ones_like(nyq)
        c_own = gw.block(slice(0, B), diagonal=True)
        return _g_term(m_own * c_own, t.dq, dd, t.dk_b), m_own * h_b
    m_b = _multiplicity(opt, t.yq @ t.yk_b.t(), nyq, nyk_b)
    if opt.ld_positive_set != "per_label":
        m_b = torch.maximum(m_b, torch.eye(B, dtype=m_b.dtype, device=m_b.device))   # Alg. 1 line 13
    w_b = m_b * gw.block(slice(0, B))
    nd_b = (t.dk_b * t.dk_b).sum(1, keepdim=True)
    return _g_term(w_b, t.dq, dd, t.dk_b, nd_b), m_b @ h_b


def _queue_block(t: _LDBatch, opt: LDOptions, gw: _GWeights, nyq, nyk_q, dd, h_q, nd_q):
    """G and H (eqs. 7/11, 8) over the queue's keys (the logits buffer is reused in place)."""
    B = t.B
    m_q = _multiplicity(opt, t.ql.overlap(t.yq), nyq, nyk_q)
    h = m_q @ h_q
    c_q = gw.block(slice(B, None), inplace=True)
    w_q = c_q.mul_(m_q) if gw.fast else c_q * m_q
    return _g_term(w_q, t.dq, dd, t.dk_q, nd_q, many=isinstance(t.ql, _ListLabels)), h


def _combine(contrastive, g, h, fc_weight, dt, B: int, opt: LDOptions, alpha: float, beta: float,
             ablation: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. (9)/(11) inside eq. (12)/(13), summed by eq. (14)/(15); ``ablation`` drops alpha H and/or
    beta ||W||^2. Returns the loss and its parts (reduced as the loss)."""
    use_alpha = ablation in ("none", "no-beta")
    use_beta = ablation in ("none", "no-alpha")
    w_sq = fc_weight.to(dt).pow(2).sum()
    scale = 1.0 / B if opt.reduction == "mean" else 1.0
    contrastive_r, g_r, h_r = contrastive.sum() * scale, g.sum() * scale, h.sum() * scale
    n_beta = B if opt.beta_per == "anchor" else 1
    alpha_h = alpha * h_r if use_alpha else torch.zeros_like(h_r)
    beta_w = (beta * n_beta * scale) * w_sq if use_beta else torch.zeros_like(w_sq)
    loss = contrastive_r + g_r
    if use_alpha:
        loss = loss + alpha_h
    if use_beta:
        loss = loss + beta_w
    return loss, {"contrastive": contrastive_r, "g": g_r, "h": h_r, "alpha_h": alpha_h, "w_sq": w_sq,
                  "beta_w": beta_w, "loss": loss}


def ld_loss(query: torch.Tensor, keys: torch.Tensor, query_labels: torch.Tensor, key_labels: torch.Tensor,
            query_dist: torch.Tensor, key_dist: torch.Tensor, fc_weight: torch.Tensor, *,
            variant: str, alpha: float, beta: float, sigma: float = 0.01, temperature: float = 0.1,
            ablation: str = "none", options: LDOptions | Mapping[str, Any] | None = None,
            return_parts: bool = False, queue: Queue | None = None):
    """MulSupCon_RLD (eqs. 5-9, 12, 14; ``variant="rld"``) or MulSupCon_CLD (eqs. 5, 10, 11, 13, 15;
    ``variant="cld"``) batch loss.

    Per anchor i (defaults of ``LDOptions``; docs/method.md gives every reading and its switch):

    * C^(2)_{i,p} = log softmax_{a in A(i)}(z_i.z_a/tau)[p]                          (10), (5)
    * T_i = -sum_{j in y_i} sum_{p in P^j(i)} d_p^j y_p^j C^(2)_{i,p}      first term of (12)/(13)
    * C^(1)_{i,p} = exp(-||z_i - z_p||^2 / (2 sigma^2))                                    (6)
    * G_i = sum_{p in P(i)} c_{i,p} ||d_i - d_p||^2, c = C^(1) (RLD) or -C^(2) (CLD)  (7), (11)
    * H_i = sum_{p in P(i)} ||y_p - d_p||^2                                                (8)
    * L_i = T_i + G_i + alpha H_i + beta ||W||_F^2                     (9)+(12) / (11)+(13)
    * L = sum_i L_i                                                                 (14) / (15)

    P(i) = k_i plus the ANY-positives of A(i) (Algorithm 1 lines 11-17).

    Shapes: ``query_dist`` [B, C] = softmax(fc(.)) of the batch (with gradient); ``key_dist`` [K, C]
    aligned with ``keys`` (``cat([query_dist, queue_dist])``; rows ``B:`` are detached here, so the
    queue never receives gradient); ``fc_weight`` = W of the label-distribution head.
    ``ablation``: ``"no-alpha"`` drops alpha*H, ``"no-beta"`` drops beta*||W||^2, ``"no-all"`` both
    (Figure 2). ``options``: ``LDOptions``, a mapping of its fields, or ``None`` (defaults).

    Vectorised: T factorises like ``mulsupcon_loss`` (label sums of keys weighted by d); G and H
    need the ``B x K`` positive weights and one ``(B x K) . (K x (C + 2))`` product. One helper per
    equation group: ``_log_softmax_parts`` (5/10), ``_contrastive_term`` (12/13), ``_h_per_key``
    (8), ``_g_term`` (7/11, used by ``_batch_block`` and ``_queue_block``), ``_combine`` (9/11, 14/15).

    ``queue``: A(i)'s queue as its own block (:class:`Queue`, what :class:`mulsupcon_ld.moco.MoCo`
    hands over); then ``keys``, ``key_labels`` and ``key_dist`` hold only the batch's B keys. Same
    value as concatenating them, without the concatenation.

    Returns the loss, or ``(loss, parts)`` with ``return_parts``: detached 0-dim tensors
    ``contrastive`` (sum of T_i), ``g``, ``h`` (unweighted), ``alpha_h``, ``w_sq`` (||W||_F^2),
    ``beta_w`` (the term as added) and ``loss``, reduced as the loss is (sum or mean over anchors).
    """
    opt = LDOptions.coerce(options)
    B, K, C = _check_shapes(query, keys, query_labels, key_labels)
    _check_ld_args(variant, ablation, sigma, B, K, C, query_dist, key_dist)
    if queue is not None:
        _check_queue(queue, keys.shape[1], C, need_dist=True)
    with _no_autocast(query.device):
        t = _ld_batch(query, keys, query_labels, key_labels, query_dist, key_dist, opt, temperature, queue)
        lse, l, shift, l_bg = _log_softmax_parts(t, opt.detach_g_weight)
        contrastive, row_rq = _contrastive_term(t, opt, lse, l_bg)
        nyq, nyk_b, nyk_q = t.yq.sum(1), t.yk_b.sum(1), t.ql.per_key()
        nd_q = _sqnorm(t.dk_q, one_pass=isinstance(t.ql, _ListLabels)).unsqueeze(1)
        h_b, h_q = _h_per_key(t, opt, row_rq, nyk_b, nyk_q, nd_q)
        dd = (t.dq * t.dq).sum(1)
        gw = _GWeights.make(t, variant, opt, lse, l, shift, temperature, sigma)
        g_b, h_b = _batch_block(t, opt, gw, nyq, nyk_b, dd, h_b)
        g_q, h_q = _queue_block(t, opt, gw, nyq, nyk_q, dd, h_q, nd_q)
        loss, parts = _combine(contrastive, g_b + g_q, h_b + h_q, fc_weight, t.q.dtype, B, opt,
                               alpha, beta, ablation)
    if not return_parts:
        return loss
    return loss, {name: v.detach() for name, v in parts.items()}
