"""Write-then-rename helpers: a killed job never leaves a file that looks finished."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` only if the block succeeds.

    The temporary name starts with ``.`` and ends with ``.partial`` so globbing tools and
    Snakemake never mistake it for the real output. On error the temporary file is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(o: Any) -> Any:
    # numpy scalars and paths show up in configs and metrics
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_npy(path: str | os.PathLike, array: Any) -> None:
    """Atomically write one array as ``.npy``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy must not append ".npy" to the temp name
            np.save(fh, array)


def save_npz(path: str | os.PathLike, *, compressed: bool = False, **arrays: Any) -> None:
    """Atomically write named arrays as ``.npz`` (``compressed``: zip-deflated)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy must not append ".npz" to the temp name
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)
