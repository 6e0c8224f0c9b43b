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


def _encoder(seed: int = 0, fast: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    return build_encoder(resolve_settings("yeast").model, 103, fast=fast)


class _FastDropoutModule(nn.Module):
    """A Dropout drawing :func:`hotpath.fast_dropout` masks, module by module (no fusion)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return hotpath.fast_dropout(t, self.p, self.training)


def _unfused_fast_masks(enc: nn.Module) -> nn.Module:
    """``enc`` in the reference modules, each Dropout replaced by :class:`_FastDropoutModule`."""
    enc = hotpath.reference_copy(enc)
    for parent in list(enc.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, _FastDropoutModule(child.p))
    return enc


def _outputs_and_grads(enc: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Forward + backward of ``enc`` with the RNG at seed 1."""
    torch.manual_seed(1)
    for p in enc.parameters():
        p.grad = None
    h, p = enc(x)
    (h.square().sum() + p.sin().sum()).backward()
    return [h.detach(), p.detach()] + [q.grad.clone() for q in enc.parameters()]


def test_fused_blocks_equal_relu_then_fast_dropout_bit_for_bit():
    enc, x = _encoder(fast=True), torch.randn(64, 103)
    assert sum(type(m) is hotpath.FusedSequential for m in enc.modules()) == 2
    ref = _outputs_and_grads(_unfused_fast_masks(enc), x)
    fused = _outputs_and_grads(enc, x)
    assert len(ref) == len(fused) == 2 + len(list(enc.parameters()))
    for a, b in zip(ref, fused):
        assert torch.equal(a, b)


def test_fused_blocks_in_eval_mode_equal_the_reference():
    enc, fast, x = _encoder(), _encoder(fast=True), torch.randn(32, 103)
    enc.eval(), fast.eval()
    ref = _outputs_and_grads(enc, x)
    fused = _outputs_and_grads(fast, x)
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
    enc, x = _encoder(fast=True), torch.randn(16, 103)
    with torch.autocast("cpu", dtype=torch.bfloat16):
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


def test_the_lane_is_built_not_patched_and_survives_deepcopy():
    import copy

    from mulsupcon_ld.encoders import Classifier
    from mulsupcon_ld.experiment import build_moco

    fast, ref = (build_moco(resolve_settings("yeast", overrides=[f"pretrain.hotpath={h}"]), 14, 103)
                 for h in ("fast", "reference"))
    assert fast.fast_lane and not ref.fast_lane
    fused = [m for m in fast.modules() if isinstance(m, hotpath.FusedSequential)]
    assert len(fused) == 4                                  # backbone and head, query and key encoders
    assert not any(isinstance(m, hotpath.FusedSequential) for m in ref.modules())
    assert list(fast.state_dict()) == list(ref.state_dict())  # checkpoints do not depend on the lane
    assert not any("forward" in vars(m) for m in fast.modules())
    # a deepcopy is the lane with its own weights: changing the copy leaves the original alone
    twin = copy.deepcopy(fast.encoder_q)
    x = torch.randn(8, 103)
    fast.eval(), twin.eval()
    torch.testing.assert_close(twin(x)[1], fast.encoder_q(x)[1])
    with torch.no_grad():
        next(twin.parameters()).add_(1.0)
    assert not torch.equal(twin(x)[1], fast.encoder_q(x)[1])
    # fine-tuning takes the reference modules, the same weights
    clf = Classifier.from_pretrained(fast)
    assert not any(isinstance(m, hotpath.FusedSequential) for m in clf.modules())
    assert torch.equal(clf.backbone.net[0].weight, fast.encoder_q.backbone.net[0].weight)


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

    enc, x = _encoder(fast=True), torch.randn(16, 103)
    torch._dynamo.reset()
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


def test_pretraining_in_fused_modules_equals_module_by_module_fast_masks(tmp_path):
    """The lane's numbers over whole pretraining epochs (fused AdamW, lerp momentum, the queue):
    the FusedSequential encoders train exactly as the plain modules with fast dropout masks."""
    import copy

    import numpy as np

    from mulsupcon_ld import train as T
    from mulsupcon_ld.augment import VectorBatches
    from mulsupcon_ld.experiment import build_moco

    s = resolve_settings("yeast", overrides=["pretrain.epochs=2", "pretrain.batch_size=16", "pretrain.queue_size=40",
                                             "precision=fp32"])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 103)).astype(np.float32), (rng.random((64, 14)) < 0.3).astype(np.uint8)
    torch.manual_seed(0)
    fused = build_moco(s, 14, 103)
    plain = copy.deepcopy(fused)
    plain.encoder_q, plain.encoder_k = _unfused_fast_masks(fused.encoder_q), _unfused_fast_masks(fused.encoder_k)
    assert not any(isinstance(m, hotpath.FusedSequential) for m in plain.modules())
    loss = T.make_pretrain_loss("cld", s.loss, s.pretrain.temperature)
    hist = {}
    for name, moco in (("fused", fused), ("plain", plain)):
        vb = VectorBatches(x, y, 16, mask=0.5, two_views=True, drop_last=True, seed=1, stream="pretrain")
        hist[name] = T.pretrain(moco, vb, s, loss, seed=0, device=torch.device("cpu"),
                                state_path=tmp_path / f"{name}.pt", config_hash="h")
    assert hist["fused"]["loss"] == hist["plain"]["loss"] and hist["fused"]["parts"] == hist["plain"]["parts"]
    for a, b in zip(fused.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_l2_normalize_is_f_normalize_bit_for_bit(scale):
    g = torch.Generator().manual_seed(71)
    x = scale * torch.randn(37, 256, generator=g)
    x[3] = 0.0                                       # a zero row: eps takes over, as in F.normalize
    grad = torch.randn(37, 256, generator=g)
    out = []
    for fn in (lambda t: torch.nn.functional.normalize(t, dim=1), hotpath.l2_normalize):
        leaf = x.clone().requires_grad_(True)
        y = fn(leaf)
        y.backward(grad)
        out.append((y.detach(), leaf.grad))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    leaf = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(hotpath.l2_normalize, (leaf,))


def test_momentum_update_public_ops_equal_the_foreach_kernels_bit_for_bit():
    # the public per-tensor ops replaced torch's private _foreach_ calls: same numbers, both lanes
    torch.manual_seed(1)
    q = [torch.randn(s) for s in ((256, 103), (256,), (512, 256), (1000,), (7,))]
    for fast in (True, False):
        ours = [torch.randn_like(t) for t in q]
        theirs = [t.clone() for t in ours]
        hotpath.momentum_update_(ours, q, 0.999, fast=fast)
        if fast:
            torch._foreach_lerp_(theirs, q, 1.0 - 0.999)
        else:
            torch._foreach_mul_(theirs, 0.999)
            torch._foreach_add_(theirs, q, alpha=1.0 - 0.999)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5])
def test_fused_block_nodes_pass_a_float64_gradcheck(p):
    # the fast lane's custom autograd nodes against finite differences; the dropout mask is the same
    # in every call because the generator is reseeded (the node draws it from torch's global generator)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)

    def block(x, w, b):
        torch.manual_seed(123)
        return hotpath._LinearReLUDropout.apply(x, w, b, p)

    def relu_drop(z):
        torch.manual_seed(123)
        return hotpath._ReLUDropout.apply(z, p)

    assert torch.autograd.gradcheck(block, (x, w, b))
    assert torch.autograd.gradcheck(relu_drop, (x,))
    if p > 0:                                            # a mask really is applied
        assert (block(x, w, b) == 0).sum() > (torch.relu(x @ w.t() + b) == 0).sum()
