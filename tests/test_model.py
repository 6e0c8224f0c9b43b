"""Encoders, MoCo momentum update, queues and gradient flow (tiny tensors, CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mulsupcon_ld import losses
from mulsupcon_ld.encoders import (Classifier, Encoder, MLPBackbone, ProjectionHead, build_backbone,
                                   build_encoder)
from mulsupcon_ld.errors import UserError
from mulsupcon_ld.moco import MoCo

torch.set_num_threads(1)

D, C = 12, 5


def tiny_moco(queue_size=8, fc_input="rep", momentum=0.9, n_labels=C):
    torch.manual_seed(0)
    enc = Encoder(MLPBackbone(D, hidden=(16, 16, 8)), proj_dim=6)
    return MoCo(enc, n_labels, queue_size, momentum=momentum, fc_input=fc_input)


def batch(b=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, D, generator=g)
    y = (torch.rand(b, C, generator=g) < 0.5).float()
    y[:, 0] = 1.0  # every sample has a label
    return x, y


def full_loss(out):
    """Touches every output the real losses read (q, keys, key_dist, dist)."""
    sim = out.q @ out.keys.T / 0.1
    return -torch.log_softmax(sim, 1)[:, 0].mean() + (out.key_dist ** 2).sum() + out.dist.sum()


# ---------------------------------------------------------------------------- encoders
def test_mlp_backbone_follows_mulsupcon_widths():
    net = MLPBackbone(103)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(103, 256), (256, 512), (512, 256)]
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 3
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.2, 0.2]
    assert net.rep_dim == 256 and net(torch.randn(3, 103)).shape == (3, 256)


@pytest.mark.parametrize("in_dim,hidden", [(256, 256), (2048, 1024)])
def test_projection_head_layout(in_dim, hidden):
    head = ProjectionHead(in_dim, 256, n_hidden=1)
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert head.net[0].out_features == hidden and head.net[3].p == 0.1 and head.net[4].out_features == 256


def test_build_backbone_rejects_unknown_and_missing_features():
    with pytest.raises(UserError):
        build_backbone("vgg")
    with pytest.raises(UserError):
        build_backbone("mlp")


def test_resnet50_plugs_into_moco_and_classifier():
    bb = build_backbone("resnet50", channels_last=True)
    assert bb.rep_dim == 2048
    enc = Encoder(bb, proj_dim=256)
    assert enc.head.net[0].out_features == 1024
    moco = MoCo(enc, 3, queue_size=4).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    out = moco(x, x, y)
    assert out.q.shape == (2, 256) and out.dist.shape == (2, 3)
    clf = Classifier.from_pretrained(moco).eval()
    assert clf(x).shape == (2, 3)


def test_resnet50_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_backbone("resnet50", weights=tmp_path / "nope.pth")


# ---------------------------------------------------------------------------- momentum encoder
def test_key_encoder_starts_equal_and_frozen():
    moco = tiny_moco()
    for pq, pk in zip(moco.encoder_q.parameters(), moco.encoder_k.parameters()):
        assert torch.equal(pq, pk) and pq.data_ptr() != pk.data_ptr()
        assert not pk.requires_grad and pq.requires_grad


def test_momentum_update_math():
    moco = tiny_moco(momentum=0.75)
    with torch.no_grad():
        for p in moco.encoder_q.parameters():
            p.add_(1.0)
    before_k = [p.clone() for p in moco.encoder_k.parameters()]
    q = [p.clone() for p in moco.encoder_q.parameters()]
    moco.momentum_update()
    for bk, pq, pk in zip(before_k, q, moco.encoder_k.parameters()):
        torch.testing.assert_close(pk, 0.75 * bk + 0.25 * pq, rtol=0, atol=1e-6)
    # the query encoder is untouched
    for pq, p in zip(q, moco.encoder_q.parameters()):
        assert torch.equal(pq, p)


def test_forward_updates_key_encoder_only_in_training_mode():
    moco = tiny_moco()
    with torch.no_grad():
        next(moco.encoder_q.parameters()).add_(1.0)
    k0 = next(moco.encoder_k.parameters()).clone()
    x, y = batch()
    moco.eval()
    moco(x, x, y)
    assert torch.equal(next(moco.encoder_k.parameters()), k0)
    moco.train()
    moco(x, x, y)
    assert not torch.equal(next(moco.encoder_k.parameters()), k0)


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("fc_input", ["rep", "proj"])
def test_gradients_reach_query_encoder_and_fc_only(fc_input):
    moco = tiny_moco(queue_size=8, fc_input=fc_input)
    x, y = batch()
    out = moco(x, x + 0.1, y)
    moco.enqueue(out.k, y, out.dist)         # a non-empty queue for the next step
    out = moco(x, x + 0.1, y)
    assert out.keys.shape[0] == 4 + 4 and not out.k.requires_grad
    full_loss(out).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in moco.fc.parameters())
    assert all(p.grad is not None for p in moco.encoder_q.parameters())
    assert all(p.grad is None for p in moco.encoder_k.parameters())
    for name in ("queue", "queue_labels", "queue_dist"):
        assert not getattr(moco, name).requires_grad
    # first B rows of key_dist are the batch's own D (with gradient), the rest detached
    assert out.key_dist.requires_grad and torch.equal(out.key_dist[:4], out.dist)


def test_gradients_with_the_real_losses():
    moco = tiny_moco(queue_size=8)
    x, y = batch()
    out = moco(x, x, y)
    moco.enqueue(out.k, y, out.dist)
    for method in ("mulsupcon", "rld", "cld"):
        moco.zero_grad()
        out = moco(x, x + 0.05, y)
        if method == "mulsupcon":
            loss = losses.mulsupcon_loss(out.q, out.keys, y, out.key_labels, temperature=0.1)
        else:
            loss = losses.ld_loss(out.q, out.keys, y, out.key_labels, out.dist, out.key_dist, moco.fc.weight,
                                  variant=method, alpha=0.1, beta=1.0)
        loss.backward()
        assert torch.isfinite(loss)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in moco.encoder_q.parameters())
        assert all(p.grad is None for p in moco.encoder_k.parameters())
        if method != "mulsupcon":
            assert moco.fc.weight.grad is not None and moco.fc.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- queue
def enq(moco, start, b):
    """Enqueue rows whose first coordinate is start, start+1, … (easy to trace)."""
    k = torch.zeros(b, moco.queue.shape[1])
    k[:, 0] = torch.arange(start, start + b, dtype=torch.float32)
    y = torch.zeros(b, moco.queue_labels.shape[1])
    y[:, 0] = k[:, 0]
    moco.enqueue(k, y, y * 2)


def test_queue_not_yet_full_uses_only_filled_entries():
    moco = tiny_moco(queue_size=7)
    x, y = batch(b=3)
    out = moco(x, x, y)
    assert out.keys.shape[0] == 3 and out.key_labels.shape[0] == 3  # empty queue: batch only
    enq(moco, 1, 3)
    assert int(moco.queue_count) == 3 and int(moco.queue_ptr) == 3
    k, lab, dist = moco.queue_view()
    assert k[:, 0].tolist() == [1, 2, 3] and lab[:, 0].tolist() == [1, 2, 3] and dist[:, 0].tolist() == [2, 4, 6]
    out = moco(x, x, y)
    assert out.keys.shape[0] == 3 + 3
    torch.testing.assert_close(out.keys[3:], k)


def test_queue_wraps_around_when_batches_do_not_divide_it():
    moco = tiny_moco(queue_size=7)
    enq(moco, 1, 3)
    enq(moco, 4, 3)
    enq(moco, 7, 3)          # 7 fills the last slot, 8 and 9 wrap to slots 0 and 1
    assert int(moco.queue_count) == 7 and int(moco.queue_ptr) == 2
    assert moco.queue[:, 0].tolist() == [8, 9, 3, 4, 5, 6, 7]
    enq(moco, 10, 3)
    assert int(moco.queue_ptr) == 5 and moco.queue[:, 0].tolist() == [8, 9, 10, 11, 12, 6, 7]
    assert moco.queue_labels[:, 0].tolist() == moco.queue[:, 0].tolist()


def test_batch_larger_than_queue_keeps_the_newest():
    moco = tiny_moco(queue_size=4)
    enq(moco, 1, 6)
    assert sorted(moco.queue[:, 0].tolist()) == [3, 4, 5, 6] and int(moco.queue_count) == 4


def test_loss_sees_pre_update_queue_and_dist_is_stored_detached():
    moco = tiny_moco(queue_size=16)
    x, y = batch()
    out = moco(x, x, y)
    n_keys = out.keys.shape[0]
    moco.enqueue(out.k, y, out.dist)
    assert out.keys.shape[0] == n_keys == 4                 # output unchanged by the enqueue
    assert not moco.queue_dist.requires_grad
    torch.testing.assert_close(moco.queue_dist[:4], out.dist.detach())
    torch.testing.assert_close(moco.queue_dist[:4].sum(1), torch.ones(4))


def test_queues_are_checkpointed_buffers():
    moco = tiny_moco(queue_size=5)
    enq(moco, 1, 3)
    sd = moco.state_dict()
    for name in ("queue", "queue_labels", "queue_dist", "queue_ptr", "queue_count"):
        assert name in sd
    other = tiny_moco(queue_size=5)
    other.load_state_dict(sd)
    assert int(other.queue_count) == 3 and torch.equal(other.queue, moco.queue)


# ---------------------------------------------------------------------------- fine-tuning model
@pytest.mark.parametrize("fc_input", ["rep", "proj"])
def test_classifier_starts_from_pretrained_fc(fc_input):
    moco = tiny_moco(fc_input=fc_input).eval()
    clf = Classifier.from_pretrained(moco).eval()
    assert torch.equal(clf.fc.weight, moco.fc.weight) and torch.equal(clf.fc.bias, moco.fc.bias)
    assert (clf.head is not None) == (fc_input == "proj")
    x, y = batch()
    _, logits = moco.encode_query(x)
    torch.testing.assert_close(clf(x), logits)
    # a copy, not shared
    assert clf.fc.weight.data_ptr() != moco.fc.weight.data_ptr()


def test_build_encoder_from_settings():
    from mulsupcon_ld.run_settings import resolve_settings

    enc = build_encoder(resolve_settings("yeast").model, n_features=103)
    assert enc.rep_dim == 256 and enc.out_dim == 256


def test_label_lists_follow_the_queue_through_wraps_widening_and_reload():
    """With many labels on CPU the label queue is also kept as padded lists (losses.label_lists):
    after every enqueue they equal the lists of Q_ll, also when a row needs a wider list, when a
    batch wraps around, and after load_state_dict (derived data, not in the state dict)."""
    from mulsupcon_ld.losses import LIST_MIN_LABELS, label_lists

    n_labels = LIST_MIN_LABELS + 6
    moco = tiny_moco(queue_size=7, n_labels=n_labels)
    assert tiny_moco(n_labels=C)._queue_lists() is None            # few labels: dense only
    g = torch.Generator().manual_seed(3)

    def check():
        n = int(moco.queue_count)
        block = moco.queue_block()
        assert block.lists is not None
        assert torch.equal(block.lists, label_lists(moco.queue_labels[:n], width=block.lists.shape[1]))

    for step, (b, density) in enumerate([(3, 0.05), (3, 0.05), (3, 0.5), (2, 0.05), (4, 0.9)]):
        k = torch.randn(b, moco.queue.shape[1], generator=g)
        y = (torch.rand(b, n_labels, generator=g) < density).float()
        moco.enqueue(k, y, torch.softmax(torch.randn(b, n_labels, generator=g), 1))
        check()
    assert moco.queue_block().lists.shape[1] > int(0.5 * n_labels)     # widened by the dense rows
    assert "_lists" not in moco.state_dict()
    fresh = tiny_moco(queue_size=7, n_labels=n_labels)
    fresh._queue_lists()                                                # a stale cache of zeros
    fresh.load_state_dict(moco.state_dict())
    assert torch.equal(fresh.queue_block().lists, label_lists(moco.queue_labels))
