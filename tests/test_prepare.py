"""prepare → prepared format → info, on real Yeast/Scene, synthetic stand-ins and toy datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mulsupcon_ld import registry
from mulsupcon_ld.cli import main
from mulsupcon_ld.data.prepare import ensure_prepared, prepare_dataset, prepare_synthetic
from mulsupcon_ld.data.prepared import is_prepared, load_prepared, seeded_split
from mulsupcon_ld.data.commands import dataset_info
from mulsupcon_ld.errors import UserError
from mulsupcon_ld.registry import DatasetSpec, RawFile, Source, Table1

# the paper's Table 1 (train = our train + val), typed in from the paper, not from the registry
TABLE1 = {"yeast": (1500, 917, 14, 4.23, 4.25), "scene": (1210, 1195, 6, 1.06, 1.09)}


def _info_json(capsys, *argv) -> dict:
    assert main(list(argv) + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------
# real data: pre-staged download → prepare → info


def test_yeast_end_to_end_uses_the_official_mulsupcon_split(shared_data, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["download", "yeast", "--raw-dir", str(shared_data)]) == 0
    assert "pre-staged" in capsys.readouterr().out
    assert main(["prepare", "yeast", "--raw-dir", str(shared_data), "--data-dir", str(data)]) == 0
    capsys.readouterr()
    info = _info_json(capsys, "info", "yeast", "--data-dir", str(data))
    n_train, n_test, n_labels, m_train, m_test = TABLE1["yeast"]
    assert (info["n_train"], info["n_val"], info["n_test"]) == (1200, 300, 917)
    assert info["n_train"] + info["n_val"] == n_train == info["expected_train"]
    assert info["n_test"] == n_test == info["expected_test"]
    assert info["n_labels"] == n_labels and info["n_features"] == 103
    assert abs(info["mean_labels_train"] - m_train) <= 0.01
    assert abs(info["mean_labels_test"] - m_test) <= 0.01
    assert info["differences"] == []
    assert info["val_split"]["method"] == "source"
    assert info["val_split"]["file"] == "yeast_official_val.hdf5"
    meta = json.loads((data / "yeast" / "meta.json").read_text())
    assert meta["source"]["raw_format"] == "mulsupcon-hdf5" and meta["synthetic"] is False
    assert meta["source_files"]["yeast_official_test.hdf5"] == \
        "32d47bd36c49f672b139afbc6746e3b9e9e8fa4323009aedf9075c679e744ac3"
    assert meta["format_version"] == 1 and meta["expected"]["n_train"] == 1500


def test_yeast_from_mulan_arff_matches_the_hdf5_preparation(shared_data, tmp_path):
    a = prepare_dataset("yeast", shared_data, tmp_path / "a", quiet=True)
    b = prepare_dataset("yeast", shared_data, tmp_path / "b", source="mulan-arff", quiet=True)
    assert a.label_names == b.label_names  # same column order whatever the source
    xa, ya = a.split("test")
    xb, yb = b.split("test")
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_allclose(xa, xb, atol=1e-6)
    assert b.meta["val_split"] == {**b.meta["val_split"], "method": "seeded-random", "seed": 0,
                                   "fraction": 0.2}
    assert b.meta["splits"] == {"train": 1200, "val": 300, "test": 917}
    # both train+val sets are Mulan's 1500 train rows
    tv = lambda d: np.sort(np.concatenate([d.split("train")[1], d.split("val")[1]]).sum(1))  # noqa
    np.testing.assert_array_equal(tv(a), tv(b))


def test_scene_end_to_end_reports_its_extra_rows(shared_data, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["prepare", "scene", "--raw-dir", str(shared_data), "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "1211" in out and "1210" in out
    info = _info_json(capsys, "info", "scene", "--data-dir", str(data))
    n_train, n_test, n_labels, m_train, m_test = TABLE1["scene"]
    assert info["n_train"] + info["n_val"] == 1211 and info["n_test"] == 1196
    assert info["n_val"] == round(0.2 * 1211)
    assert info["n_labels"] == n_labels and info["n_features"] == 294
    assert abs(info["mean_labels_train"] - m_train) <= 0.01
    assert abs(info["mean_labels_test"] - m_test) <= 0.01
    diffs = {d["field"]: (d["expected"], d["actual"]) for d in info["differences"]}
    assert diffs == {"n_train": (n_train, 1211), "n_test": (n_test, 1196)}
    assert any("1211" in n and "1210" in n for n in info["notes"])
    meta = json.loads((data / "scene" / "meta.json").read_text())
    assert meta["val_split"]["seed"] == 0 and meta["val_split"]["fraction"] == 0.2
    assert meta["differences"] == info["differences"]
    # the readable form says the same
    assert main(["info", "scene", "--data-dir", str(data)]) == 0
    text = capsys.readouterr().out
    assert "differences from Table 1" in text and "n_test: expected 1195, got 1196" in text


def test_val_split_is_seeded_and_recorded_rows_map_back(shared_data, tmp_path):
    from mulsupcon_ld.data.arff import read_mulan

    ds = prepare_dataset("scene", shared_data, tmp_path / "d", quiet=True)
    x, y, _ = read_mulan(shared_data / "scene" / "scene-train.arff",
                         shared_data / "scene" / "scene.xml")
    rows = {s: ds.arrays(s, ("source_row",))["source_row"] for s in ("train", "val")}
    assert len(set(rows["train"]) | set(rows["val"])) == 1211
    assert not set(rows["train"]) & set(rows["val"])
    np.testing.assert_array_equal(ds.split("val")[0], x[rows["val"]])
    keep, held = seeded_split(1211, fraction=0.2, seed=0)
    np.testing.assert_array_equal(rows["val"], held)


# ---------------------------------------------------------------------------------------------
# the prepared format's guarantees


def test_missing_dataset_names_the_exact_prepare_command(tmp_path):
    with pytest.raises(UserError) as exc:
        load_prepared("scene", tmp_path / "nodata")
    assert f"mulsupcon-ld prepare scene --data-dir {tmp_path / 'nodata'}" in str(exc.value)
    with pytest.raises(UserError, match="--synthetic"):
        load_prepared("coco", tmp_path / "nodata", synthetic=True)
    with pytest.raises(UserError, match="unknown dataset"):
        load_prepared("cifar", tmp_path)


def test_killed_prepare_leaves_nothing_that_looks_done(shared_data, tmp_path, monkeypatch):
    import mulsupcon_ld.data.prepare as prep

    real = prep.save_split

    def dying(directory, which, arrays):
        if which == "test":
            raise KeyboardInterrupt  # as if killed half-way
        return real(directory, which, arrays)

    monkeypatch.setattr(prep, "save_split", dying)
    data = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("yeast", shared_data, data, quiet=True)
    assert not (data / "yeast").exists()
    assert not is_prepared("yeast", data)
    assert not list(data.rglob("meta.json")) and not list(data.rglob("*.npz"))

    # a staging directory left by a SIGKILLed run is hidden, and removed by the next prepare
    stale = data / ".yeast.dead.partial"
    stale.mkdir()
    (stale / "train.npz").write_bytes(b"half")
    assert not is_prepared("yeast", data)

    # an existing prepared copy survives a failed re-prepare untouched
    monkeypatch.setattr(prep, "save_split", real)
    prepare_dataset("yeast", shared_data, data, quiet=True)
    before = (data / "yeast" / "meta.json").read_text()
    monkeypatch.setattr(prep, "save_split", dying)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("yeast", shared_data, data, quiet=True)
    assert (data / "yeast" / "meta.json").read_text() == before
    assert sorted(p.name for p in data.iterdir() if not p.name.endswith(".lock")) == ["yeast"]
    assert not stale.exists()


def test_inconsistent_prepared_files_are_reported(tmp_path):
    ds = prepare_synthetic("yeast", tmp_path)
    meta = dict(ds.meta)
    meta["splits"] = {**meta["splits"], "test": 999}
    (ds.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="inconsistent"):
        load_prepared("yeast", tmp_path, synthetic=True).split("test")


def test_ensure_prepared_prepares_once(shared_data, tmp_path, monkeypatch):
    ds = ensure_prepared("yeast", shared_data, tmp_path)
    assert ds.meta["splits"]["train"] == 1200
    import mulsupcon_ld.data.prepare as prep

    monkeypatch.setattr(prep, "prepare_dataset", lambda *a, **k: pytest.fail("re-prepared"))
    assert ensure_prepared("yeast", shared_data, tmp_path).path == ds.path
    syn = ensure_prepared("scene", None, tmp_path, synthetic=True)
    assert syn.synthetic and syn.path.name == "scene-synthetic"


# ---------------------------------------------------------------------------------------------
# synthetic stand-ins


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


@pytest.mark.parametrize("name", ["yeast", "delicious"])
def test_vector_stand_in_has_the_shape_and_learnable_labels(tmp_path, name):
    spec = registry.get_dataset(name)
    ds = prepare_synthetic(name, tmp_path)
    assert ds.meta["synthetic"] is True and ds.path.name == f"{name}-synthetic"
    (xtr, ytr), (xva, yva), (xte, yte) = (ds.split(s) for s in ("train", "val", "test"))
    assert xtr.dtype == np.float32 and ytr.dtype == np.uint8
    assert xtr.shape[1] == spec.n_features and ytr.shape[1] == spec.n_labels
    assert 100 <= len(xtr) <= 1000 and 100 <= len(xte) <= 1000
    mean = np.concatenate([ytr, yva, yte]).sum(1).mean()
    assert abs(mean - spec.expected.mean_labels_train) < 0.1 * spec.expected.mean_labels_train
    # ridge regression on train ranks test labels far better than chance (AUC 0.5)
    a = np.hstack([xtr, np.ones((len(xtr), 1), np.float32)]).astype(np.float64)
    w = np.linalg.solve(a.T @ a + 100.0 * np.eye(a.shape[1]), a.T @ ytr)
    scores = np.hstack([xte, np.ones((len(xte), 1), np.float32)]) @ w
    aucs = [_auc(scores[:, c], yte[:, c]) for c in range(yte.shape[1])
            if 0 < yte[:, c].sum() < len(yte)]
    assert np.mean(aucs) > 0.75


def test_stand_ins_are_deterministic(tmp_path):
    a = prepare_synthetic("scene", tmp_path / "a")
    b = prepare_synthetic("scene", tmp_path / "b")
    for s in ("train", "val", "test"):
        for u, v in zip(a.split(s), b.split(s)):
            np.testing.assert_array_equal(u, v)
    c = prepare_synthetic("yeast", tmp_path / "a")
    assert c.split("train")[1].shape != a.split("train")[1].shape


def test_image_stand_in_paints_label_dependent_patterns(tmp_path):
    ds = prepare_synthetic("pascal", tmp_path)
    x, y = ds.split("train")
    assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32) and y.shape[1] == 20
    assert ds.meta["kind"] == "image" and ds.meta["image"]["shape"] == [3, 32, 32]
    # the brightest pixel block differs between images with and without each label
    flat = x.reshape(len(x), -1).astype(np.float64)
    for c in range(3):
        if 0 < y[:, c].sum() < len(y):
            diff = np.abs(flat[y[:, c] == 1].mean(0) - flat[y[:, c] == 0].mean(0))
            assert diff.max() > 50


# ---------------------------------------------------------------------------------------------
# a toy single-file dataset (Bookmarks' case) and an unimplemented image format


def _toy_single(tmp_path, monkeypatch):
    raw = tmp_path / "raw" / "toyset"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(3)
    n = 50
    x = rng.integers(0, 2, (n, 4))
    y = rng.integers(0, 2, (n, 3))
    y[0] = 0
    head = "@relation toy\n" + "".join(f"@attribute f{i} {{0,1}}\n" for i in range(4)) + \
        "".join(f"@attribute L{j} {{0,1}}\n" for j in range(3)) + "@data\n"
    (raw / "toy.arff").write_text(head + "\n".join(
        "{" + ",".join(f"{i} 1" for i, v in enumerate(np.r_[xi, yi]) if v) + "}"
        for xi, yi in zip(x, y)) + "\n")
    (raw / "toy.xml").write_text('<labels><label name="L0"/><label name="L1"/>'
                                 '<label name="L2"/></labels>')
    spec = DatasetSpec("toyset", "Toy", "vector", 3, Table1(40, 10, 1.5, 1.5), (
        Source("toy", "mulan-arff-single", (RawFile("toy.arff", ("http://127.0.0.1:9/t",),
                                                    role="all"),
                                            RawFile("toy.xml", ("http://127.0.0.1:9/x",),
                                                    role="labels"))),), n_features=4)
    monkeypatch.setitem(registry.DATASETS, "toyset", spec)
    return x, y


def test_single_file_dataset_gets_a_seeded_recorded_test_split(tmp_path, monkeypatch, capsys):
    x, y = _toy_single(tmp_path, monkeypatch)
    ds = prepare_dataset("toyset", tmp_path / "raw", tmp_path / "data", quiet=True)
    assert ds.meta["splits"] == {"train": 32, "val": 8, "test": 10}
    assert ds.meta["test_split"]["official"] is False and ds.meta["test_split"]["seed"] == 0
    rows = np.concatenate([ds.arrays(s, ("source_row",))["source_row"]
                           for s in ("train", "val", "test")])
    assert sorted(rows) == list(range(50))
    for s in ("train", "val", "test"):
        xs, ys = ds.split(s)
        r = ds.arrays(s, ("source_row",))["source_row"]
        np.testing.assert_array_equal(xs, x[r])
        np.testing.assert_array_equal(ys, y[r])
    info = dataset_info("toyset", tmp_path / "data")
    assert info["n_unlabeled_train"] + info["n_unlabeled_test"] >= 1
    assert info["mean_labels_test"] == round(float(y[ds.arrays("test", ("source_row",))
                                                     ["source_row"]].sum(1).mean()), 4)


def test_image_dataset_without_a_preparer_is_a_clear_error(tmp_path, monkeypatch):
    raw = tmp_path / "raw" / "toyimg"
    raw.mkdir(parents=True)
    (raw / "imgs.tar").write_bytes(b"x")
    spec = DatasetSpec("toyimg", "Toy images", "image", 2, Table1(1, 1, 1.0, 1.0), (
        Source("s", "toy-image-format", (RawFile("imgs.tar", role="all"),)),))
    monkeypatch.setitem(registry.DATASETS, "toyimg", spec)
    with pytest.raises(UserError, match="not implemented yet.*--synthetic"):
        prepare_dataset("toyimg", tmp_path / "raw", tmp_path / "data", quiet=True)
    assert not (tmp_path / "data" / "toyimg").exists()


# ---------------------------------------------------------------------------------------------
# commands


def test_unknown_dataset_exits_2_with_one_error_line(repo_root):
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    for argv in (["info", "imagenet"], ["prepare", "imagenet"], ["download", "imagenet"]):
        proc = subprocess.run([sys.executable, "-m", "mulsupcon_ld.cli", *argv],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "yeast" in lines[0]
        assert "Traceback" not in proc.stderr


def test_datasets_command_lists_all_and_what_is_here(shared_data, tmp_path, capsys):
    prepare_synthetic("coco", tmp_path)
    assert main(["datasets", "--raw-dir", str(shared_data), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[2:] if ln.strip()}
    assert set(lines) == set(registry.DATASETS)
    assert "1500/917" in lines["yeast"] and lines["yeast"].split()[-2] == "yes"
    assert lines["delicious"].split()[-2] == "yes" and lines["bookmarks"].split()[-2] == "no"
    assert lines["mediamill"].split()[-2] == "manual"
    assert lines["coco"].split()[-1] == "synthetic" and lines["scene"].split()[-1] == "no"


def test_info_of_a_synthetic_stand_in(tmp_path, capsys):
    main(["prepare", "mediamill", "--synthetic", "--data-dir", str(tmp_path)])
    capsys.readouterr()
    info = _info_json(capsys, "info", "mediamill-synthetic", "--data-dir", str(tmp_path))
    assert info["synthetic"] is True and info["n_features"] == 120 and info["n_labels"] == 101
    assert info["expected_train"] == 29804 and any(d["field"] == "n_train"
                                                   for d in info["differences"])


# ---------------------------------------------------------------------------------------------
# image wiring: registry additions, extracted layouts as "downloaded"


def test_image_registry_additions():
    from mulsupcon_ld.paths import data_dir
    from mulsupcon_ld.data.prepared import prepared_dir

    voc = {f.name: f.size for f in registry.get_dataset("pascal").raw_files}
    assert voc == {"VOCtrainval_06-Nov-2007.tar": 460_032_000, "VOCtest_06-Nov-2007.tar": 451_020_800}
    assert dict(registry.get_dataset("pascal").primary.options) == {"difficult": "negative"}
    mir = {f.name: f for f in registry.get_dataset("mirflickr").raw_files}
    assert mir["mirflickr25k.zip"].size == 3_069_184_257
    ann = mir["mirflickr25k_annotations_v080.zip"]
    assert (ann.md5, ann.size) == ("aa0138c79892b1b670184d142380948f", 207_220)
    assert "third part" in ann.description                   # not published by the MIRFLICKR site
    nus = registry.get_dataset("nuswide")
    assert nus.primary.file("concepts").name == "ConceptsList.zip"
    assert nus.primary.file("concepts").urls[0].endswith("/nuswide/ConceptsList.zip")
    assert "Concepts81.txt" in nus.primary.instructions
    assert "Flickr/<folder>/<file>.jpg" in nus.primary.instructions
    assert dict(nus.primary.options)["labels"] == "81"
    # the 21-label variant: an entry of its own, not a tenth row of Table 1
    v = registry.get_dataset("NUSWIDE21")
    assert (v.name, v.kind, v.n_labels, v.raw_folder_name) == ("nuswide21", "image", 21, "nuswide")
    assert dict(v.primary.options) == {"labels": "21", "split": "paper"}
    assert v.primary.files == nus.primary.files and v.manual_download
    assert "nuswide21" not in registry.DATASETS and "nuswide21" in registry.VARIANTS
    assert registry.get_dataset("pascal").raw_folder_name == "pascal"
    assert prepared_dir("nuswide21", "d") == data_dir("d") / "nuswide21"
    with pytest.raises(ValueError):
        registry.register_dataset(v)
    with pytest.raises(UserError, match="nuswide21"):
        registry.get_dataset("nuswide22")


def test_image_options_reach_the_image_reader():
    from mulsupcon_ld.data.image_prepare import _options

    assert _options(registry.get_dataset("pascal"), "voc", {})["difficult"] == "negative"
    assert _options(registry.get_dataset("pascal"), "voc", {"difficult": "positive"})["difficult"] \
        == "positive"
    assert _options(registry.get_dataset("nuswide21"), "nuswide", {})["labels"] == "21"
    assert _options(registry.get_dataset("nuswide"), "nuswide", {})["labels"] == "81"


def test_extracted_coco_layout_counts_as_downloaded(tmp_path):
    from mulsupcon_ld.download import is_downloaded

    raw = tmp_path / "raw"
    coco = raw / "coco"
    assert not is_downloaded("coco", raw)
    for d in ("train2014", "val2014", "annotations"):
        (coco / d).mkdir(parents=True)
    (coco / "annotations" / "instances_train2014.json").write_text("{}")
    assert not is_downloaded("coco", raw)                  # structure incomplete
    (coco / "annotations" / "instances_val2014.json").write_text("{}")
    assert is_downloaded("coco", raw)
    assert not is_downloaded("coco", tmp_path / "other")
    assert not is_downloaded("yeast", tmp_path / "other")  # vector datasets: files only


def test_nuswide21_manual_message_names_the_shared_raw_folder(tmp_path):
    from mulsupcon_ld.download import download_dataset

    with pytest.raises(UserError) as exc:
        download_dataset("nuswide21", tmp_path / "raw", cache_dir=tmp_path / "cache", quiet=True)
    msg = str(exc.value)
    assert "manual" in msg and str(tmp_path / "raw" / "nuswide") in msg
    assert "nuswide21/" not in msg and "ConceptsList.zip" in msg and "Concepts81.txt" in msg
    with pytest.raises(UserError, match="manual"):
        prepare_dataset("nuswide21", tmp_path / "raw", tmp_path / "data", quiet=True)
    assert not (tmp_path / "data" / "nuswide21").exists()
