"""MS-COCO 2014 → multi-label targets from the instance annotations.

Official files: ``train2014.zip`` (``train2014/COCO_train2014_<id>.jpg``, 82,783 images),
``val2014.zip`` (``val2014/…``, 40,504 images) and ``annotations_trainval2014.zip``
(``annotations/instances_{train,val}2014.json``). The extracted layout ``train2014/``,
``val2014/``, ``annotations/`` in the dataset's raw folder is accepted as well.

A label is positive when the image has at least one instance annotation of that category; crowd
annotations (``iscrowd=1``) count (option ``include_crowd``). Images without any annotation are
dropped: 82,081 of train2014 and 40,137 of val2014 remain — Table 1's sizes. The 80 columns follow
the order of the JSON's ``categories`` list (ids 1…90 with gaps), recorded in meta.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .image_store import Source
from .reader_types import Collected, SplitItems

ARCHIVES = {"train": "train2014.zip", "test": "val2014.zip"}
ANNOTATIONS = "annotations_trainval2014.zip"
JSON_NAMES = {"train": "instances_train2014.json", "test": "instances_val2014.json"}
IMAGE_DIRS = {"train": "train2014", "test": "val2014"}
EXPECTED = {"train": {"images": 82783, "with_annotations": 82081},
            "test": {"images": 40504, "with_annotations": 40137}}


def labels_from_instances(data: dict[str, Any], include_crowd: bool = True
                          ) -> tuple[list[str], list[int], list[dict], np.ndarray, int]:
    """``(category names, category ids, kept images, y [N, C] uint8, n_images_total)``.

    Kept images are those with at least one (counted) annotation, in the JSON's image order.
    """
    cats = data.get("categories")
    if not cats:
        raise UserError("the COCO annotation file has no 'categories'; is it an instances_*.json?")
    cat_ids = [int(c["id"]) for c in cats]
    col = {cid: j for j, cid in enumerate(cat_ids)}
    images = data.get("images", [])
    row = {int(im["id"]): i for i, im in enumerate(images)}
    y = np.zeros((len(images), len(cats)), dtype=np.uint8)
    for a in data.get("annotations", []):
        if not include_crowd and int(a.get("iscrowd", 0)):
            continue
        i = row.get(int(a["image_id"]))
        j = col.get(int(a["category_id"]))
        if i is None or j is None:
            raise UserError(f"COCO annotation {a.get('id')} refers to an unknown image or category")
        y[i, j] = 1
    keep = np.flatnonzero(y.any(axis=1))
    return [c["name"] for c in cats], cat_ids, [images[i] for i in keep], y[keep], len(images)


def _find_json(raw_folder: Path, split: str) -> tuple[bytes, str]:
    name = JSON_NAMES[split]
    archive = raw_folder / ANNOTATIONS
    if archive.is_file():
        src = Source.open(archive)
        member = next((n for n in src.names() if n.endswith("/" + name) or n == name), None)
        if member is None:
            raise UserError(f"{archive} has no {name}; delete it and run `mulsupcon-ld download coco`")
        return src.read(member), f"archive {ANNOTATIONS}:{member}"
    for cand in (f"annotations/{name}", name, f"annotations_trainval2014/annotations/{name}"):
        p = raw_folder / cand
        if p.is_file():
            return p.read_bytes(), f"extracted {p.as_posix()}"
    raise UserError(f"MS-COCO annotations not found in {raw_folder}: run `mulsupcon-ld download coco`, "
                    f"or put {ANNOTATIONS} (or its extracted annotations/{name}) there")


def _find_images(raw_folder: Path, split: str) -> tuple[Source, str, str]:
    archive = raw_folder / ARCHIVES[split]
    folder = IMAGE_DIRS[split]
    if archive.is_file():
        return Source.open(archive), f"{folder}/", f"archive {ARCHIVES[split]}"
    for cand in (folder, f"images/{folder}"):
        if (raw_folder / cand).is_dir():
            return Source("dir", raw_folder), f"{cand}/", f"extracted folder {(raw_folder / cand).as_posix()}"
    raise UserError(f"MS-COCO {folder} images not found in {raw_folder}: run `mulsupcon-ld download coco`, "
                    f"or put {ARCHIVES[split]} (or its extracted {folder}/ folder) there")


def collect(raw_folder: Path, *, include_crowd: bool = True, **_: object):
    include_crowd = bool(include_crowd)
    sources: list[Source] = []
    splits: dict[str, SplitItems] = {}
    counts: dict[str, dict] = {}
    label_names: list[str] | None = None
    cat_ids: list[int] | None = None
    for split in ("train", "test"):
        blob, json_from = _find_json(raw_folder, split)
        data = json.loads(blob)
        del blob
        names, ids, kept, y, n_total = labels_from_instances(data, include_crowd)
        del data
        if label_names is None:
            label_names, cat_ids = names, ids
        elif names != label_names:
            raise UserError("instances_train2014.json and instances_val2014.json list different categories")
        src, prefix, img_from = _find_images(raw_folder, split)
        if src not in sources:
            sources.append(src)
        si = sources.index(src)
        items = [(si, prefix + im["file_name"]) for im in kept]
        if src.kind == "dir":  # extracted folder: tolerate missing files, report them
            present = np.array([src.exists(m) for _, m in items], dtype=bool)
        else:
            present = np.ones(len(items), dtype=bool)
        n_missing = int((~present).sum())
        items = [it for it, ok in zip(items, present) if ok]
        splits[split] = SplitItems(items, y[present], [str(im["id"]) for im, ok in zip(kept, present) if ok])
        counts[split] = {"expected": EXPECTED[split]["with_annotations"],
                         "images_in_json": n_total, "expected_images_in_json": EXPECTED[split]["images"],
                         "with_annotations": len(kept), "missing_image_files": n_missing,
                         "annotations": json_from, "source": img_from}
    notes = ["train = train2014, test = val2014 (the usual multi-label COCO protocol), each restricted "
             "to images with at least one instance annotation"
             + ("" if include_crowd else " (crowd annotations ignored: option include_crowd=False)")]
    return Collected(
        label_names=label_names or [], splits=splits, sources=sources, counts=counts, notes=notes,
        options={"include_crowd": include_crowd},
        test_split={"method": "official", "source": "val2014"},
        label_order="order of 'categories' in instances_train2014.json",
        extra={"coco_category_ids": cat_ids},
    )
