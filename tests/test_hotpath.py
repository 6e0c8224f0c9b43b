"""The pretraining fast lane (mulsupcon_ld/hotpath.py): fused blocks, cheap dropout masks, switches."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mulsupcon_ld import hotpath
from mulsupcon_ld.encoders import build_encoder
from mulsupcon_ld.errors import UserError
from mulsupcon_ld.run_settings import resolve_settings


def _encoder(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_encoder(resolve_settings("yeast").model, 103)


def _outputs_and_grads(enc: nn.Module, x: torch.Tensor, lane: str) -> list[torch.Tensor]:
    """Forward + backward of ``enc`` with the RNG at seed 1, through the lane ``lane``."""
    torch.manual_seed(1)
    for p in enc.parameters():
        p.grad = None
    drops = [m for m in enc.modules() if type(m) is nn.Dropout]
    if lane == "modules":  # ReLU and Dropout module by module, the Dropouts drawing fast masks
        for m in drops:
            m.forward = lambda t, m=m: hotpath.fast_dropout(t, m.p, m.training)
        h, p = enc(x)
        for m in drops:
            del m.forward
    else:
        with hotpath.fast_lane_in(enc, lane == "fused"):
            h, p = enc(x)
    (h.square().sum() + p.sin().sum()).backward()
    return [h.detach(), p.detach()] + [q.grad.clone() for q in enc.parameters()]


def test_fused_blocks_equal_relu_then_fast_dropout_bit_for_bit():
    enc, x = _encoder(), torch.randn(64, 103)
    ref = _outputs_and_grads(enc, x, "modules")
    fused = _outputs_and_grads(enc, x, "fused")
    assert len(ref) == len(fused) == 2 + len(list(enc.parameters()))
    for a, b in zip(ref, fused):
        assert torch.equal(a, b)


def test_fused_blocks_in_eval_mode_equal_the_reference():
    enc, x = _encoder(), torch.randn(32, 103)
    enc.eval()
    ref = _outputs_and_grads(enc, x, "reference")
    fused = _outputs_and_grads(enc, x, "fused")
    for a, b in zip(ref, fused):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_fused_blocks_match_autograd_without_dropout():
    lin, x = nn.Linear(7, 5), torch.randn(6, 7, requires_grad=True)
    drop = nn.Dropout(0.0)
    out = hotpath.linear_relu_dropout(x, lin, drop)
    ref = torch.relu(lin(x))
    torch.testing.assert_close(out, ref)
    g1 = torch.autograd.grad(out.pow(3).sum(), [x, lin.weight, lin.bias])
    g2 = torch.autograd.grad(ref.pow(3).sum(), [x, lin.weight, lin.bias])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_fused_blocks_under_bf16_autocast_give_float32_gradients():
    enc, x = _encoder(), torch.randn(16, 103)
    with torch.autocast("cpu", dtype=torch.bfloat16), hotpath.fast_lane_in(enc):
        h, p = enc(x)
    assert h.dtype == torch.bfloat16
    (h.float().sum() + p.float().sum()).backward()
    assert all(q.grad is not None and q.grad.dtype == torch.float32 for q in enc.parameters())


def test_fast_dropout_rate_and_scale():
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    for p in (0.1, 0.2, 0.5):
        y = hotpath.fast_dropout(x, p)
        dropped = (y == 0).float().mean().item()
        assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / x.numel())
        assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))
    assert torch.equal(hotpath.fast_dropout(x, 0.2, training=False), x)


def test_fused_dropout_rate_and_scale():
    torch.manual_seed(0)
    lin = nn.Linear(1, 200_000)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    out = hotpath.linear_relu_dropout(torch.ones(2, 1), lin, nn.Dropout(0.2))
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - 0.2) < 5 * math.sqrt(0.2 * 0.8 / out.numel())
    assert torch.allclose(out[out != 0], torch.tensor(1.25))


def test_fast_lane_in_patches_only_inside_the_block_and_only_when_enabled():
    from mulsupcon_ld.moco import MoCo

    moco = MoCo(_encoder(), n_labels=14, queue_size=8)
    seqs = [m for m in moco.modules() if type(m) is nn.Sequential]
    with hotpath.fast_lane_in(moco, enabled=False):
        assert all("forward" not in vars(m) for m in seqs) and moco.fast_lane is False
    with hotpath.fast_lane_in(moco):
        assert all("forward" in vars(m) for m in seqs) and moco.fast_lane is True
    assert all("forward" not in vars(m) for m in seqs) and moco.fast_lane is False


def test_momentum_update_lanes_agree_to_rounding():
    torch.manual_seed(0)
    q = [torch.randn(50, 40), torch.randn(40)]
    k1 = [torch.randn(50, 40), torch.randn(40)]
    k2 = [t.clone() for t in k1]
    hotpath.momentum_update_(k1, q, 0.999, fast=False)
    hotpath.momentum_update_(k2, q, 0.999, fast=True)
    for a, b in zip(k1, k2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_lane_switches_and_optimizer_arguments():
    net = nn.Linear(3, 2)
    def lane(*overrides):
        return resolve_settings("yeast", overrides=overrides).fast_lane

    assert lane() and lane("pretrain.hotpath=fast") and lane("pretrain.hotpath=reference", "precision=bf16")
    assert not lane("pretrain.hotpath=reference")
    assert hotpath.optimizer_kwargs(False, list(net.parameters())) == {}
    assert hotpath.optimizer_kwargs(True, list(net.parameters())) == {"fused": True}
    assert resolve_settings("yeast").pretrain.hotpath == "fast"
    with pytest.raises(UserError, match="pretrain.hotpath"):
        resolve_settings("yeast", overrides=["pretrain.hotpath=turbo"])


def test_fused_blocks_trace_into_one_compiled_graph():
    """torch.compile (CUDA graphs in particular) needs the fast lane without graph breaks: under
    compilation the mask comes from an out-of-place ``rand`` instead of the in-place ``random_``."""
    import torch._dynamo

    enc, x = _encoder(), torch.randn(16, 103)
    torch._dynamo.reset()
    with hotpath.fast_lane_in(enc):
        explained = torch._dynamo.explain(enc)(x)
    torch._dynamo.reset()
    assert explained.graph_break_count == 0 and explained.graph_count == 1


def test_bf16_on_a_cpu_without_native_bf16_is_announced(monkeypatch):
    cpu = torch.device("cpu")
    assert hotpath.bf16_cpu_note("fp32", cpu) is None
    assert hotpath.bf16_cpu_note("bf16", torch.device("cuda")) is None
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert "8x slower" in hotpath.bf16_cpu_note("bf16", cpu)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert hotpath.bf16_cpu_note("bf16", cpu) is None
