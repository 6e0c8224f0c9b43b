"""Reader for MulSupCon's HDF5 copies of vector datasets (``feature`` N×D, ``target`` N×C)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError


def read_mulsupcon_hdf5(path: str | os.PathLike, n_features: int | None = None,
                        n_labels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(features float32 [N, D], labels uint8 [N, C])`` from one MulSupCon HDF5 file.

    The files hold ``feature`` (float64) and ``target`` (int64 multi-hot); label columns keep
    the file's order. Shapes are checked against ``n_features``/``n_labels`` when given, and
    non-finite features or non-0/1 targets raise :class:`UserError` rather than being fixed up.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as fh:
            missing = [k for k in ("feature", "target") if k not in fh]
            if missing:
                raise UserError(f"{path}: missing dataset(s) {missing}; expected MulSupCon's "
                                f"'feature' and 'target' (found {sorted(fh.keys())})")
            x = np.asarray(fh["feature"][()], dtype=np.float64)
            t = np.asarray(fh["target"][()])
    except OSError as exc:
        raise UserError(f"cannot read HDF5 file {path}: {exc}") from None
    if x.ndim != 2 or t.ndim != 2 or x.shape[0] != t.shape[0]:
        raise UserError(f"{path}: 'feature' {x.shape} and 'target' {t.shape} are not N×D and N×C "
                        f"with the same N")
    if n_features is not None and x.shape[1] != n_features:
        raise UserError(f"{path}: {x.shape[1]} features, expected {n_features}")
    if n_labels is not None and t.shape[1] != n_labels:
        raise UserError(f"{path}: {t.shape[1]} labels, expected {n_labels}")
    if not np.isfinite(x).all():
        raise UserError(f"{path}: {int((~np.isfinite(x)).sum())} NaN/inf feature value(s)")
    if not np.isin(t, (0, 1)).all():
        raise UserError(f"{path}: 'target' holds values other than 0/1")
    return x.astype(np.float32), t.astype(np.uint8)
