"""Which reader reads an image dataset, and whether a folder holds its extracted layout.

Readers layer: no torch, so :mod:`mulsupcon_ld.download` (a layer up) can ask
:func:`has_image_layout` whether a pre-staged folder needs no archives.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import UserError
from . import coco, mirflickr, nuswide, voc

# raw_format prefix (registry) → reader module (with collect()); the registry names them e.g. "voc2007-tar"
READERS: dict[str, ModuleType] = {"voc2007": voc, "coco2014": coco, "mirflickr25k": mirflickr, "nuswide": nuswide}
# format name → options its collect() takes, with their defaults
FORMAT_OPTIONS: dict[str, dict[str, Any]] = {
    "voc": {"difficult": "negative"},
    "coco": {"include_crowd": True},
    "mirflickr": {"train_fraction": 0.8},
    "nuswide": {"labels": "81", "split": "paper"},
}


def image_format(spec: Any) -> str:
    """``voc`` / ``coco`` / ``mirflickr`` / ``nuswide`` for a registry entry (by its raw_format)."""
    raw_format = str(spec.raw_format).lower()
    for prefix, mod in READERS.items():
        if raw_format.startswith(prefix):
            return mod.__name__.rsplit(".", 1)[-1]
    raise UserError(f"no image reader for dataset {spec.name!r} (raw_format {raw_format!r}); "
                    f"known formats: {', '.join(READERS)}")


def reader(fmt: str) -> ModuleType:
    """The reader module of format ``fmt`` (see :func:`image_format`)."""
    return {m.__name__.rsplit(".", 1)[-1]: m for m in READERS.values()}[fmt]


def has_image_layout(spec: Any, folder: str | os.PathLike) -> bool:
    """Cheap check that ``folder`` holds an extracted official layout of ``spec`` (no archives needed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    fmt = image_format(spec)
    if fmt == "voc":
        return len(voc.find_sources(folder)[0]) == 2
    if fmt == "coco":
        return all(((folder / d).is_dir() or (folder / "images" / d).is_dir()) for d in ("train2014", "val2014")) \
            and all(any((folder / c).is_file() for c in (f"annotations/{j}", j))
                    for j in ("instances_train2014.json", "instances_val2014.json"))
    if fmt == "mirflickr":
        imgs = any(any((folder / d).glob("im*.jpg")) for d in ("mirflickr", "mirflickr25k", "images", ".")
                   if (folder / d).is_dir())
        anns = any((c / "sky.txt").is_file() for c in [folder, *folder.glob("*"), *folder.glob("*/*")] if c.is_dir())
        return imgs and anns
    # nuswide is always a manual layout
    return any(folder.glob("*/AllLabels")) or (folder / "Groundtruth.zip").is_file()


