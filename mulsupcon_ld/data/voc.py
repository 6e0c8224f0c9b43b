"""PASCAL VOC 2007 → multi-label targets from the XML annotations.

Layout of both official tars (and of their extraction, merged or not)::

    VOCdevkit/VOC2007/Annotations/<id>.xml      <object><name>dog</name><difficult>0</difficult>…
    VOCdevkit/VOC2007/JPEGImages/<id>.jpg
    VOCdevkit/VOC2007/ImageSets/Main/trainval.txt   (5,011 ids; in VOCtrainval_06-Nov-2007.tar)
    VOCdevkit/VOC2007/ImageSets/Main/test.txt       (4,952 ids; in VOCtest_06-Nov-2007.tar)

A class is positive for an image when the image has an object of that class. Objects marked
``difficult`` are the only question: ``difficult="negative"`` (default) counts a class whose only
objects are difficult as absent — 1.458/1.416 labels per image on trainval/test, the paper's
1.46/1.42 — while ``difficult="positive"`` counts every object (1.579/1.541, the convention of
ML-GCN-style code). VOC's own per-class lists (``ImageSets/Main/<class>_<split>.txt``) mark such
images 0 ("difficult"), which the two options resolve either way.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import UserError
from .image_store import Source
from .reader_types import Collected, SplitItems

# the standard VOC class order (alphabetical), as in the devkit's VOCinit.m
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
ARCHIVES = {"trainval": "VOCtrainval_06-Nov-2007.tar", "test": "VOCtest_06-Nov-2007.tar"}
EXPECTED = {"trainval": 5011, "test": 4952}
DIFFICULT_OPTIONS = ("negative", "positive")


def parse_annotation(xml: bytes | str, difficult: str = "negative") -> np.ndarray:
    """uint8 ``[20]`` label vector of one VOC annotation file."""
    if difficult not in DIFFICULT_OPTIONS:
        raise UserError(f"difficult must be one of {DIFFICULT_OPTIONS}, not {difficult!r}")
    root = ET.fromstring(xml)
    y = np.zeros(len(VOC_CLASSES), dtype=np.uint8)
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise UserError(f"unknown VOC class {name!r} in an annotation; is this VOC 2007?")
        is_difficult = (obj.findtext("difficult") or "0").strip() == "1"
        if is_difficult and difficult == "negative":
            continue
        y[VOC_CLASSES.index(name)] = 1
    return y


def _voc_root_in(source: Source, split: str) -> str | None:
    """Prefix (``…/VOC2007/``) under which ``source`` holds ``ImageSets/Main/<split>.txt``."""
    tail = f"ImageSets/Main/{split}.txt"
    if source.kind == "dir":
        for cand in ("", "VOC2007/", "VOCdevkit/VOC2007/", "*/VOCdevkit/VOC2007/", "*/VOC2007/"):
            hits = sorted(source.path.glob(cand + tail))
            if hits:
                return hits[0].relative_to(source.path).as_posix()[: -len(tail)]
        return None
    hits = [n for n in source.names() if n.endswith(tail)]
    return hits[0][: -len(tail)] if hits else None


def find_sources(raw_folder: Path) -> tuple[dict[str, tuple[Source, str]], dict]:
    """For trainval and test: ``(source, prefix)``; archives first, then extracted folders."""
    found: dict[str, tuple[Source, str]] = {}
    used: dict[str, str] = {}
    for split, archive in ARCHIVES.items():
        path = raw_folder / archive
        if path.is_file():
            src = Source.open(path)
            prefix = _voc_root_in(src, split)
            if prefix is None:
                raise UserError(f"{path} has no ImageSets/Main/{split}.txt; the archive is not the "
                                "official one — delete it and run `mulsupcon-ld download pascal`")
            found[split] = (src, prefix)
            used[split] = f"archive {archive}"
    if len(found) < 2 and raw_folder.is_dir():
        folder = Source("dir", raw_folder)
        for split in ARCHIVES:
            if split not in found:
                prefix = _voc_root_in(folder, split)
                if prefix is not None:
                    found[split] = (folder, prefix)
                    used[split] = f"extracted folder {(raw_folder / prefix).as_posix()}"
    return found, used


def collect(raw_folder: Path, *, difficult: str = "negative", **_: object):
    if difficult not in DIFFICULT_OPTIONS:
        raise UserError(f"pascal option difficult must be one of {DIFFICULT_OPTIONS}, not {difficult!r}")
    found, used = find_sources(raw_folder)
    missing = [s for s in ARCHIVES if s not in found]
    if missing:
        raise UserError(
            f"PASCAL VOC 2007 {' and '.join(missing)} not found in {raw_folder}: run `mulsupcon-ld "
            f"download pascal`, or put {', '.join(ARCHIVES[s] for s in missing)} (or their extracted "
            "VOCdevkit/VOC2007/ folder) there")
    sources: list[Source] = []
    splits: dict[str, SplitItems] = {}
    counts: dict[str, dict] = {}
    for split, out_name in (("trainval", "train"), ("test", "test")):
        src, prefix = found[split]
        if src not in sources:
            sources.append(src)
        si = sources.index(src)
        ids = [ln.strip() for ln in src.read(f"{prefix}ImageSets/Main/{split}.txt").decode().splitlines()
               if ln.strip()]
        items, ys, keep_ids, missing_ann = [], [], [], 0
        for img_id in ids:
            ann = f"{prefix}Annotations/{img_id}.xml"
            try:
                xml = src.read(ann)
            except (KeyError, FileNotFoundError):
                missing_ann += 1
                continue
            ys.append(parse_annotation(xml, difficult))
            items.append((si, f"{prefix}JPEGImages/{img_id}.jpg"))
            keep_ids.append(img_id)
        y = np.stack(ys) if ys else np.zeros((0, len(VOC_CLASSES)), np.uint8)
        splits[out_name] = SplitItems(items, y, keep_ids)
        counts[out_name] = {"expected": EXPECTED[split], "listed": len(ids),
                            "missing_annotation": missing_ann, "source": used[split]}
    notes = [f"labels from the XML annotations; objects marked difficult count as {difficult} "
             "(option difficult='negative'|'positive'; 'negative' matches Table 1's mean L/S)"]
    return Collected(
        label_names=list(VOC_CLASSES), splits=splits, sources=sources, counts=counts, notes=notes,
        options={"difficult": difficult},
        test_split={"method": "official", "source": "VOC2007 test (ImageSets/Main/test.txt)"},
        label_order="standard VOC class order (alphabetical, devkit VOCinit.m)",
    )
