"""The weights of G in MulSupCon_LD: c_ip (C^(1) of eq. 6 for RLD, from C^(2) of eq. 10 for CLD) and
how often key p is in P(i)."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .options import LDOptions

if TYPE_CHECKING:
    from .ld_terms import _LDBatch


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
