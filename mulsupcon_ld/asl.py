"""The asymmetric loss (ASL) of Ridnik et al., "Asymmetric Loss for Multi-Label Classification",
ICCV 2021 — the loss of our ``--method asl`` baseline (the BCE control with this loss instead).

With p = σ(z) per label, the paper's eqs. (4)–(6) (our transcription):

    L₊ = (1 − p)^γ₊ · log(p)
    L₋ = p_m^γ₋ · log(1 − p_m),   p_m = max(p − m, 0)   (probability shifting, "clip" m)
    ASL = −y · L₊ − (1 − y) · L₋

Defaults are the paper's published ones: γ₋ = 4, γ₊ = 0, m = 0.05. We average over labels and
examples (like our BCE fine-tuning, so the optimiser sees the same scale; the paper's code sums).
Written from the equations; ``tests/test_asl.py`` checks it against a literal per-element
transcription of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAMMA_NEG = 4.0
GAMMA_POS = 0.0
CLIP = 0.05


def asl_loss(logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = GAMMA_NEG,
             gamma_pos: float = GAMMA_POS, clip: float = CLIP) -> torch.Tensor:
    """Mean asymmetric loss of ``logits`` (N × L) against 0/1 ``targets`` (same shape)."""
    y = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)  # log σ(z) without underflow for very negative z
    if clip > 0:
        p_m = (p - clip).clamp(min=0)
        log_not_pm = torch.log1p(-p_m)  # p_m ≤ 1 − clip: finite
    else:
        p_m, log_not_pm = p, F.logsigmoid(-logits)
    pos = (1 - p) ** gamma_pos * log_p
    neg = p_m ** gamma_neg * log_not_pm
    return -(y * pos + (1 - y) * neg).mean()
