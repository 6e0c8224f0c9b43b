"""What an image-format reader hands back (readers layer, imported by every reader).

A reader (``voc``, ``coco``, ``mirflickr``, ``nuswide``) has ``collect(folder, seed, **options)
-> Collected``; :mod:`.image_prepare` turns that into the image store and the split arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .image_store import Source


@dataclass
class SplitItems:
    """One split as found in the raw files: image members, labels, original ids."""

    items: list[tuple[int, str]]   # (index into Collected.sources, member name)
    y: np.ndarray                  # uint8 [N, C]
    ids: list[str]


@dataclass
class Collected:
    """What a format reader found: labels per split, where the images are, what to record."""

    label_names: list[str]
    splits: dict[str, SplitItems]  # "train" and "test"
    sources: list[Source]
    counts: dict[str, Any]
    notes: list[str]
    options: dict[str, Any]
    test_split: dict[str, Any]
    label_order: str
    extra: dict[str, Any] = field(default_factory=dict)


