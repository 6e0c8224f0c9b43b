"""Small deterministic stand-ins with the shape of a real dataset, for tests and smoke runs.

The stand-in keeps what the code paths depend on (feature count, label count, mean labels per
sample) and makes labels *learnable*: a few latent factors drive both the features and the label
scores, and each label is switched on above a per-label quantile. Image stand-ins paint one
coloured square per positive label, so a tiny CNN can learn them too. Seeds derive from the
dataset name (CRC32), never from Python's randomised ``hash``.
"""

from __future__ import annotations

import zlib

import numpy as np

N_TRAIN, N_VAL, N_TEST = 320, 80, 200
IMAGE_SIZE = 32
N_LATENT = 8


def name_seed(name: str) -> int:
    """A stable seed for ``name`` across processes and Python versions."""
    return zlib.crc32(name.encode("utf-8"))


def label_frequencies(n_labels: int, mean_labels: float, n_rows: int) -> np.ndarray:
    """Per-label positive rates, long-tailed like real data, summing to ``mean_labels``."""
    p = (np.arange(n_labels) + 1.0) ** -0.7
    lo, hi = min(2.0 / n_rows, mean_labels / n_labels), 0.95
    target = min(mean_labels, hi * n_labels)
    for _ in range(100):  # rescale, clip, repeat: converges in a handful of steps
        p = np.clip(p * target / p.sum(), lo, hi)
        if abs(p.sum() - target) < 1e-9:
            break
    return p


def synthetic_labels(n_rows: int, n_labels: int, mean_labels: float, seed: int,
                     n_latent: int = N_LATENT) -> tuple[np.ndarray, np.ndarray]:
    """``(latent [N, k], labels uint8 [N, C])``: thresholded noisy linear functions of the latent."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_rows, n_latent))
    w = rng.standard_normal((n_latent, n_labels))
    scores = z @ w + 0.5 * rng.standard_normal((n_rows, n_labels))
    p = label_frequencies(n_labels, mean_labels, n_rows)
    # positives per label: p_c * N, rounded by largest remainder so the total is exactly
    # round(mean_labels * N); each label is on for its highest-scoring rows
    want = p * n_rows
    counts = np.floor(want).astype(np.int64)
    extra = int(round(min(mean_labels, p.sum()) * n_rows)) - int(counts.sum())
    if extra > 0:
        counts[np.argsort(-(want - counts), kind="stable")[:extra]] += 1
    order = np.argsort(-scores, axis=0, kind="stable")
    y = np.zeros((n_rows, n_labels), dtype=np.uint8)
    for c in range(n_labels):
        y[order[:counts[c], c], c] = 1
    return z, y


def synthetic_vectors(latent: np.ndarray, n_features: int, seed: int,
                      noise: float = 0.3) -> np.ndarray:
    """Features float32 ``[N, D]``: a random linear view of the latent factors plus noise."""
    rng = np.random.default_rng(seed + 1)
    a = rng.standard_normal((latent.shape[1], n_features)) / np.sqrt(latent.shape[1])
    x = latent @ a + noise * rng.standard_normal((latent.shape[0], n_features))
    return x.astype(np.float32)


def synthetic_images(labels: np.ndarray, seed: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """Images uint8 ``[N, 3, size, size]``: dim noise plus a square of label c's colour at label
    c's grid cell for every positive label c. Reusable by any image loader."""
    labels = np.asarray(labels)
    n, c = labels.shape
    rng = np.random.default_rng(seed + 2)
    grid = int(np.ceil(np.sqrt(c)))
    cell = max(1, size // grid)
    colours = rng.integers(96, 256, size=(c, 3), dtype=np.int64)
    images = rng.integers(0, 48, size=(n, 3, size, size), dtype=np.int64)
    for k in range(c):
        r0, c0 = (k // grid) * cell, (k % grid) * cell
        rows = np.flatnonzero(labels[:, k])
        if rows.size:
            images[rows, :, r0:r0 + cell, c0:c0 + cell] = colours[k][None, :, None, None]
    return images.astype(np.uint8)


def synthetic_arrays(kind: str, n_labels: int, mean_labels: float, n_features: int | None,
                     seed: int, sizes: tuple[int, int, int] = (N_TRAIN, N_VAL, N_TEST)
                     ) -> dict[str, dict[str, np.ndarray]]:
    """``{"train"|"val"|"test": {"x": …, "y": …}}`` for a vector or image stand-in."""
    n = sum(sizes)
    latent, y = synthetic_labels(n, n_labels, mean_labels, seed)
    if kind == "vector":
        if not n_features:
            raise ValueError("a vector stand-in needs n_features")
        x = synthetic_vectors(latent, n_features, seed)
    elif kind == "image":
        x = synthetic_images(y, seed)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    out, start = {}, 0
    for split, size in zip(("train", "val", "test"), sizes):
        out[split] = {"x": x[start:start + size], "y": y[start:start + size]}
        start += size
    return out
