"""Losses of Section 3: MulSupCon (eqs. 1-4) and MulSupCon_LD, RLD (eqs. 5-9, 12, 14) and CLD
(eqs. 5, 10, 11, 13, 15), vectorised over anchors x (batch keys + queue).

Conventions shared by every function of the package (docs/method.md has the equation -> function table and
every reading of the paper that had to be chosen):

* ``query`` ``[B, d]``: the L2-normalised query-encoder outputs z_i (with gradient).
* ``keys`` ``[K, d]``: the L2-normalised key-encoder outputs of the batch, rows ``0..B-1`` in the
  same order as ``query`` (row ``i`` is k_i, the positive key of anchor ``i``), followed by the
  queue ``Q`` (``K = B + len(queue)``; a queue that is not yet full is just a shorter ``K``).
  Keys are always detached here: no gradient reaches the key encoder or the queue.
* ``query_labels`` ``[B, C]`` and ``key_labels`` ``[K, C]``: logical labels in {0, 1} (any dtype);
  ``key_labels[:B]`` must equal ``query_labels`` (the batch's own labels; ``Q_ll`` after them).
* ``A(i)``, the candidates of anchor ``i`` (the softmax denominator of eqs. 3, 5 and 10): all ``K``
  keys, i.e. every key of the batch (k_i included, as MoCo's positive) and the whole queue
  (MulSupCon's convention). ``LDOptions.in_batch_keys="own"`` selects the MoCo / Algorithm 1 literal
  reading A(i) = {k_i} + queue for the LD losses.
* ``P^j(i) = {p in A(i): y_p^j = 1}``; |P^j(i)| >= 1 for every label j of i because k_i is in A(i)
  and carries y_i. Should a caller break that (``key_labels[:B] != query_labels``) an empty
  ``P^j(i)`` contributes 0 instead of NaN.

Everything is computed in float32 (float64 inputs stay float64) with autocast disabled inside the
loss, so the functions can be called from a bf16-autocast region: the only large products are
``B x K x d`` and ``B x K x C`` and cost little next to the encoder.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from ..names import ABLATIONS, LD_METHODS as VARIANTS
from .common import _safe_inv
from .ld import ld_loss
from .mulsupcon import mulsupcon_loss
from .nodes import _MulSupConNode, _SimLogSumExp
from .options import _CHOICES, LDOptions
from .products import (_SPARSE_LABEL_MAX_DENSITY, _counts, _label_sums, _own_valid, all_positive_mask,
                       any_positive_mask, label_overlap, per_label_positive_counts)
from .queue import LIST_MIN_LABELS, Queue, _ListLabels, label_lists, use_label_lists

__all__ = [
    "ABLATIONS",
    "VARIANTS",
    "LDOptions",
    "Queue",
    "label_lists",
    "use_label_lists",
    "all_positive_mask",
    "any_positive_mask",
    "label_overlap",
    "per_label_positive_counts",
    "mulsupcon_loss",
    "ld_loss",
]

# the private names above stay reachable as ``losses.X`` for the tests and benchmarks that use them
_PARTS = tuple(sys.modules[f"{__name__}.{part}"] for part in
               ("common", "products", "queue", "options", "nodes", "mulsupcon", "ld_weights", "ld_terms", "ld"))


class _OneNamespace(types.ModuleType):
    """The package keeps the patching behaviour of the single module it replaces: setting ``losses.X``
    (``monkeypatch.setattr(losses, "_SPARSE_LABEL_MAX_DENSITY", ...)``, a spy on ``losses.ld_loss``)
    also rebinds X in every part that holds it, where the functions read it."""

    def __setattr__(self, name: str, value: Any) -> None:
        for part in _PARTS:
            if name in vars(part):
                setattr(part, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _OneNamespace
