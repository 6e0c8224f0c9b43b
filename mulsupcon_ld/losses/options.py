"""LDOptions, the losses' switches: defined in :mod:`mulsupcon_ld.ld_options`, below the settings
that build them (the layers of pyproject.toml), and read here."""
from __future__ import annotations

from ..ld_options import _CHOICES, LDOptions

__all__ = ["LDOptions"]
