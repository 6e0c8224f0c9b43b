"""The asymmetric loss (ASL) of Ridnik et al., "Asymmetric Loss for Multi-Label Classification",
ICCV 2021 — the loss of our ``--method asl`` baseline (the BCE control with this loss instead).

With p = σ(z) per label, the paper's eqs. (4)–(6) (our transcription):

    L₊ = (1 − p)^γ₊ · log(p)
    L₋ = p_m^γ₋ · log(1 − p_m),   p_m = max(p − m, 0)   (probability shifting, "clip" m)
    ASL = −y · L₊ − (1 − y) · L₋

How its authors train with it (the default here, ``settings.loss.asl``): the official repository
(github Alibaba-MIIL/ASL) builds ``AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05,
disable_torch_grad_focal_loss=True)`` in ``train.py`` (``train_multi_label_coco``), and its
``src/loss_functions/losses.py`` (``AsymmetricLoss.forward``, l. 39–51 at commit 0a21a18) computes
the focusing weights (1 − p)^γ₊ and p_m^γ₋ with autograd switched off — gradients flow through the
log terms only — and returns ``-loss.sum()``, the sum over labels and examples. (Another revision of
that file, 05b193d, has the two ``set_grad_enabled`` lines commented out; the training script's
``disable_torch_grad_focal_loss=True`` says what was intended, and the issue that asked for this
recipe read it so.)

The other forms stay as options: ``focal_weights="through"`` lets the gradient flow through the
weights (the plain derivative of eqs. 4–6), ``reduction="mean"`` averages like our BCE fine-tuning.
``focal_weights="through", reduction="mean"`` is what runs before 2026-12-07 computed.
``tests/test_asl.py`` checks every form against our own per-element transcriptions of the
equations and of the official loss (values and gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .names import ASL_FOCAL_WEIGHTS, ASL_REDUCTIONS

GAMMA_NEG = 4.0
GAMMA_POS = 0.0
CLIP = 0.05
#: how the loss is reduced over labels and examples, and whether the gradient flows through the
#: focusing weights; the official training's: "sum", "detached"
REDUCTIONS, FOCAL_WEIGHTS = ASL_REDUCTIONS, ASL_FOCAL_WEIGHTS


def asl_loss(logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = GAMMA_NEG,
             gamma_pos: float = GAMMA_POS, clip: float = CLIP, reduction: str = "sum",
             focal_weights: str = "detached") -> torch.Tensor:
    """Asymmetric loss of ``logits`` (N × L) against 0/1 ``targets`` (same shape), reduced by
    ``reduction`` (:data:`REDUCTIONS`), the focusing weights ``focal_weights`` (:data:`FOCAL_WEIGHTS`)."""
    if reduction not in REDUCTIONS or focal_weights not in FOCAL_WEIGHTS:
        raise ValueError(f"reduction must be one of {REDUCTIONS} and focal_weights one of {FOCAL_WEIGHTS}")
    y = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)  # log σ(z) without underflow for very negative z
    if clip > 0:
        p_m = (p - clip).clamp(min=0)
        log_not_pm = torch.log1p(-p_m)  # p_m ≤ 1 − clip: finite; = log(min(1 − p + m, 1)), the official form
    else:
        p_m, log_not_pm = p, F.logsigmoid(-logits)
    w_pos, w_neg = (1 - p) ** gamma_pos, p_m ** gamma_neg
    if focal_weights == "detached":
        w_pos, w_neg = w_pos.detach(), w_neg.detach()
    loss = -(y * (w_pos * log_p) + (1 - y) * (w_neg * log_not_pm))
    return loss.sum() if reduction == "sum" else loss.mean()
