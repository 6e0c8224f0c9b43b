"""MulSupCon, eqs. (3)-(4)."""
from __future__ import annotations

import torch

from .common import _check_shapes, _compute_dtype, _no_autocast, _safe_inv
from .nodes import _MulSupConNode, _SimLogSumExp
from .queue import Queue, _check_queue, _queue_labels


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
