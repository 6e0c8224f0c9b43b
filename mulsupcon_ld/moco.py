"""MoCo for MulSupCon_LD: query/key encoders, momentum update, queues ``Q``, ``Q_ll``, ``Q_ld``.

Section 3 ("Main Framework"): "We follow the MulSupCon to use the MoCo framework … The key model
updates through a momentum-based method. In addition to utilizing a queue Q to store z^k, we also
employ two queues Q_ll and Q_ld to store the logical labels y_i and the label distributions d_i."

One training step (:mod:`mulsupcon_ld.train`)::

    out = moco(view1, view2, y)          # momentum update, q, k, D, keys = [k; Q], labels, dists
    loss = loss_fn(out)                  # uses the queue as it was *before* this batch
    loss.backward(); optimiser.step()
    moco.enqueue(out.k, y, out.dist)     # ring buffer; stores D detached

Queue semantics. The three queues form one ring buffer with a write pointer and a fill count
(all ``register_buffer`` s, so they are checkpointed with the model). Only the ``count`` filled
entries take part in the loss; while the queue is filling, the negatives/positives are the batch
plus what has been enqueued so far. MulSupCon's reference code instead starts from a random-normal
queue and ignores it until it has wrapped around once (its ``QueueFull`` flag); we never use
random init vectors as negatives, and use the filled part as soon as it exists. A batch that does
not divide the queue size wraps around (the tail of the batch goes to the head of the buffer);
MulSupCon asserts divisibility instead. A batch larger than the queue keeps its last ``K`` rows.

The loss receives the queue as its own block (:class:`mulsupcon_ld.losses.Queue`), not
concatenated behind the batch: the ``[B + n, C]`` concatenations would copy the queue's labels and
distributions every step, a cost that shows at Delicious' shape on CPU (docs/performance.md, "The
queue as its own loss block"). With many labels on CPU
(:func:`mulsupcon_ld.losses.use_label_lists`) the label queue is also kept as padded label lists,
built for each batch at enqueue; they are derived data (not in the state dict), rebuilt from
``Q_ll`` after ``load_state_dict``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import hotpath
from .encoders import FC_INPUTS, Encoder
from .losses import Queue, label_lists, use_label_lists


@dataclass
class MoCoOutput:
    """What one forward pass gives the loss: the batch's own keys and, as its own block, the filled
    queue entries (pre-update queue). ``keys``/``key_labels``/``key_dist`` concatenate the two."""

    q: torch.Tensor            # [B, d] L2-normalised query embeddings (grad)
    k: torch.Tensor            # [B, d] L2-normalised key embeddings (no grad)
    logits: torch.Tensor       # [B, C] fc output (grad)
    dist: torch.Tensor         # [B, C] D = softmax(fc(.)) (grad)
    labels: torch.Tensor       # [B, C] the batch's labels, float 0/1 (queue dtype)
    queue: Queue               # Q, Q_ll, Q_ld (detached, [n, ...]) and the label lists if kept

    @property
    def keys(self) -> torch.Tensor:
        """[B + n, d]: the batch's keys, then Q."""
        return torch.cat([self.k, self.queue.keys], 0)

    @property
    def key_labels(self) -> torch.Tensor:
        """[B + n, C]: the batch's labels, then Q_ll."""
        return torch.cat([self.labels, self.queue.labels], 0)

    @property
    def key_dist(self) -> torch.Tensor:
        """[B + n, C]: the batch's D (with gradient), then Q_ld (detached)."""
        return torch.cat([self.dist, self.queue.dist], 0)


class MoCo(nn.Module):
    """Query encoder + ``fc`` (trained), key encoder (momentum copy), and the three queues.

    ``fc_input`` chooses what the label-distribution head reads: ``"rep"`` (default) the backbone
    representation ``h`` — so that fine-tuning can start its classifier from ``fc`` on top of the
    backbone — or ``"proj"`` the (unnormalised) projection-head output. ``fast_lane``: the momentum
    update as one lerp (hotpath.py; the encoder is then built in the lane's fused modules too).
    """

    def __init__(self, encoder: Encoder, n_labels: int, queue_size: int, momentum: float = 0.999,
                 fc_input: str = "rep", fast_lane: bool = False):
        super().__init__()
        if fc_input not in FC_INPUTS:
            raise ValueError(f"fc_input must be one of {FC_INPUTS}, got {fc_input!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.encoder_q = encoder
        self.encoder_k = copy.deepcopy(encoder)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.fc_input = fc_input
        self.fc = nn.Linear(encoder.rep_dim if fc_input == "rep" else encoder.out_dim, n_labels)
        self.momentum = float(momentum)
        self.fast_lane = bool(fast_lane)
        self.queue_size = int(queue_size)
        dim = encoder.out_dim
        self.register_buffer("queue", torch.zeros(queue_size, dim))                 # Q
        self.register_buffer("queue_labels", torch.zeros(queue_size, n_labels))     # Q_ll
        self.register_buffer("queue_dist", torch.zeros(queue_size, n_labels))       # Q_ld
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_count", torch.zeros((), dtype=torch.long))
        self._lists: torch.Tensor | None = None      # label_lists(Q_ll) [queue_size, L], derived data
        self.register_load_state_dict_post_hook(lambda module, keys: module._drop_lists())

    # ---------------------------------------------------------------- momentum encoder
    @torch.no_grad()
    def momentum_update(self) -> None:
        """``θ_k ← m θ_k + (1 − m) θ_q`` over parameters (as MoCo; the key encoder's BatchNorm
        statistics are its own and never used, since it always runs in training mode)."""
        hotpath.momentum_update_(list(self.encoder_k.parameters()), list(self.encoder_q.parameters()),
                                 self.momentum, self.fast_lane)

    def optimizer_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates: the parameters that require gradient."""
        return [p for p in self.parameters() if p.requires_grad]

    # ---------------------------------------------------------------- queue
    def queue_view(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The filled entries of ``(Q, Q_ll, Q_ld)`` (detached), in buffer order."""
        n = int(self.queue_count)
        return self.queue[:n].detach(), self.queue_labels[:n].detach(), self.queue_dist[:n].detach()

    def _keeps_lists(self) -> bool:
        return use_label_lists(self.queue_labels.shape[1], self.queue_labels.device)

    def _drop_lists(self) -> None:
        self._lists = None

    def _queue_lists(self) -> torch.Tensor | None:
        """``label_lists(Q_ll)`` of the whole buffer, kept up to date by :meth:`enqueue`."""
        if not self._keeps_lists():
            return None
        if self._lists is None or self._lists.device != self.queue_labels.device:
            self._lists = label_lists(self.queue_labels)
        return self._lists

    def _write_lists(self, idx: torch.Tensor | slice, labels: torch.Tensor) -> None:
        lists = self._queue_lists()
        if lists is None:
            return
        new = label_lists(labels, width=lists.shape[1])
        if new.shape[1] > lists.shape[1]:    # a row with more labels than any before: widen with pads
            pad = lists.new_full((lists.shape[0], new.shape[1] - lists.shape[1]), labels.shape[1])
            lists = self._lists = torch.cat([lists, pad], 1)
        lists[idx] = new

    def queue_block(self) -> Queue:
        """The filled queue as the loss's :class:`~mulsupcon_ld.losses.Queue` block."""
        qk, ql, qd = self.queue_view()
        lists = self._queue_lists()
        return Queue(keys=qk, labels=ql, dist=qd, lists=None if lists is None else lists[: qk.shape[0]])

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor, labels: torch.Tensor, dist: torch.Tensor) -> None:
        """Write a batch at the pointer, wrapping around the end of the buffer."""
        K = self.queue_size
        if k.shape[0] > K:  # only the newest K survive anyway
            k, labels, dist = k[-K:], labels[-K:], dist[-K:]
        b, ptr = k.shape[0], int(self.queue_ptr)
        # a slice where the batch does not wrap (a copy instead of an index_put; same values)
        idx = slice(ptr, ptr + b) if ptr + b <= K else (ptr + torch.arange(b, device=self.queue.device)) % K
        self.queue[idx] = k.detach().to(self.queue.dtype)
        self.queue_labels[idx] = labels.detach().to(self.queue_labels.dtype)
        self.queue_dist[idx] = dist.detach().to(self.queue_dist.dtype)
        self._write_lists(idx, labels)
        self.queue_ptr.fill_((ptr + b) % K)
        self.queue_count.fill_(min(int(self.queue_count) + b, K))

    # ---------------------------------------------------------------- forward
    def encode_query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q, logits)``: normalised query embedding and the fc logits, both with gradient."""
        h, p = self.encoder_q(x)
        logits = self.fc(h if self.fc_input == "rep" else p)
        return hotpath.l2_normalize(p), logits

    def forward(self, x_q: torch.Tensor, x_k: torch.Tensor, labels: torch.Tensor) -> MoCoOutput:
        """Algorithm 1, lines 2–7, plus the key set ``A(i)`` = batch keys followed by the queue.

        In training mode the key encoder is momentum-updated first (as in MoCo).
        """
        q, logits = self.encode_query(x_q)
        with torch.no_grad():
            if self.training:
                self.momentum_update()
            _, pk = self.encoder_k(x_k)
        dist = torch.softmax(logits, dim=1)
        with torch.no_grad():
            k = F.normalize(pk, dim=1)
        return MoCoOutput(q=q, k=k, logits=logits, dist=dist, labels=labels.to(self.queue_labels.dtype),
                          queue=self.queue_block())
