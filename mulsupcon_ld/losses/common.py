"""Numerics shared by every loss: autocast off inside the loss, the compute dtype, the argument
shapes, a safe inverse and a row-wise squared norm."""
from __future__ import annotations

import contextlib

import torch


def _no_autocast(device: torch.device):
    dev = device.type
    available = getattr(torch.amp, "is_autocast_available", None)
    if available is not None and available(dev):
        return torch.autocast(device_type=dev, enabled=False)
    return contextlib.nullcontext()


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_shapes(query: torch.Tensor, keys: torch.Tensor, query_labels: torch.Tensor,
                  key_labels: torch.Tensor) -> tuple[int, int, int]:
    if query.dim() != 2 or keys.dim() != 2 or query.shape[1] != keys.shape[1]:
        raise ValueError(f"query [B, d] and keys [K, d] expected, got {tuple(query.shape)} and {tuple(keys.shape)}")
    B, K = query.shape[0], keys.shape[0]
    if K < B:
        raise ValueError(f"keys must hold the batch's own B={B} keys first (then the queue); got K={K}")
    if query_labels.dim() != 2 or query_labels.shape[0] != B:
        raise ValueError(f"query_labels must be [B={B}, C], got {tuple(query_labels.shape)}")
    C = query_labels.shape[1]
    if tuple(key_labels.shape) != (K, C):
        raise ValueError(f"key_labels must be [K={K}, C={C}], got {tuple(key_labels.shape)}")
    return B, K, C


def _safe_inv(n: torch.Tensor) -> torch.Tensor:
    """1/n where n > 0, else 0 (an empty P^j(i) contributes nothing)."""
    return torch.where(n > 0, 1.0 / n.clamp_min(1e-30), torch.zeros_like(n))


def _sqnorm(x: torch.Tensor, one_pass: bool = False) -> torch.Tensor:
    """Row-wise squared norm without a full-size temporary. ``one_pass`` (the many-label path):
    ``vector_norm(...)^2``, since ``einsum("kc,kc->k")`` runs as K batched dot products on CPU, far
    slower at the queue's shape (docs/performance.md, "One-pass squared norms"); otherwise the einsum,
    the arithmetic of earlier commits."""
    return torch.linalg.vector_norm(x, dim=1).square() if one_pass else torch.einsum("kc,kc->k", x, x)
