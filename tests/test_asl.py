"""ASL (Ridnik et al., ICCV 2021) against literal transcriptions: of its equations, element by element,
and of how its authors' training computes it (detached focusing weights, summed)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mulsupcon_ld.asl import CLIP, GAMMA_NEG, GAMMA_POS, asl_loss


def oracle(logits: list[list[float]], targets: list[list[int]], gamma_neg: float, gamma_pos: float,
           m: float, reduction: str = "sum") -> float:
    """L₊ = (1 − p)^γ₊ log p; L₋ = p_m^γ₋ log(1 − p_m), p_m = max(p − m, 0); ASL = −y L₊ − (1 − y) L₋."""
    total, count = 0.0, 0
    for row_z, row_y in zip(logits, targets):
        for z, y in zip(row_z, row_y):
            p = 1 / (1 + math.exp(-z))
            pm = max(p - m, 0.0)
            l_pos = (1 - p) ** gamma_pos * math.log(p)
            l_neg = pm ** gamma_neg * math.log(1 - pm)
            total += -y * l_pos - (1 - y) * l_neg
            count += 1
    return total if reduction == "sum" else total / count


def official_form(z: torch.Tensor, y: torch.Tensor, gamma_neg: float, gamma_pos: float, clip: float,
                  eps: float = 1e-8) -> torch.Tensor:
    """Our own transcription of the official training loss (Alibaba-MIIL/ASL, src/loss_functions/
    losses.py AsymmetricLoss with disable_torch_grad_focal_loss=True): the negative probability is
    shifted up by the clip and capped at 1, both log terms are floored at eps, the focusing weight
    (1 − pt)^γ is computed without autograd, and the loss is summed."""
    y = y.to(z.dtype)
    prob = torch.sigmoid(z)
    prob_neg = torch.clamp(1 - prob + clip, max=1.0) if clip > 0 else 1 - prob
    log_terms = y * torch.log(prob.clamp(min=eps)) + (1 - y) * torch.log(prob_neg.clamp(min=eps))
    with torch.no_grad():
        pt = prob * y + prob_neg * (1 - y)
        weight = torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
    return -(log_terms * weight).sum()


def _inputs(seed: int = 0, rows: int = 7, cols: int = 5):
    g = torch.Generator().manual_seed(seed)
    z = (torch.rand(rows, cols, generator=g, dtype=torch.float64) - 0.5) * 10
    y = (torch.rand(rows, cols, generator=g) < 0.4).long()
    return z, y


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("gamma_neg,gamma_pos,m", [(GAMMA_NEG, GAMMA_POS, CLIP), (2.0, 1.0, 0.2), (0.0, 0.0, 0.0),
                                                   (4.0, 0.0, 0.0)])
def test_asl_matches_the_equations(gamma_neg, gamma_pos, m, reduction):
    z, y = _inputs()
    for focal in ("detached", "through"):   # the value does not depend on where the gradient flows
        got = asl_loss(z, y, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=m, reduction=reduction,
                       focal_weights=focal)
        want = oracle(z.tolist(), y.tolist(), gamma_neg, gamma_pos, m, reduction)
        assert float(got) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("gamma_neg,gamma_pos,m", [(GAMMA_NEG, GAMMA_POS, CLIP), (2.0, 1.0, 0.2), (4.0, 0.0, 0.0)])
def test_the_default_is_the_official_training_loss_values_and_gradients(gamma_neg, gamma_pos, m):
    for seed in range(3):
        z, y = _inputs(seed, 16, 9)
        ours = z.clone().requires_grad_(True)
        theirs = z.clone().requires_grad_(True)
        got = asl_loss(ours, y, gamma_neg, gamma_pos, m)          # the defaults: detached, sum
        want = official_form(theirs, y, gamma_neg, gamma_pos, m)
        got.backward()
        want.backward()
        assert got.item() == pytest.approx(want.item(), rel=1e-12, abs=1e-12)
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-10, atol=1e-12)


def test_detached_and_through_gradients_differ_and_each_is_right():
    z, y = _inputs(1, 8, 6)
    zg = z.clone().requires_grad_(True)
    asl_loss(zg, y).backward()
    # detached weights: d/dz of −w·log terms with w constant, written out per element
    p = torch.sigmoid(z)
    p_m = (p - CLIP).clamp(min=0)
    yf = y.double()
    w_pos, w_neg = (1 - p) ** GAMMA_POS, p_m ** GAMMA_NEG
    d_pos = -w_pos * (1 - p)
    d_neg = torch.where(p > CLIP, w_neg * p * (1 - p) / (1 - p_m), torch.zeros_like(p))
    torch.testing.assert_close(zg.grad, yf * d_pos + (1 - yf) * d_neg, rtol=1e-10, atol=1e-12)
    through = z.clone().requires_grad_(True)
    asl_loss(through, y, focal_weights="through").backward()
    assert not torch.allclose(through.grad, zg.grad)
    assert torch.autograd.gradcheck(lambda t: asl_loss(t, y, focal_weights="through", reduction="mean"),
                                    (z.clone().requires_grad_(True),))


def test_asl_defaults_bce_special_case_and_bad_options():
    assert (GAMMA_NEG, GAMMA_POS, CLIP) == (4.0, 0.0, 0.05)  # the paper's published defaults
    z = torch.tensor([[3.0, -2.0, 0.01], [-0.5, 8.0, -9.0]], dtype=torch.float64)
    y = torch.tensor([[1, 0, 0], [1, 0, 1]])
    # γ₊ = γ₋ = 0 and no shift: plain binary cross-entropy (the paper's remark), summed or averaged
    bce = F.binary_cross_entropy_with_logits(z, y.double(), reduction="sum")
    assert float(asl_loss(z, y, 0.0, 0.0, 0.0)) == pytest.approx(float(bce))
    assert float(asl_loss(z, y, 0.0, 0.0, 0.0, reduction="mean")) == pytest.approx(float(bce) / z.numel())
    # easy negatives (p below the margin) cost nothing; an easy negative's loss is below BCE's
    assert float(asl_loss(torch.tensor([[-4.0]]), torch.tensor([[0]]))) == 0.0
    assert float(asl_loss(torch.tensor([[0.0]]), torch.tensor([[0]]))) < math.log(2)
    with pytest.raises(ValueError):
        asl_loss(z, y, reduction="median")
    with pytest.raises(ValueError):
        asl_loss(z, y, focal_weights="half")
