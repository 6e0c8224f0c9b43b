"""MulSupCon_RLD and MulSupCon_CLD (eqs. 5-15): the G and H blocks, the sum, and ``ld_loss``."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from .common import _check_shapes, _no_autocast, _sqnorm
from .ld_terms import (_LDBatch, _check_ld_args, _contrastive_term, _g_term, _h_per_key, _ld_batch,
                       _log_softmax_parts)
from .ld_weights import _GWeights, _multiplicity
from .options import LDOptions
from .queue import Queue, _ListLabels, _check_queue


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
