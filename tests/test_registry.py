"""The registry must agree with the paper's Table 1 and with the published checksums."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prereq import missing

from mulsupcon_ld.errors import UserError
from mulsupcon_ld.registry import (DATASETS, DatasetSpec, RawFile, Source, Table1, get_dataset,
                                   register_dataset)

NAMES = ["yeast", "scene", "bookmarks", "delicious", "mediamill", "pascal", "coco", "mirflickr",
         "nuswide"]

# paper name in Table 1 -> registry name
TABLE1_NAMES = {"MS-COCO": "coco", "NUS-WIDE": "nuswide", "MIRFLICKR": "mirflickr",
                "PASCAL": "pascal", "Bookmarks": "bookmarks", "Mediamill": "mediamill",
                "Delicious": "delicious", "Scene": "scene", "Yeast": "yeast"}

ROLES = {"mulan-arff": {"train", "test", "labels"}, "mulan-arff-single": {"all", "labels"},
         "mulsupcon-hdf5": {"train", "val", "test"}}


def test_all_nine_datasets_are_registered():
    assert sorted(DATASETS) == sorted(NAMES)
    assert {n for n, d in DATASETS.items() if d.kind == "image"} == {"pascal", "coco", "mirflickr",
                                                                       "nuswide"}


def test_registry_matches_table1_of_the_paper(repo_root):
    paper = repo_root.parent / "shared" / "paper" / "paper.txt"
    if not paper.is_file():
        missing(f"paper text not found at {paper}")
    rows = {}
    for line in paper.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\S+)\t(\d+)/(\d+)\t(\d+)\t([\d.]+)/([\d.]+)$", line.strip())
        if m and m.group(1) in TABLE1_NAMES:
            rows[TABLE1_NAMES[m.group(1)]] = m.groups()[1:]
    assert set(rows) == set(NAMES), "could not find all nine rows of Table 1 in the paper text"
    for name, (ntr, nte, nlab, mtr, mte) in rows.items():
        spec = get_dataset(name)
        assert spec.expected == Table1(int(ntr), int(nte), float(mtr), float(mte)), name
        assert spec.n_labels == int(nlab), name


def test_vector_datasets_have_feature_counts():
    feats = {n: d.n_features for n, d in DATASETS.items()}
    assert feats == {"yeast": 103, "scene": 294, "bookmarks": 2150, "delicious": 500,
                     "mediamill": 120, "pascal": None, "coco": None, "mirflickr": None,
                     "nuswide": None}


def test_files_have_addresses_checksums_and_roles():
    for spec in DATASETS.values():
        assert spec.sources, spec.name
        for src in spec.sources:
            assert src.raw_format and src.name
            if src.manual_download:
                assert src.instructions, f"{spec.name}: manual source without instructions"
            roles = {f.role for f in src.files}
            assert ROLES.get(src.raw_format, roles) <= roles, (spec.name, src.raw_format, roles)
            for f in src.files:
                assert f.role, (spec.name, f.name)
                if not src.manual_download:
                    assert f.urls and all(u.startswith(("http://", "https://")) for u in f.urls)
                    assert all(u.rstrip("/").endswith(f.name) or "/download" in u
                               for u in f.urls), f.urls
                if f.sha256 is not None:
                    assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.name
                if f.md5 is not None:
                    assert re.fullmatch(r"[0-9a-f]{32}", f.md5), f.name


def test_checksums_match_the_source_notes(shared_data):
    """Every sha256 in a SOURCE.md beside the pre-staged files is the registry's value."""
    checked = 0
    for md in sorted(shared_data.glob("*/SOURCE.md")):
        spec = get_dataset(md.parent.name)
        known = {f.name: f.sha256 for s in spec.sources for f in s.files}
        for name, digest in re.findall(r"\|\s*([\w.-]+)\s*\|[^|\n]*\|\s*([0-9a-f]{64})\s*\|",
                                       md.read_text()):
            if name in known:  # (yeast_official_trainval.hdf5 = train + val is not needed)
                assert known[name] == digest, (md, name)
                checked += 1
    assert checked >= 9


def test_image_facts_from_the_issue():
    voc = {f.name: f.md5 for f in get_dataset("pascal").raw_files}
    assert voc == {"VOCtrainval_06-Nov-2007.tar": "c52e279531787c972589f7e41ab4ae64",
                   "VOCtest_06-Nov-2007.tar": "b6e924de25625d8de591ea690078ad9f"}
    assert {f.name for f in get_dataset("coco").raw_files} == {
        "train2014.zip", "val2014.zip", "annotations_trainval2014.zip"}
    assert {f.name for f in get_dataset("mirflickr").raw_files} == {
        "mirflickr25k.zip", "mirflickr25k_annotations_v080.zip"}
    assert get_dataset("nuswide").manual_download
    assert get_dataset("mediamill").manual_download
    assert not get_dataset("yeast").manual_download


def test_yeast_prefers_mulsupcon_hdf5_then_mulan_arff():
    spec = get_dataset("yeast")
    assert [s.raw_format for s in spec.sources] == ["mulsupcon-hdf5", "mulan-arff"]
    assert spec.raw_format == "mulsupcon-hdf5"
    assert sorted(spec.label_names) == sorted(f"Class{i}" for i in range(1, 15))


def test_checksum_prefers_sha256():
    f = RawFile("a", sha256="A" * 64, md5="b" * 32)
    assert f.checksum == ("sha256", "a" * 64)
    assert RawFile("a", md5="B" * 32).checksum == ("md5", "b" * 32)
    assert RawFile("a").checksum is None


def test_get_dataset_is_case_insensitive_and_names_known_datasets():
    assert get_dataset(" Scene ").name == "scene"
    with pytest.raises(UserError) as exc:
        get_dataset("imagenet")
    msg = str(exc.value)
    assert "imagenet" in msg and all(n in msg for n in NAMES)


def test_register_dataset_refuses_to_shadow(monkeypatch):
    monkeypatch.setattr("mulsupcon_ld.registry.DATASETS", dict(DATASETS))
    from mulsupcon_ld import registry

    extra = DatasetSpec("tiny", "Tiny", "vector", 2, Table1(1, 1, 1.0, 1.0),
                        (Source("s", "mulan-arff", (RawFile("a.arff", role="train"),)),),
                        n_features=3)
    register_dataset(extra)
    assert registry.get_dataset("tiny") is extra
    with pytest.raises(ValueError):
        register_dataset(extra)
    with pytest.raises(ValueError):
        register_dataset(DatasetSpec("odd", "Odd", "audio", 2, Table1(1, 1, 1.0, 1.0),
                                     extra.sources))


def test_source_file_lookup_by_role():
    src = get_dataset("scene").primary
    assert src.file("labels").name == "scene.xml"
    with pytest.raises(KeyError):
        src.file("val")


def test_paths_in_registry_are_plain_file_names():
    for spec in DATASETS.values():
        for src in spec.sources:
            for f in src.files:
                assert Path(f.name).name == f.name, f.name
