"""NUS-WIDE (manual download) → 81 (or the 21 most frequent) concept labels.

NUS-WIDE's images are not downloadable from a stable public address; the user supplies the
official layout in the dataset's raw folder (each of the three metadata parts may also stay
zipped as ``Groundtruth.zip``, ``ImageList.zip``, ``ConceptsList.zip``)::

    ConceptsList/Concepts81.txt                 81 concept names, one per line (alphabetical)
    Groundtruth/AllLabels/Labels_<concept>.txt  269,648 lines of 0/1, in Imagelist.txt order
    ImageList/Imagelist.txt                     269,648 paths, e.g. C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg
    ImageList/TrainImagelist.txt                161,789 paths (the official train split)
    ImageList/TestImagelist.txt                 107,859 paths (the official test split)
    Flickr/<folder>/<file>.jpg                  the images (``images/…`` also accepted)

Images listed but not present (many Flickr originals are gone) are dropped and counted.

Labels: ``labels="81"`` (default; Table 1 says 81) or ``labels="21"`` — the 21 most frequent
concepts over all images (ties broken by Concepts81 order), which Section 4 says the paper used
"during training". Images with no positive label in the chosen set are dropped.

Split: the paper's 150,000/59,347 is not the official 161,789/107,859. 150,000 + 59,347 = 209,347,
which (as far as we can tell from the literature) is the number of NUS-WIDE images carrying at
least one of the 81 labels, so the paper seems to have split the labelled images at random.
``split="paper"`` (default): seeded random split of the labelled images found, with
``n_train = round(n · 150000 / 209347)`` (exactly 150,000 when all 209,347 are present).
``split="official"``: the official Train/Test image lists, restricted to labelled images found.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from .image_store import Source
from .reader_types import Collected, SplitItems

N_IMAGES = 269648
EXPECTED = {"train": 150000, "test": 59347, "labelled": 209347,
            "official_train": 161789, "official_test": 107859, "images": N_IMAGES}
PAPER_TRAIN_FRACTION = 150000 / 209347
LABEL_OPTIONS = ("81", "21")
SPLIT_OPTIONS = ("paper", "official")
ZIPS = ("Groundtruth.zip", "ImageList.zip", "ConceptsList.zip")
IMAGE_ROOTS = ("Flickr", "images", "Images", "image", ".")
TOP_K = 21  # labels="21": the TOP_K most frequent concepts

INSTRUCTIONS = (
    "NUS-WIDE must be downloaded by hand: get Groundtruth.zip, ImageList.zip and ConceptsList.zip from "
    "https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html and the images "
    "(on request from the authors, or a copy you are licensed to use), then put them in {folder} as "
    "Groundtruth/AllLabels/Labels_<concept>.txt, ConceptsList/Concepts81.txt, ImageList/Imagelist.txt, "
    "ImageList/TrainImagelist.txt, ImageList/TestImagelist.txt (the three zips may stay zipped) and "
    "Flickr/<folder>/<file>.jpg; then run `mulsupcon-ld prepare nuswide` (see docs/images.md)"
)


class _Finder:
    """Finds metadata files in the raw folder or in the official zips inside it."""

    def __init__(self, raw_folder: Path):
        self.root = raw_folder
        self.zips = [Source("zip", raw_folder / z) for z in ZIPS
                     if (raw_folder / z).is_file() and zipfile.is_zipfile(raw_folder / z)]
        self._zip_names = {id(z): z.names() for z in self.zips}

    def find(self, tail: str) -> tuple[Source, str] | None:
        for pattern in (tail, f"*/{tail}", f"*/*/{tail}"):
            hits = sorted(self.root.glob(pattern))
            if hits:
                return Source("dir", self.root), hits[0].relative_to(self.root).as_posix()
        base = tail.rsplit("/", 1)[-1]
        for match in (lambda n: n == tail or n.endswith("/" + tail),
                      lambda n: n.rsplit("/", 1)[-1] == base):
            for z in self.zips:
                for n in self._zip_names[id(z)]:
                    if match(n):
                        return z, n
        return None

    def read_text(self, tail: str, what: str) -> tuple[str, str]:
        hit = self.find(tail)
        if hit is None:
            raise UserError(f"NUS-WIDE {what} ({tail}) not found. " + INSTRUCTIONS.format(folder=self.root))
        src, member = hit
        where = f"{src.path.name}:{member}" if src.kind == "zip" else member
        return src.read(member).decode("utf-8", errors="replace"), where


def _rel(path_line: str) -> str:
    """``C:\\ImageData\\Flickr\\actor\\0001_1.jpg`` or ``actor\\0001_1.jpg`` → ``actor/0001_1.jpg``."""
    parts = [p for p in path_line.strip().replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:])


def _binary_column(text: str, n: int, name: str) -> np.ndarray:
    digits = np.frombuffer(text.encode(), dtype=np.uint8)
    digits = digits[(digits == 48) | (digits == 49)] - 48
    if len(digits) != n:
        raise UserError(f"{name} has {len(digits)} 0/1 values, Imagelist.txt has {n} images; the files "
                        "do not belong together")
    return digits.astype(np.uint8)


def _locate_images(root: Path, rels: list[str]) -> tuple[str | None, list[bool]]:
    """Pick the image root (Flickr/, images/, …) holding the most of the first entries, then check all."""
    probe = rels[: min(len(rels), 200)]
    best, best_hits = None, -1
    for cand in IMAGE_ROOTS:
        d = root / cand
        if not d.is_dir():
            continue
        hits = sum((d / r).is_file() for r in probe)
        if hits > best_hits:
            best, best_hits = cand, hits
    if best is None:
        return None, [False] * len(rels)
    d = root / best
    return best, [(d / r).is_file() for r in rels]


def collect(raw_folder: Path, *, seed: int = 0, labels: str = "81", split: str = "paper", **_: object):
    labels, split = str(labels), str(split)
    if labels not in LABEL_OPTIONS:
        raise UserError(f"nuswide option labels must be one of {LABEL_OPTIONS}, not {labels!r}")
    if split not in SPLIT_OPTIONS:
        raise UserError(f"nuswide option split must be one of {SPLIT_OPTIONS}, not {split!r}")
    if not raw_folder.is_dir():
        raise UserError(INSTRUCTIONS.format(folder=raw_folder))
    finder = _Finder(raw_folder)
    concepts_text, concepts_from = finder.read_text("Concepts81.txt", "concept list")
    concepts = [c.strip() for c in concepts_text.splitlines() if c.strip()]
    list_text, list_from = finder.read_text("ImageList/Imagelist.txt", "image list")
    rels = [_rel(ln) for ln in list_text.splitlines() if ln.strip()]
    n = len(rels)
    y_all = np.zeros((n, len(concepts)), dtype=np.uint8)
    for j, c in enumerate(concepts):
        text, _where = finder.read_text(f"AllLabels/Labels_{c}.txt", f"labels of {c!r}")
        y_all[:, j] = _binary_column(text, n, f"Labels_{c}.txt")
    freq = y_all.sum(axis=0)
    if labels == "21":
        order = sorted(range(len(concepts)), key=lambda j: (-int(freq[j]), j))[:TOP_K]
        cols = sorted(order)                         # keep Concepts81 order among the chosen 21
    else:
        cols = list(range(len(concepts)))
    y = y_all[:, cols]
    names = [concepts[j] for j in cols]
    labelled = y.any(axis=1)
    image_root, present = _locate_images(raw_folder, rels)
    present_arr = np.asarray(present, dtype=bool)
    keep = labelled & present_arr
    counts: dict = {
        "images": {"expected": EXPECTED["images"], "listed": n, "found": int(present_arr.sum())},
        "labelled": {"expected_81": EXPECTED["labelled"], "found": int(labelled.sum()),
                     "labelled_and_present": int(keep.sum())},
        "concepts": concepts_from, "image_list": list_from, "image_root": image_root,
    }
    if not keep.any():
        raise UserError(f"no labelled NUS-WIDE image found under {raw_folder} (looked in "
                        f"{', '.join(IMAGE_ROOTS)}). " + INSTRUCTIONS.format(folder=raw_folder))
    if split == "official":
        tr_text, _ = finder.read_text("ImageList/TrainImagelist.txt", "official train list")
        te_text, _ = finder.read_text("ImageList/TestImagelist.txt", "official test list")
        train_set = {_rel(ln) for ln in tr_text.splitlines() if ln.strip()}
        test_set = {_rel(ln) for ln in te_text.splitlines() if ln.strip()}
        idx = {"train": np.array([i for i in np.flatnonzero(keep) if rels[i] in train_set], dtype=np.int64),
               "test": np.array([i for i in np.flatnonzero(keep) if rels[i] in test_set], dtype=np.int64)}
        counts["train"] = {"expected_official": EXPECTED["official_train"], "listed": len(train_set)}
        counts["test"] = {"expected_official": EXPECTED["official_test"], "listed": len(test_set)}
        test_split = {"method": "official", "source": "ImageList/TrainImagelist.txt, TestImagelist.txt",
                      "restricted_to": "labelled images found on disk"}
    else:
        kept = np.flatnonzero(keep)
        rng = np.random.default_rng([int(seed), 7002])
        perm = rng.permutation(len(kept))
        n_train = int(round(len(kept) * PAPER_TRAIN_FRACTION))
        idx = {"train": np.sort(kept[perm[:n_train]]), "test": np.sort(kept[perm[n_train:]])}
        counts["train"] = {"expected": EXPECTED["train"]}
        counts["test"] = {"expected": EXPECTED["test"]}
        test_split = {"method": "seeded random", "seed": int(seed), "seed_stream": [int(seed), 7002],
                      "train_fraction": PAPER_TRAIN_FRACTION, "n_train": n_train,
                      "n_test": int(len(kept) - n_train),
                      "of": "labelled images found on disk",
                      "rule": "numpy default_rng([seed, 7002]).permutation(n); first "
                              "round(n*150000/209347) → train"}
    src = Source("dir", raw_folder / (image_root or "."))
    splits = {s: SplitItems([(0, rels[i]) for i in ix], y[ix], [rels[i] for i in ix]) for s, ix in idx.items()}
    notes = [
        f"labels: {len(names)} ({'all 81 concepts' if labels == '81' else 'the 21 most frequent concepts'}; "
        "option labels='81'|'21'); images without any chosen label are dropped",
        "split: " + ("official Train/Test lists" if split == "official" else
                     "seeded random split of the labelled images in Table 1's 150,000:59,347 ratio "
                     "(not the official 161,789/107,859 split; option split='paper'|'official')"),
        f"{int((labelled & ~present_arr).sum())} labelled images listed in Imagelist.txt were not found on disk",
    ]
    return Collected(
        label_names=names, splits=splits, sources=[src], counts=counts, notes=notes,
        options={"labels": labels, "split": split}, test_split=test_split,
        label_order="Concepts81.txt order",
        extra={"nuswide_concept_frequency": {concepts[j]: int(freq[j]) for j in range(len(concepts))}},
    )
