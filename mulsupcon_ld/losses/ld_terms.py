"""MulSupCon_LD's operands and one helper per equation group: the log-softmax (5/10), the contrastive
term (12/13), H per key (8) and G over a block of keys (7/11)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..names import ABLATIONS, LD_METHODS as VARIANTS
from .common import _compute_dtype, _safe_inv
from .nodes import _SimLogSumExp
from .options import LDOptions
from .products import _counts
from .queue import Queue, _queue_labels


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
    copy of the queue's distributions per step (docs/performance.md, "G without the queue copy");
    ``w`` [B] is the diagonal block (key p = i only, ``dk`` [B, C] aligned with ``dq``).
    """
    if w.dim() == 1:
        return w * ((dq - dk) ** 2).sum(1)
    if many:
        return dd * w.sum(1) + (w @ nd).squeeze(1) - 2.0 * (dq * (w @ dk)).sum(1)
    C = dq.shape[1]
    stats = w @ torch.cat([dk, nd, torch.ones_like(nd)], dim=1)
    return dd * stats[:, C + 1] + stats[:, C] - 2.0 * (dq * stats[:, :C]).sum(1)
