"""MIRFLICKR-25k → 24 labels from the v080 concept annotations.

Official files: ``mirflickr25k.zip`` (``mirflickr/im1.jpg`` … ``im25000.jpg`` plus ``doc/`` and
``meta/``) and ``mirflickr25k_annotations_v080.zip``: one text file per concept listing the
1-based numbers of the images showing it — 24 "potential" concepts (``sky.txt``) and 14
"relevant" subsets (``sky_r1.txt``, a stricter reading of the same concept), plus a README.
The 24 labels are the files without ``_r1``, in alphabetical order.

24,581 images have at least one of the 24 labels; Table 1's 19,664 + 4,917 = 24,581, so the
paper kept those and split them about 80/20. The split is unpublished: ours is a seeded random
permutation, ``n_train = floor(0.8 · n)`` (= 19,664 for n = 24,581), recorded in meta.json.
The extracted layout (``mirflickr/`` and a folder with the concept files, e.g.
``mirflickr25k_annotations_v080/``) is accepted as well.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import UserError
from .image_store import Source
from .reader_types import Collected, SplitItems

IMAGES_ZIP = "mirflickr25k.zip"
ANNOTATIONS_ZIP = "mirflickr25k_annotations_v080.zip"
CONCEPTS = (
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake",
    "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset",
    "transport", "tree", "water",
)
EXPECTED = {"labelled": 24581, "train": 19664, "test": 4917, "images": 25000}
TRAIN_FRACTION = 0.8
_IMG = re.compile(r"(?:^|/)im(\d+)\.jpg$")


def concept_files(names: list[str]) -> dict[str, str]:
    """``{concept: member}`` for the concept lists among ``names`` (``_r1`` lists and README excluded)."""
    out: dict[str, str] = {}
    for n in names:
        base = n.rsplit("/", 1)[-1]
        if not base.endswith(".txt") or base.lower().startswith("readme"):
            continue
        stem = base[:-4]
        if stem.endswith("_r1"):
            continue
        if stem in out:
            raise UserError(f"two annotation files for concept {stem!r}: {out[stem]} and {n}")
        out[stem] = n
    return out


def read_concepts(src: Source, files: dict[str, str], n_images: int = 25000) -> tuple[list[str], np.ndarray]:
    """``(names, y [n_images, C] uint8)``, row ``i`` = image ``im{i+1}.jpg``."""
    names = sorted(files)
    y = np.zeros((n_images, len(names)), dtype=np.uint8)
    for j, c in enumerate(names):
        for tok in src.read(files[c]).decode().split():
            k = int(tok)
            if not 1 <= k <= n_images:
                raise UserError(f"{files[c]} lists image {k}, outside 1..{n_images}")
            y[k - 1, j] = 1
    return names, y


def _annotation_source(raw_folder: Path) -> tuple[Source, dict[str, str], str]:
    archive = raw_folder / ANNOTATIONS_ZIP
    if archive.is_file():
        src = Source.open(archive)
        return src, concept_files(src.names()), f"archive {ANNOTATIONS_ZIP}"
    # extracted: any folder (depth ≤ 2) holding sky.txt
    for cand in [raw_folder, *sorted(raw_folder.glob("*")), *sorted(raw_folder.glob("*/*"))]:
        if cand.is_dir() and (cand / "sky.txt").is_file():
            src = Source("dir", cand)
            names = [p.name for p in cand.iterdir() if p.is_file()]
            return src, concept_files(names), f"extracted folder {cand.as_posix()}"
    raise UserError(f"MIRFLICKR annotations not found in {raw_folder}: run `mulsupcon-ld download mirflickr`, "
                    f"or put {ANNOTATIONS_ZIP} (or its extracted concept files, e.g. sky.txt) there")


def _image_source(raw_folder: Path) -> tuple[Source, dict[int, str], str]:
    archive = raw_folder / IMAGES_ZIP
    if archive.is_file():
        src = Source.open(archive)
        names, how = src.names(), f"archive {IMAGES_ZIP}"
    else:
        for cand in ("mirflickr", "mirflickr25k", "images", "."):
            d = raw_folder / cand
            if d.is_dir() and any(d.glob("im*.jpg")):
                src = Source("dir", d)
                names = [p.name for p in d.glob("im*.jpg")]
                how = f"extracted folder {d.as_posix()}"
                break
        else:
            raise UserError(f"MIRFLICKR images not found in {raw_folder}: run `mulsupcon-ld download mirflickr`, "
                            f"or put {IMAGES_ZIP} (or its extracted mirflickr/im*.jpg) there")
    by_number: dict[int, str] = {}
    for n in names:
        m = _IMG.search(n)
        if m and "/meta/" not in n and "/doc/" not in n:
            by_number.setdefault(int(m.group(1)), n)
    return src, by_number, how


def collect(raw_folder: Path, *, seed: int = 0, train_fraction: float = TRAIN_FRACTION, **_: object):
    ann_src, files, ann_how = _annotation_source(raw_folder)
    names, y_all = read_concepts(ann_src, files)
    notes: list[str] = []
    if tuple(names) != CONCEPTS:
        notes.append(f"concept files differ from the 24 of v080: {sorted(set(names) ^ set(CONCEPTS))}")
    img_src, by_number, img_how = _image_source(raw_folder)
    labelled = np.flatnonzero(y_all.any(axis=1)) + 1          # 1-based image numbers
    present = np.array([k in by_number for k in labelled], dtype=bool)
    n_missing = int((~present).sum())
    labelled = labelled[present]
    n = len(labelled)
    rng = np.random.default_rng([int(seed), 7001])               # test-split stream
    perm = rng.permutation(n)
    n_train = int(np.floor(train_fraction * n))
    parts = {"train": np.sort(labelled[perm[:n_train]]), "test": np.sort(labelled[perm[n_train:]])}
    splits = {s: SplitItems([(0, by_number[int(k)]) for k in ks], y_all[ks - 1], [f"im{k}" for k in ks])
              for s, ks in parts.items()}
    counts = {
        "labelled": {"expected": EXPECTED["labelled"], "found": int(y_all.any(axis=1).sum())},
        "images": {"expected": EXPECTED["images"], "found": len(by_number), "labelled_but_missing": n_missing},
        "train": {"expected": EXPECTED["train"]}, "test": {"expected": EXPECTED["test"]},
        "annotations": ann_how, "source": img_how,
    }
    notes.append("24 labels = the concept files without '_r1'; images with none of them are dropped; "
                 f"no official split: seeded {train_fraction:.0%}/{1 - train_fraction:.0%} split of the "
                 "labelled images (Table 1's 19,664/4,917 sizes; not the paper's exact images)")
    return Collected(
        label_names=names, splits=splits, sources=[img_src], counts=counts, notes=notes,
        options={"train_fraction": train_fraction},
        test_split={"method": "seeded random", "seed": int(seed), "seed_stream": [int(seed), 7001],
                    "train_fraction": train_fraction, "n_train": int(n_train), "n_test": int(n - n_train),
                    "of": "images with at least one of the 24 labels",
                    "rule": "numpy default_rng([seed, 7001]).permutation(n); first floor(0.8 n) → train"},
        label_order="alphabetical concept file names",
    )
