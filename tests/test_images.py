"""Image datasets: official-format fixtures → download → prepare → batches.

Every fixture is written by the tests in the real layout (VOC tars with XML annotations, COCO
zips with instances JSON, MIRFLICKR zips with concept lists, the NUS-WIDE manual folder) and
served by a local HTTP server; label matrices are checked against values computed by hand.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from mulsupcon_ld import registry
from mulsupcon_ld.data import image_prepare as IP
from mulsupcon_ld.data import images as I
from mulsupcon_ld.data import readers as R
from mulsupcon_ld.data import nuswide as NUS
from mulsupcon_ld.data.coco import labels_from_instances
from mulsupcon_ld.data.image_store import ImageStore, Source, resize_jpeg
from mulsupcon_ld.data.voc import VOC_CLASSES, parse_annotation
from mulsupcon_ld.errors import UserError
from mulsupcon_ld.run_settings import resolve_settings


# --------------------------------------------------------------------------------- helpers
def jpeg(seed: int, w: int = 48, h: int = 36) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="JPEG", quality=85)
    return out.getvalue()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def add_tar(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def by_id(meta_dir: Path, splits=("train", "val")) -> dict[str, np.ndarray]:
    out = {}
    for s in splits:
        with np.load(meta_dir / f"{s}.npz") as z:
            for i, y in zip(z["ids"], z["y"]):
                out[str(i)] = y
    return out


def vec(names: list[str], on: list[str]) -> np.ndarray:
    return np.array([int(n in on) for n in names], dtype=np.uint8)


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    """A local HTTP server serving a folder; yields ``(folder, base_url)``."""
    root = tmp_path_factory.mktemp("served")
    handler = partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def fixture_spec(name: str, raw_format: str, files: list[tuple[Path, str]], base: str, n_labels: int,
                 manual: bool = False) -> registry.DatasetSpec:
    """A registry entry whose files (name, role) are served by the test server, checked by md5."""
    real = registry.get_dataset(name)
    raw = tuple(registry.RawFile(p.name, (f"{base}/{p.name}",), md5=md5(p), role=role) for p, role in files)
    src = replace(real.primary, raw_format=raw_format, files=raw, manual_download=manual)
    return replace(real, sources=(src,), n_labels=n_labels, label_names=None)


# --------------------------------------------------------------------------------- VOC fixture
VOC_TRAINVAL = {  # id -> [(class, difficult)]
    "000005": [("chair", 0), ("chair", 1), ("diningtable", 0)],
    "000007": [("car", 0)],
    "000009": [("horse", 0), ("person", 1)],           # person difficult-only
    "000012": [("dog", 1), ("dog", 0)],
}
VOC_TEST = {
    "000001": [("dog", 0), ("person", 0)],
    "000002": [("train", 1)],                           # only a difficult object
    "000004": [("bird", 0), ("bird", 1), ("sofa", 1)],
}


def voc_xml(img_id: str, objects) -> bytes:
    objs = "".join(f"<object><name>{c}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>"
                   "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
                   for c, d in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{img_id}.jpg</filename>"
            f"<size><width>48</width><height>36</height><depth>3</depth></size>{objs}</annotation>").encode()


def voc_expected(split: dict, difficult: str) -> dict[str, np.ndarray]:
    out = {}
    for i, objs in split.items():
        on = [c for c, d in objs if d == 0 or difficult == "positive"]
        out[i] = vec(list(VOC_CLASSES), on)
    return out


def write_voc(folder: Path) -> tuple[Path, Path]:
    paths = []
    for split, data, fname in (("trainval", VOC_TRAINVAL, "VOCtrainval_06-Nov-2007.tar"),
                               ("test", VOC_TEST, "VOCtest_06-Nov-2007.tar")):
        p = folder / fname
        with tarfile.open(p, "w") as tf:
            pre = "VOCdevkit/VOC2007/"
            add_tar(tf, pre + f"ImageSets/Main/{split}.txt", "".join(f"{i}\n" for i in data).encode())
            # a per-class list, as in the real tars (not used for labels)
            add_tar(tf, pre + f"ImageSets/Main/dog_{split}.txt", b"000001  1\n")
            for k, (i, objs) in enumerate(data.items()):
                add_tar(tf, pre + f"Annotations/{i}.xml", voc_xml(i, objs))
                add_tar(tf, pre + f"JPEGImages/{i}.jpg", jpeg(k + (0 if split == "test" else 100), 48 + k, 36))
        paths.append(p)
    return paths[0], paths[1]


# --------------------------------------------------------------------------------- COCO fixture
COCO_CATS = [{"id": 18, "name": "dog", "supercategory": "animal"},
             {"id": 1, "name": "person", "supercategory": "person"},
             {"id": 3, "name": "car", "supercategory": "vehicle"}]   # JSON order, not id order


def coco_json(split: str) -> dict:
    if split == "train":
        imgs = [11, 12, 13, 14]
        anns = [(11, 1, 0), (11, 18, 0), (12, 3, 1), (14, 1, 0), (14, 1, 0)]   # 13: no annotation
    else:
        imgs = [21, 22, 23]
        anns = [(21, 3, 0), (23, 18, 0)]                                      # 22: no annotation
    return {
        "info": {"year": 2014}, "licenses": [],
        "images": [{"id": i, "file_name": f"COCO_{split}2014_{i:012d}.jpg", "width": 40, "height": 30}
                   for i in imgs],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "iscrowd": cr, "area": 10.0,
                         "bbox": [0, 0, 3, 3], "segmentation": []} for k, (i, c, cr) in enumerate(anns)],
        "categories": COCO_CATS,
    }


def write_coco(folder: Path) -> list[Path]:
    out = []
    for split in ("train", "val"):
        p = folder / f"{split}2014.zip"
        with zipfile.ZipFile(p, "w") as zf:
            for im in coco_json(split)["images"]:
                zf.writestr(f"{split}2014/{im['file_name']}", jpeg(im["id"], 40, 30))
        out.append(p)
    p = folder / "annotations_trainval2014.zip"
    with zipfile.ZipFile(p, "w") as zf:
        for split in ("train", "val"):
            zf.writestr(f"annotations/instances_{split}2014.json", json.dumps(coco_json(split)))
            zf.writestr(f"annotations/captions_{split}2014.json", "{}")
    out.append(p)
    return out


# --------------------------------------------------------------------------------- MIRFLICKR fixture
MIR_CONCEPTS = {"animals": [1, 3], "sky": [2, 3, 5], "people": [5, 8, 11], "dog": [3]}
MIR_R1 = {"sky_r1": [3, 7], "dog_r1": [12]}            # must be ignored: 7 and 12 stay unlabelled
MIR_N = 12


def write_mirflickr(folder: Path) -> list[Path]:
    p_img = folder / "mirflickr25k.zip"
    with zipfile.ZipFile(p_img, "w") as zf:
        for k in range(1, MIR_N + 1):
            zf.writestr(f"mirflickr/im{k}.jpg", jpeg(300 + k, 50, 40))
        zf.writestr("mirflickr/doc/common_tags.txt", "sky 3\n")
        zf.writestr("mirflickr/meta/tags/tags1.txt", "sky\n")
        zf.writestr("mirflickr/meta/exif/im1.jpg", b"not an image")  # not an image of the set
    p_ann = folder / "mirflickr25k_annotations_v080.zip"
    with zipfile.ZipFile(p_ann, "w") as zf:
        for c, ids in {**MIR_CONCEPTS, **MIR_R1}.items():
            zf.writestr(f"{c}.txt", "".join(f"{i}\n" for i in ids))
        zf.writestr("README.txt", "MIRFLICKR annotations\n")
    return [p_img, p_ann]


# --------------------------------------------------------------------------------- NUS-WIDE fixture
NUS_CONCEPTS = ["animal", "sky", "water", "zebra"]
NUS_IMAGES = ["actor\\0001_1001.jpg", "actor\\0002_1002.jpg", "beach\\0003_1003.jpg", "beach\\0004_1004.jpg",
              "cat\\0005_1005.jpg", "cat\\0006_1006.jpg", "dog\\0007_1007.jpg", "dog\\0008_1008.jpg"]
NUS_LABELS = {  # concept -> 0/1 per image (Imagelist order)
    "animal": [1, 0, 0, 1, 1, 1, 1, 0],
    "sky":    [1, 1, 0, 0, 0, 1, 0, 0],
    "water":  [0, 0, 0, 1, 0, 0, 0, 1],
    "zebra":  [0, 0, 0, 0, 0, 1, 0, 0],
}                                   # image 3 (beach/0003) has no label
NUS_TRAIN = [0, 1, 2, 4, 6]         # official train list (indices)
NUS_MISSING = 7                     # listed, labelled, but not on disk


def write_nuswide(folder: Path) -> Path:
    (folder / "ConceptsList").mkdir(parents=True)
    (folder / "ConceptsList" / "Concepts81.txt").write_text("\n".join(NUS_CONCEPTS) + "\n")
    (folder / "Groundtruth" / "AllLabels").mkdir(parents=True)
    for c, col in NUS_LABELS.items():
        (folder / "Groundtruth" / "AllLabels" / f"Labels_{c}.txt").write_text("".join(f"{v}\n" for v in col))
    (folder / "ImageList").mkdir()
    (folder / "ImageList" / "Imagelist.txt").write_text(
        "".join(f"C:\\ImageData\\Flickr\\{p}\n" for p in NUS_IMAGES))
    (folder / "ImageList" / "TrainImagelist.txt").write_text("".join(f"{NUS_IMAGES[i]}\n" for i in NUS_TRAIN))
    (folder / "ImageList" / "TestImagelist.txt").write_text(
        "".join(f"{p}\n" for i, p in enumerate(NUS_IMAGES) if i not in NUS_TRAIN))
    for k, p in enumerate(NUS_IMAGES):
        if k == NUS_MISSING:
            continue
        f = folder / "Flickr" / p.replace("\\", "/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(jpeg(500 + k, 44, 60))
    return folder


def nus_y(i: int, concepts=NUS_CONCEPTS) -> np.ndarray:
    return np.array([NUS_LABELS[c][i] for c in concepts], dtype=np.uint8)


# --------------------------------------------------------------------------------- served fixtures
@pytest.fixture(scope="module")
def served(http_root):
    root, base = http_root
    voc = write_voc(root)
    coco = write_coco(root)
    mir = write_mirflickr(root)
    specs = {
        "pascal": fixture_spec("pascal", "voc2007-tar", [(voc[0], "trainval"), (voc[1], "test")], base, 20),
        "coco": fixture_spec("coco", "coco2014-zip", [(coco[0], "train"), (coco[1], "test"),
                                                      (coco[2], "annotations")], base, 3),
        "mirflickr": fixture_spec("mirflickr", "mirflickr25k-zip", [(mir[0], "images"), (mir[1], "annotations")],
                                  base, len(MIR_CONCEPTS)),
    }
    return root, base, specs


def download_and_prepare(spec, tmp: Path, **options):
    from mulsupcon_ld.download import download_spec

    resolved = download_spec(spec, None, cache_dir=tmp / "cache", quiet=True)
    folder = {p.path.parent for p in resolved.files.values()}
    assert len(folder) == 1 and all(f.verified for f in resolved.files.values())
    out = tmp / "prepared" / spec.name
    meta = IP.prepare_image_dataset(spec, folder.pop(), out, source_files=resolved.source_files(), **options)
    (out / "meta.json").write_text(json.dumps(meta))
    return out, meta


# ================================================================================= tests: parsing
def test_voc_annotation_difficult_option():
    xml = voc_xml("x", [("person", 1), ("dog", 0), ("dog", 1)])
    neg, pos = parse_annotation(xml, "negative"), parse_annotation(xml, "positive")
    assert np.array_equal(neg, vec(list(VOC_CLASSES), ["dog"]))
    assert np.array_equal(pos, vec(list(VOC_CLASSES), ["dog", "person"]))
    with pytest.raises(UserError):
        parse_annotation(xml, "ignore")


def test_coco_count_logic_on_annotation_json():
    names, ids, kept, y, n_total = labels_from_instances(coco_json("train"))
    assert names == ["dog", "person", "car"] and ids == [18, 1, 3] and n_total == 4
    assert [im["id"] for im in kept] == [11, 12, 14]                 # 13 has no annotation
    assert y.tolist() == [[1, 1, 0], [0, 0, 1], [0, 1, 0]]
    names, ids, kept, y, _ = labels_from_instances(coco_json("train"), include_crowd=False)
    assert [im["id"] for im in kept] == [11, 14]                     # 12 only had a crowd annotation


def test_resize_keeps_shorter_side_and_never_upscales():
    from PIL import Image

    big = resize_jpeg(jpeg(1, 600, 400), short_side=256)
    assert Image.open(io.BytesIO(big)).size == (384, 256)
    small = resize_jpeg(jpeg(2, 60, 40), short_side=256)
    assert Image.open(io.BytesIO(small)).size == (60, 40)


# ================================================================================= tests: end to end
@pytest.mark.parametrize("difficult", ["negative", "positive"])
def test_pascal_download_prepare(served, tmp_path, difficult):
    _, _, specs = served
    out, meta = download_and_prepare(specs["pascal"], tmp_path, difficult=difficult)
    assert meta["label_names"] == list(VOC_CLASSES) and meta["n_labels"] == 20
    assert meta["splits"]["train"] + meta["splits"]["val"] == 4 and meta["splits"]["test"] == 3
    got = by_id(out)
    want = voc_expected(VOC_TRAINVAL, difficult)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    got_te, want_te = by_id(out, ("test",)), voc_expected(VOC_TEST, difficult)
    assert all(np.array_equal(got_te[k], want_te[k]) for k in want_te)
    # hand-computed label means: negative 5/4 and 3/3, positive 6/4 and 5/3
    mean_tr = {"negative": 5 / 4, "positive": 6 / 4}[difficult]
    mean_te = {"negative": 3 / 3, "positive": 5 / 3}[difficult]
    assert meta["stats"]["mean_labels_train"] == pytest.approx(mean_tr)
    assert meta["stats"]["mean_labels_test"] == pytest.approx(mean_te)
    assert meta["options"]["difficult"] == difficult
    assert set(meta["source_files"]) == {"VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar"}
    assert meta["counts"]["train"]["expected"] == 5011 and meta["counts"]["train"]["found"] == 4
    # the store: every split row decodes, shorter side kept (fixture images are < 256)
    store = ImageStore(out)
    assert len(store) == 7 and meta["image"]["n_images"] == 7
    with np.load(out / "test.npz") as z:
        assert store.image(int(z["index"][0])).size[1] == 36


def test_coco_download_prepare(served, tmp_path):
    _, _, specs = served
    out, meta = download_and_prepare(specs["coco"], tmp_path)
    assert meta["label_names"] == ["dog", "person", "car"]
    assert meta["coco_category_ids"] == [18, 1, 3]
    got, got_te = by_id(out), by_id(out, ("test",))
    assert set(got) == {"11", "12", "14"} and set(got_te) == {"21", "23"}
    assert got["11"].tolist() == [1, 1, 0] and got["12"].tolist() == [0, 0, 1] and got["14"].tolist() == [0, 1, 0]
    assert got_te["21"].tolist() == [0, 0, 1] and got_te["23"].tolist() == [1, 0, 0]
    assert meta["counts"]["train"]["images_in_json"] == 4 and meta["counts"]["train"]["with_annotations"] == 3
    assert meta["counts"]["test"]["expected"] == 40137


def test_mirflickr_download_prepare_ignores_r1(served, tmp_path):
    _, _, specs = served
    out, meta = download_and_prepare(specs["mirflickr"], tmp_path, seed=0)
    names = sorted(MIR_CONCEPTS)
    assert meta["label_names"] == names                     # no sky_r1 / dog_r1, no README
    got = {**by_id(out), **by_id(out, ("test",))}
    labelled = sorted({i for ids in MIR_CONCEPTS.values() for i in ids})
    assert sorted(got, key=lambda s: int(s[2:])) == [f"im{k}" for k in labelled]   # 7 and 12 excluded
    for k in labelled:
        assert np.array_equal(got[f"im{k}"], vec(names, [c for c, ids in MIR_CONCEPTS.items() if k in ids]))
    n = len(labelled)
    assert meta["splits"]["test"] == n - int(0.8 * n)
    assert meta["test_split"]["method"] == "seeded random" and meta["test_split"]["seed"] == 0
    # seeded: the same seed gives the same split, another seed (usually) another one
    out2, meta2 = download_and_prepare(specs["mirflickr"], tmp_path / "again", seed=0)
    assert by_id(out2, ("test",)).keys() == by_id(out, ("test",)).keys()


def test_extracted_layouts(served, tmp_path):
    root, _, specs = served
    # VOC: both tars extracted into one VOCdevkit
    voc_dir = tmp_path / "raw" / "pascal"
    voc_dir.mkdir(parents=True)
    for name in ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar"):
        with tarfile.open(root / name) as tf:
            tf.extractall(voc_dir, filter="data")
    assert R.has_image_layout(specs["pascal"], voc_dir)
    meta = IP.prepare_image_dataset(specs["pascal"], voc_dir, tmp_path / "p", source_files={})
    got = by_id(tmp_path / "p")
    want = voc_expected(VOC_TRAINVAL, "negative")
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert meta["counts"]["train"]["source"].startswith("extracted folder")
    # COCO: train2014/, val2014/, annotations/ with one image file missing → reported, not fatal
    coco_dir = tmp_path / "raw" / "coco"
    for z in ("train2014.zip", "val2014.zip", "annotations_trainval2014.zip"):
        with zipfile.ZipFile(root / z) as zf:
            zf.extractall(coco_dir)
    (coco_dir / "train2014" / "COCO_train2014_000000000014.jpg").unlink()
    assert R.has_image_layout(specs["coco"], coco_dir)
    meta = IP.prepare_image_dataset(specs["coco"], coco_dir, tmp_path / "c", source_files={})
    assert meta["counts"]["train"]["missing_image_files"] == 1
    assert set(by_id(tmp_path / "c")) == {"11", "12"}
    # the hook for the download step finds the extracted folder in a pre-staged raw dir
    resolved = IP.extracted_source(specs["coco"], tmp_path / "raw", cache_dir=tmp_path / "nocache")
    assert resolved is not None and resolved.extracted_folder == coco_dir


def test_nuswide_manual_layout(tmp_path, monkeypatch):
    folder = write_nuswide(tmp_path / "nuswide")
    spec = registry.get_dataset("nuswide")
    out, meta = tmp_path / "official", None
    meta = IP.prepare_image_dataset(spec, folder, out, split="official", source_files={})
    assert meta["label_names"] == NUS_CONCEPTS
    keep = [i for i in range(8) if nus_y(i).any() and i != NUS_MISSING]        # drops 2 (no label), 7 (missing)
    got_tr, got_te = by_id(out), by_id(out, ("test",))
    rel = [p.replace("\\", "/") for p in NUS_IMAGES]
    assert set(got_tr) == {rel[i] for i in keep if i in NUS_TRAIN}
    assert set(got_te) == {rel[i] for i in keep if i not in NUS_TRAIN}
    for i in keep:
        assert np.array_equal({**got_tr, **got_te}[rel[i]], nus_y(i))
    assert meta["counts"]["images"]["found"] == 7 and meta["counts"]["labelled"]["found"] == 7
    # the paper-style split: seeded, all labelled images present
    meta = IP.prepare_image_dataset(spec, folder, tmp_path / "paper", source_files={})
    assert meta["splits"]["train"] + meta["splits"]["val"] == round(len(keep) * 150000 / 209347)
    assert meta["test_split"]["method"] == "seeded random"
    # the "21 most frequent" variant (top-2 here): animal (5) and sky (3)
    monkeypatch.setattr(NUS, "TOP_K", 2)
    meta = IP.prepare_image_dataset(spec, folder, tmp_path / "top", labels="21", split="official",
                                   source_files={})
    assert meta["label_names"] == ["animal", "sky"]
    got = {**by_id(tmp_path / "top"), **by_id(tmp_path / "top", ("test",))}
    assert rel[3] in got and np.array_equal(got[rel[3]], [1, 0])
    # the metadata may stay in the official zips (Groundtruth.zip, ImageList.zip, ConceptsList.zip)
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    for part in ("Groundtruth", "ImageList", "ConceptsList"):
        with zipfile.ZipFile(zipped / f"{part}.zip", "w") as zf:
            for f in sorted((folder / part).rglob("*.txt")):
                zf.write(f, f.relative_to(folder if part != "ImageList" else folder / part).as_posix())
    (zipped / "Flickr").symlink_to(folder / "Flickr")
    assert R.has_image_layout(spec, zipped)
    IP.prepare_image_dataset(spec, zipped, tmp_path / "z", split="official", source_files={})
    assert {k: v.tolist() for k, v in by_id(tmp_path / "z").items()} == {k: v.tolist() for k, v in got_tr.items()}
    # missing layout: a UserError that says where to put the files
    with pytest.raises(UserError, match="manual|by hand"):
        IP.prepare_image_dataset(spec, tmp_path / "empty", tmp_path / "x")


def test_unknown_option_is_an_error(served, tmp_path):
    _, _, specs = served
    with pytest.raises(UserError, match="unknown option"):
        IP.prepare_image_dataset(specs["pascal"], tmp_path, tmp_path / "o", difficulty="positive")


def test_cli_download_prepare_info(served, tmp_path, monkeypatch, capsys):
    """The full CLI path, data.preparers.PREPARERS dispatching image formats to image_prepare."""
    from mulsupcon_ld import cli
    from mulsupcon_ld.data import preparers as P

    _, _, specs = served
    spec = replace(specs["pascal"], n_labels=20)
    monkeypatch.setitem(registry.DATASETS, "pascal", spec)
    monkeypatch.setenv("MULSUPCON_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    assert cli.main(["download", "pascal"]) == 0
    assert cli.main(["prepare", "pascal", "--data-dir", str(data)]) == 0
    assert P.PREPARERS.get("voc2007-tar") is not None
    capsys.readouterr()
    assert cli.main(["info", "pascal", "--data-dir", str(data), "--json"]) == 0
    info = capsys.readouterr().out
    assert "pascal" in info
    got = by_id(data / "pascal")
    want = voc_expected(VOC_TRAINVAL, "negative")
    assert all(np.array_equal(got[k], want[k]) for k in want)


# ================================================================================= tests: batches
@pytest.fixture(scope="module")
def prepared_voc(served, tmp_path_factory):
    _, _, specs = served
    tmp = tmp_path_factory.mktemp("voc-prepared")
    out, _ = download_and_prepare(specs["pascal"], tmp)
    return out


def small_settings(*overrides: str, **data):
    """PASCAL's smoke settings with batches of 2, 32-pixel crops, no workers; ``data``: more data.* values."""
    data = {"image_size": 32, "num_workers": 0, "prefetch_factor": None, **data}
    return resolve_settings("pascal", "smoke", overrides=[
        "pretrain.batch_size=2", "finetune.batch_size=2", "finetune.eval_batch_size=2",
        *(f"data.{k}={json.dumps(v)}" for k, v in data.items()), *overrides])


def test_make_batches_shapes(prepared_voc):
    s = small_settings()
    pre = I.image_epoch(prepared_voc, "train", s, "pretrain", seed=0, device="cpu")
    batches = list(pre)
    n_train = len(np.load(prepared_voc / "train.npz")["y"])
    assert len(pre) == len(batches) == n_train // 2                     # drop_last
    v1, v2, y = batches[0]
    assert v1.shape == v2.shape == (2, 3, 32, 32) and v1.dtype == torch.float32
    assert y.shape == (2, 20) and y.dtype == torch.float32
    assert not torch.equal(v1, v2)                                         # two different views
    ev = list(I.image_epoch(prepared_voc, "test", s, "eval", seed=0, device="cpu"))
    assert [x.shape[0] for x, _ in ev] == [2, 1]                           # all 3 test images, in order
    assert ev[0][0].shape == (2, 3, 32, 32)
    with np.load(prepared_voc / "test.npz") as z:
        assert torch.equal(torch.cat([y for _, y in ev]), torch.as_tensor(z["y"]).float())
    ft = list(I.image_epoch(prepared_voc, "train", s, "finetune", seed=0, device="cpu"))
    assert len(ft[0]) == 2 and ft[0][0].shape == (2, 3, 32, 32)
    # a default-sized (224) eval view of the real store
    s224 = small_settings(image_size=None)
    x, _ = next(iter(I.image_epoch(prepared_voc, "test", s224, "eval", 0, "cpu")))
    assert x.shape == (2, 3, 224, 224)


def test_make_batches_reproducible_across_workers(prepared_voc):
    s0 = small_settings(num_workers=0)
    s1 = small_settings(num_workers=1)
    a = list(I.image_epoch(prepared_voc, "train", s0, "pretrain", 123, "cpu"))
    b = list(I.image_epoch(prepared_voc, "train", s1, "pretrain", 123, "cpu"))
    c = list(I.image_epoch(prepared_voc, "train", s0, "pretrain", 124, "cpu"))
    assert all(torch.equal(x, z) for ba, bb in zip(a, b) for x, z in zip(ba, bb))
    assert not all(torch.equal(ba[0], bc[0]) for ba, bc in zip(a, c))
    # the global RNG of the training process is left alone (dropout etc. stay reproducible)
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    list(I.image_epoch(prepared_voc, "train", s0, "pretrain", 7, "cpu"))
    assert torch.equal(torch.rand(3), want)
    I.clear_loader_cache()


def test_make_batches_on_synthetic_stand_in(tmp_path):
    from mulsupcon_ld.data.prepare import prepare_synthetic

    prepared = prepare_synthetic("pascal", tmp_path)
    s = small_settings("pretrain.batch_size=16", image_size=None)
    v1, v2, y = next(iter(I.image_epoch(prepared, "train", s, "pretrain", 0, "cpu")))
    assert v1.shape == (16, 3, 32, 32) and y.shape == (16, 20)             # synthetic size, not 224
    x, y = next(iter(I.image_epoch(prepared, "val", s, "eval", 0, "cpu")))
    assert x.shape[1:] == (3, 32, 32)


def test_write_image_dataset_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (24, 30, 3), dtype=np.uint8) for _ in range(6)]
    y = rng.integers(0, 2, (6, 3)).astype(np.uint8)
    meta = IP.write_image_dataset(tmp_path, "toy", ["a", "b", "c"],
                                 {"train": (imgs[:3], y[:3]), "val": (imgs[3:4], y[3:4]), "test": (imgs[4:], y[4:])})
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert meta["splits"] == {"train": 3, "val": 1, "test": 2}
    store = ImageStore(tmp_path)
    assert store.image(5).size == (30, 24)
    x, yy = next(iter(I.image_epoch(tmp_path, "test", small_settings(), "eval", 0, "cpu")))
    assert x.shape == (2, 3, 32, 32) and torch.equal(yy, torch.as_tensor(y[4:]).float())


def test_source_reads_tar_members_by_offset(served):
    root, _, _ = served
    src = Source.open(root / "VOCtest_06-Nov-2007.tar")
    assert src.kind == "tar"
    data = src.read("VOCdevkit/VOC2007/ImageSets/Main/test.txt")
    assert data.decode().split() == list(VOC_TEST)


def test_store_parallel_equals_serial(tmp_path):
    from mulsupcon_ld.data.image_store import STORE_BLOB, write_store

    tar = tmp_path / "many.tar"
    with tarfile.open(tar, "w") as tf:
        for k in range(70):
            add_tar(tf, f"imgs/{k}.jpg", jpeg(k, 30 + k % 5, 24))
        add_tar(tf, "imgs/bad.jpg", b"not a jpeg")
    src = Source.open(tar)
    src.read("imgs/0.jpg")                     # an open handle in the parent must not leak into workers
    items = [(0, f"imgs/{k}.jpg") for k in range(35)] + [(0, "imgs/bad.jpg")] + \
            [(0, f"imgs/{k}.jpg") for k in range(35, 70)]
    blobs = {}
    for w in (1, 2):
        out = tmp_path / f"w{w}"
        res = write_store(out, [src], items, workers=w)
        assert res.n_images == 70 and not res.ok[35] and res.failures[0][0] == "imgs/bad.jpg"
        blobs[w] = (out / STORE_BLOB).read_bytes()
    assert blobs[1] == blobs[2]
    src.close()


# ================================================================================= tests: CLI wiring
def extract_voc(tars_folder: Path, dest: Path) -> Path:
    """``dest/VOCdevkit/VOC2007/…``: both fixture tars extracted, as a user would pre-stage them."""
    tv, te = write_voc(tars_folder)
    dest.mkdir(parents=True)
    for tar in (tv, te):
        with tarfile.open(tar) as tf:
            tf.extractall(dest, filter="data")
    return dest


def test_cli_prepare_from_extracted_pascal_layout(tmp_path, monkeypatch, capsys):
    """`download`/`prepare pascal --raw-dir DIR` with DIR/pascal/VOCdevkit/VOC2007/… and no tar:
    the real registry entry (its difficult="negative" default), no network, counts recorded."""
    from mulsupcon_ld import cli
    from mulsupcon_ld.download import is_downloaded

    monkeypatch.setenv("MULSUPCON_PREPARE_WORKERS", "1")
    (tmp_path / "tars").mkdir()
    raw, data = tmp_path / "raw", tmp_path / "data"
    folder = extract_voc(tmp_path / "tars", raw / "pascal")
    assert (folder / "VOCdevkit" / "VOC2007" / "Annotations" / "000005.xml").is_file()
    assert is_downloaded("pascal", raw)
    assert not is_downloaded("pascal", tmp_path / "elsewhere")

    assert cli.main(["download", "pascal", "--raw-dir", str(raw)]) == 0
    out = capsys.readouterr().out
    assert "extracted" in out and str(folder) in out and "pre-staged" in out
    assert cli.main(["prepare", "pascal", "--raw-dir", str(raw), "--data-dir", str(data)]) == 0
    assert "prepared pascal" in capsys.readouterr().out

    meta = json.loads((data / "pascal" / "meta.json").read_text())
    src = meta["source"]
    assert src["raw_format"] == "voc2007-tar" and "files" not in src
    assert src["extracted_folder"]["path"] == str(folder)
    assert src["extracted_folder"]["origin"] == "pre-staged"
    assert src["extracted_folder"]["counts"]["train"]["found"] == 4
    assert set(src["extracted_folder"]["instead_of"]) == {"VOCtrainval_06-Nov-2007.tar",
                                                          "VOCtest_06-Nov-2007.tar"}
    assert meta["source_files"] == {}                       # nothing with a checksum was read
    assert meta["counts"]["train"]["expected"] == 5011 and meta["counts"]["test"]["found"] == 3
    assert meta["options"]["difficult"] == "negative"       # the registry default
    assert meta["splits"]["train"] + meta["splits"]["val"] == 4 and meta["splits"]["test"] == 3
    got, want = by_id(data / "pascal"), voc_expected(VOC_TRAINVAL, "negative")
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    got_te, want_te = by_id(data / "pascal", ("test",)), voc_expected(VOC_TEST, "negative")
    assert all(np.array_equal(got_te[k], want_te[k]) for k in want_te)
    # Table 1 differences are reported, not fatal
    assert any(d["field"] == "n_train" for d in meta["differences"])


def test_extracted_layout_in_the_cache_counts_as_downloaded(tmp_path, download_cache, capsys):
    from mulsupcon_ld import cli
    from mulsupcon_ld.download import is_downloaded

    (tmp_path / "tars").mkdir()
    folder = extract_voc(tmp_path / "tars", download_cache / "pascal")
    assert is_downloaded("pascal")
    assert cli.main(["download", "pascal"]) == 0
    out = capsys.readouterr().out
    assert str(folder) in out and "cache" in out


def test_cli_nuswide21_uses_the_nuswide_raw_folder_and_its_options(tmp_path, monkeypatch, capsys):
    """The registry variant nuswide21 reads RAW/nuswide/, passes labels="21" to the reader and is
    prepared into DATA/nuswide21/ (top-2 here, the fixture having 4 concepts)."""
    from mulsupcon_ld import cli
    from mulsupcon_ld.download import is_downloaded

    monkeypatch.setenv("MULSUPCON_PREPARE_WORKERS", "1")
    monkeypatch.setattr(NUS, "TOP_K", 2)
    spec = registry.get_dataset("nuswide21")
    assert spec.raw_folder_name == "nuswide" and dict(spec.primary.options)["labels"] == "21"
    monkeypatch.setitem(registry.VARIANTS, "nuswide21", replace(spec, n_labels=2))
    raw, data = tmp_path / "raw", tmp_path / "data"
    write_nuswide(raw / "nuswide")
    assert is_downloaded("nuswide21", raw) and is_downloaded("nuswide", raw)
    assert not is_downloaded("nuswide21", tmp_path / "elsewhere")
    assert cli.main(["download", "nuswide21", "--raw-dir", str(raw)]) == 0
    assert str(raw / "nuswide") in capsys.readouterr().out
    assert cli.main(["prepare", "nuswide21", "--raw-dir", str(raw), "--data-dir", str(data)]) == 0
    meta = json.loads((data / "nuswide21" / "meta.json").read_text())
    assert not (data / "nuswide").exists()
    assert meta["name"] == "nuswide21" and meta["label_names"] == ["animal", "sky"]
    assert meta["options"]["labels"] == "21" and meta["source"]["registry_options"]["labels"] == "21"
    assert meta["source"]["extracted_folder"]["path"] == str(raw / "nuswide")
    got = {**by_id(data / "nuswide21"), **by_id(data / "nuswide21", ("test",))}
    rel = [p.replace("\\", "/") for p in NUS_IMAGES]
    for i in range(len(NUS_IMAGES)):
        y = nus_y(i, ["animal", "sky"])
        assert (rel[i] in got) == (bool(y.any()) and i != NUS_MISSING)
        if rel[i] in got:
            assert np.array_equal(got[rel[i]], y)


# ================================================================================= tests: training
@pytest.mark.slow
def test_smoke_pretrain_finetune_on_the_voc_fixture(tmp_path, monkeypatch):
    """`mulsupcon-ld run --dataset pascal --method cld --scale smoke` on CPU, on the extracted VOC
    fixture (4 trainval, 3 test images) at 32 px: ResNet-50 MoCo pretraining, BCE fine-tuning and
    evaluation end to end; metrics.json with the six metrics under both protocols, provenance, and
    score arrays in the shapes of the fixture's splits."""
    from mulsupcon_ld import cli
    from mulsupcon_ld.metrics import METRIC_KEYS

    monkeypatch.setenv("MULSUPCON_PREPARE_WORKERS", "1")
    (tmp_path / "tars").mkdir()
    raw, data, out = tmp_path / "raw", tmp_path / "data", tmp_path / "run"
    extract_voc(tmp_path / "tars", raw / "pascal")
    threads = torch.get_num_threads()
    try:
        rc = cli.main(["run", "--dataset", "pascal", "--method", "cld", "--scale", "smoke",
                       "--raw-dir", str(raw), "--data-dir", str(data), "--out", str(out), "--device", "cpu",
                       "--set", "data.image_size=32", "--set", "data.num_workers=0",
                       "--set", "pretrain.batch_size=2", "--set", "pretrain.queue_size=4",   # 3 steps wrap it
                       "--set", "finetune.batch_size=2", "--set", "finetune.eval_batch_size=2",
                       "--set", "checkpoint_every=3", "--set", "threads=1"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    rec = json.loads((out / "metrics.json").read_text())
    assert (rec["dataset"], rec["method"], rec["scale"], rec["synthetic"]) == ("pascal", "cld", "smoke", False)
    assert (rec["alpha"], rec["beta"]) == (1.0, 0.001)                     # image defaults
    for protocol in ("paper", "val-threshold"):
        values = rec["metrics"][protocol]
        assert set(METRIC_KEYS) <= set(values)
        assert all(isinstance(values[k], float) and 0.0 <= values[k] <= 1.0 for k in METRIC_KEYS), values
    for key in ("config", "config_hash", "git_commit", "versions", "device", "host", "result_hash"):
        assert rec.get(key), key
    assert rec["device"].startswith("cpu") and rec["config"]["settings"]["model"]["backbone"] == "resnet50"
    assert rec["data"]["source"] != "synthetic" and set(rec["wall_time_s"]) >= {"pretrain", "finetune", "total"}
    assert len(rec["training"]["pretrain"]["loss"]) == 3 and rec["training"]["pretrain"]["iters_per_epoch"] >= 1
    meta = json.loads((data / "pascal" / "meta.json").read_text())
    n = meta["splits"]
    assert n["train"] + n["val"] == 4 and n["test"] == 3
    assert (rec["data"]["n_train"], rec["data"]["n_val"], rec["data"]["n_test"]) == (n["train"], n["val"], n["test"])
    for split in ("test", "val"):
        scores, labels = np.load(out / f"{split}_scores.npy"), np.load(out / f"{split}_labels.npy")
        assert scores.shape == labels.shape == (n[split], 20)
        assert scores.dtype == np.float32 and ((scores >= 0) & (scores <= 1)).all()
        with np.load(data / "pascal" / f"{split}.npz") as z:
            assert np.array_equal(labels, z["y"])                            # stored order
    assert not (out / "state").exists() and (out / "pretrained.pt").is_file()
