"""The fast lane's fused CPU float32 step (mulsupcon_ld/fused_encoder.py): the same numbers as the
per-module fast lane bit for bit, one flat parameter, and a clear refusal where it cannot run."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mulsupcon_ld import fused_encoder as FE
from mulsupcon_ld import hotpath
from mulsupcon_ld import train as T
from mulsupcon_ld.augment import VectorBatches
from mulsupcon_ld.errors import UserError
from mulsupcon_ld.experiment import build_moco
from mulsupcon_ld.run_settings import resolve_settings

# odd widths and batch: masks of 5 x 7 = 35 elements (not a whole number of 64-bit words)
SMALL = ["model.hidden=[6,10,7]", "pretrain.batch_size=5", "pretrain.queue_size=12", "model.proj_dim=9"]


def _settings(*extra: str):
    return resolve_settings("yeast", overrides=["pretrain.epochs=2", "pretrain.iters_per_epoch=7", "precision=fp32",
                                                *extra])


def _data(n_features: int = 103, n_labels: int = 14, n: int = 40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, n_features)).astype(np.float32), (rng.random((n, n_labels)) < 0.3).astype(np.uint8)


def _pretrain(s, method: str, tmp_path, fused: bool):
    """History and final state of a short pretraining, with the fused step on or off."""
    x, y = _data()
    torch.manual_seed(0)
    moco = build_moco(s, y.shape[1], x.shape[1])
    vb = VectorBatches(x, y, s.pretrain.batch_size, mask=0.5, two_views=True, iters_per_epoch=7, seed=1)
    hist = T.pretrain(moco, vb, s, T.make_pretrain_loss(method, s.loss, s.pretrain.temperature), seed=0,
                      device=torch.device("cpu"), state_path=tmp_path / f"{method}{fused}.pt", config_hash="h",
                      fused_step=fused)
    assert (moco._fused is not None) == fused
    return hist, moco.state_dict()


@pytest.mark.parametrize("method,extra", [("cld", []), ("rld", SMALL), ("mulsupcon", SMALL)])
def test_fused_step_trains_exactly_as_the_per_module_fast_lane(method, extra, tmp_path):
    s = _settings(*extra)
    assert s.fast_lane
    ref_hist, ref_state = _pretrain(s, method, tmp_path, False)
    hist, state = _pretrain(s, method, tmp_path, True)
    assert hist["loss"] == ref_hist["loss"] and hist["parts"] == ref_hist["parts"]
    assert list(state) == list(ref_state)                # same keys: checkpoints and fine-tuning unchanged
    for key in state:                                    # weights, BatchNorm statistics, queues
        assert torch.equal(state[key], ref_state[key]), key


def test_masks_drawn_at_once_are_keep_mask_drawn_one_by_one():
    shapes = [(5, 7, 0.2), (5, 10, 0.2), (3, 9, 0.1), (5, 7, 0.5)]
    torch.manual_seed(3)
    one_by_one = [hotpath.keep_mask((r, w), p, torch.device("cpu")) / (1.0 - p) for r, w, p in shapes]
    torch.manual_seed(3)
    at_once = FE.draw_keep_masks(shapes)
    for a, b in zip(at_once, one_by_one):
        assert torch.equal(a, b)
    torch.manual_seed(3)
    assert not torch.equal(FE.draw_keep_masks(shapes[1:])[0], one_by_one[0])   # the test can fail


def test_the_query_encoder_is_one_flat_parameter_its_modules_views():
    s = _settings()
    torch.manual_seed(0)
    moco = build_moco(s, 14, 103)
    keys = list(moco.state_dict())
    params = moco.optimizer_parameters(fused=True)
    flat = params[0]
    assert len(params) == 3 and params[1:] == list(moco.fc.parameters())
    assert flat.numel() == sum(p.numel() for p in moco.encoder_q.parameters())
    assert list(moco.state_dict()) == keys
    with torch.no_grad():
        flat.zero_()                                     # the modules' parameters are its views
    assert all(float(p.detach().abs().sum()) == 0.0 for p in moco.encoder_q.parameters())
    assert moco.optimizer_parameters(fused=True)[0] is flat      # again: the same buffer
    assert moco.optimizer_parameters(fused=False) == [p for p in moco.parameters() if p.requires_grad]
    assert moco._fused is None


def test_the_fused_step_is_only_taken_where_it_applies():
    fast, ref = _settings(), _settings("pretrain.hotpath=reference")
    torch.manual_seed(0)
    assert FE.plan(build_moco(fast, 14, 103).encoder_q) is not None
    assert FE.plan(build_moco(ref, 14, 103).encoder_q) is None            # plain nn.Sequential
    moco = build_moco(ref, 14, 103)
    assert moco.optimizer_parameters(fused=True) == [p for p in moco.parameters() if p.requires_grad]
    assert moco._fused is None                                             # the reference lane never fuses


def test_a_flattened_moco_refuses_a_step_the_fused_path_cannot_take():
    """The optimiser steps the flat parameter, so a training step on the module path would silently
    not train: refused with gradient, allowed without (no optimiser step follows)."""
    torch.manual_seed(0)
    moco = build_moco(_settings(), 14, 103)
    moco.optimizer_parameters(fused=True)
    moco.train()
    x, y = torch.randn(8, 103), (torch.rand(8, 14) < 0.3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="optimizer_parameters"):
        moco(x, x, y)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert moco(x, x, y).q.shape == (8, 256)
    moco.optimizer_parameters(fused=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert moco(x, x, y).q.requires_grad


def test_momentum_update_through_the_buffers_is_the_per_parameter_lerp():
    torch.manual_seed(0)
    a, b = build_moco(_settings(), 14, 103), build_moco(_settings(), 14, 103)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        for p in list(a.encoder_q.parameters()) + list(b.encoder_q.parameters()):
            p.add_(0.5)
    a.optimizer_parameters(fused=True)
    a.momentum_update()
    b.momentum_update()
    for pa, pb in zip(a.encoder_k.parameters(), b.encoder_k.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(a.encoder_k.parameters()), next(a.encoder_q.parameters()))



def test_a_checkpoint_of_the_other_parameter_layout_stops_with_a_clear_error(tmp_path):
    """A per-module checkpoint (fourteen optimiser tensors) cannot resume as the fused step (three)."""
    x, y = _data()
    s = _settings()
    loss = T.make_pretrain_loss("mulsupcon", s.loss, s.pretrain.temperature)
    vb = VectorBatches(x, y, s.pretrain.batch_size, mask=0.5, two_views=True, iters_per_epoch=7, seed=1)

    def run(fused: bool, epochs: int) -> None:
        torch.manual_seed(0)
        moco = build_moco(s, y.shape[1], x.shape[1])
        T.pretrain(moco, vb, replace(s, pretrain=replace(s.pretrain, epochs=epochs)), loss, seed=0,
                   device=torch.device("cpu"), state_path=tmp_path / "state.pt", config_hash="h", fused_step=fused)

    run(False, 1)
    with pytest.raises(UserError, match="another parameter layout"):
        run(True, 2)
