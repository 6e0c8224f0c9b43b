"""Custom autograd nodes: the similarity log-sum-exp over A(i) and MulSupCon's whole loss as one node."""
from __future__ import annotations

import torch

from .common import _safe_inv
from .products import _label_sums


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
