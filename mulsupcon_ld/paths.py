"""Where raw downloads and prepared datasets live (flags first, then environment, then defaults)."""

from __future__ import annotations

import os
from pathlib import Path

RAW_DIR_ENV = "MULSUPCON_RAW_DIR"
DATA_DIR_ENV = "MULSUPCON_DATA_DIR"
CACHE_DIR_ENV = "MULSUPCON_CACHE_DIR"
CALIBRATION_CACHE_ENV = "MULSUPCON_CALIBRATION_CACHE"


def raw_dir(arg: str | os.PathLike | None) -> Path | None:
    """Pre-staged download directory (``--raw-dir`` or ``$MULSUPCON_RAW_DIR``), or None."""
    value = arg if arg is not None else os.environ.get(RAW_DIR_ENV)
    return Path(value).expanduser() if value else None


def data_dir(arg: str | os.PathLike | None) -> Path:
    """Prepared-data directory (``--data-dir``, ``$MULSUPCON_DATA_DIR``, else ``./data``)."""
    value = arg if arg is not None else os.environ.get(DATA_DIR_ENV, "data")
    return Path(value).expanduser()


def download_cache_dir() -> Path:
    """Where files fetched from the network are kept (``$MULSUPCON_CACHE_DIR`` or ``~/.cache/mulsupcon_ld/raw``)."""
    value = os.environ.get(CACHE_DIR_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mulsupcon_ld" / "raw"


def calibration_cache_file() -> Path | None:
    """Where ``precision=auto`` keeps its calibrations for later runs (``$MULSUPCON_CALIBRATION_CACHE``,
    ``off`` for none, or ``~/.cache/mulsupcon_ld/calibrations.json``)."""
    value = os.environ.get(CALIBRATION_CACHE_ENV)
    if value is not None and value.strip().lower() in ("", "off", "none", "0"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mulsupcon_ld" / "calibrations.json"
