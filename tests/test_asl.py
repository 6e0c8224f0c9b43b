"""ASL (Ridnik et al., ICCV 2021) against a literal transcription of its equations, element by element."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mulsupcon_ld.asl import CLIP, GAMMA_NEG, GAMMA_POS, asl_loss


def oracle(logits: list[list[float]], targets: list[list[int]], gamma_neg: float, gamma_pos: float,
           m: float) -> float:
    """L₊ = (1 − p)^γ₊ log p; L₋ = p_m^γ₋ log(1 − p_m), p_m = max(p − m, 0); ASL = −y L₊ − (1 − y) L₋; mean."""
    total, count = 0.0, 0
    for row_z, row_y in zip(logits, targets):
        for z, y in zip(row_z, row_y):
            p = 1 / (1 + math.exp(-z))
            pm = max(p - m, 0.0)
            l_pos = (1 - p) ** gamma_pos * math.log(p)
            l_neg = pm ** gamma_neg * math.log(1 - pm)
            total += -y * l_pos - (1 - y) * l_neg
            count += 1
    return total / count


@pytest.mark.parametrize("gamma_neg,gamma_pos,m", [(GAMMA_NEG, GAMMA_POS, CLIP), (2.0, 1.0, 0.2), (0.0, 0.0, 0.0),
                                                   (4.0, 0.0, 0.0)])
def test_asl_matches_the_equations(gamma_neg, gamma_pos, m):
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(7, 5, generator=g, dtype=torch.float64) - 0.5) * 10
    y = (torch.rand(7, 5, generator=g) < 0.4).long()
    got = asl_loss(z, y, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=m)
    assert float(got) == pytest.approx(oracle(z.tolist(), y.tolist(), gamma_neg, gamma_pos, m), rel=1e-10)


def test_asl_defaults_gradient_and_bce_special_case():
    assert (GAMMA_NEG, GAMMA_POS, CLIP) == (4.0, 0.0, 0.05)  # the paper's published defaults
    z = torch.tensor([[3.0, -2.0, 0.01], [-0.5, 8.0, -9.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1, 0, 0], [1, 0, 1]])
    assert torch.autograd.gradcheck(lambda t: asl_loss(t, y), (z,))
    # γ₊ = γ₋ = 0 and no shift: plain binary cross-entropy (the paper's remark)
    with torch.no_grad():
        bce = float(F.binary_cross_entropy_with_logits(z, y.double()))
        assert float(asl_loss(z, y, 0.0, 0.0, 0.0)) == pytest.approx(bce)
    # easy negatives (p below the margin) cost nothing; an easy negative's loss is below BCE's
    assert float(asl_loss(torch.tensor([[-4.0]]), torch.tensor([[0]]))) == 0.0
    assert float(asl_loss(torch.tensor([[0.0]]), torch.tensor([[0]]))) < math.log(2)
