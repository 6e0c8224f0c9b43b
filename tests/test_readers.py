"""Mulan ARFF+XML and MulSupCon HDF5 readers: hand-written files, a large sparse file, real files."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from mulsupcon_ld.data.arff import read_arff_header, read_mulan, read_mulan_xml
from mulsupcon_ld.data.hdf5 import read_mulsupcon_hdf5
from mulsupcon_ld.errors import UserError
from mulsupcon_ld.registry import get_dataset


def _xml(path, names):
    body = "\n".join(f'<label name="{n}"></label>' for n in names)
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n'
                    f'<labels xmlns="http://mulan.sourceforge.net/labels">\n{body}\n</labels>\n')
    return path


DENSE = """% a comment before the header
@RELATION 'toy: dense'

@attribute f1 NUMERIC
@ATTRIBUTE 'lab b' {0,1}
@attribute "f 2" real
% a comment between attributes
@attribute lab_a {0, 1}
@attribute f3 integer

@DATA
% a comment in the data
1.5,1,-2,0,7
0,0,3.25,1,8

2e-1,1,0,1,-9
"""


def test_dense_arff_labels_by_name_in_xml_order(tmp_path):
    arff = tmp_path / "toy.arff"
    arff.write_text(DENSE)
    xml = _xml(tmp_path / "toy.xml", ["lab_a", "lab b"])  # not the ARFF order
    x, y, names = read_mulan(arff, xml)
    assert names == ["lab_a", "lab b"]
    assert x.dtype == np.float32 and y.dtype == np.uint8
    np.testing.assert_array_equal(x, np.array([[1.5, -2, 7], [0, 3.25, 8], [0.2, 0, -9]],
                                              dtype=np.float32))
    np.testing.assert_array_equal(y, np.array([[0, 1], [1, 0], [1, 1]], dtype=np.uint8))
    header = read_arff_header(arff)
    assert header.relation == "toy: dense"
    assert [a.name for a in header.attributes] == ["f1", "lab b", "f 2", "lab_a", "f3"]
    assert header.attributes[1].values == ("0", "1")


SPARSE = r"""@relation sparse
@attribute w0 {0,1}
@attribute w1 numeric
@attribute 'w\'2' numeric
@attribute TAG_c++ {0,1}
@attribute 'TAG_dise\\~no' {0,1}
@attribute TAG_x {0,1}
@data
{0 1,1 0.5,3 1}
{}
% comment
{2 -1.25,4 1,5 1}
{1 3}
"""


def test_sparse_arff_with_quoted_names_and_empty_rows(tmp_path):
    arff = tmp_path / "s.arff"
    arff.write_text(SPARSE)
    xml = _xml(tmp_path / "s.xml", ["TAG_x", "TAG_dise\\~no", "TAG_c++"])
    x, y, names = read_mulan(arff, xml)
    assert names == ["TAG_x", "TAG_dise\\~no", "TAG_c++"]
    np.testing.assert_array_equal(x, np.array([[1, 0.5, 0], [0, 0, 0], [0, 0, -1.25], [0, 3, 0]],
                                              dtype=np.float32))
    np.testing.assert_array_equal(y, np.array([[0, 0, 1], [0, 0, 0], [1, 1, 0], [0, 0, 0]],
                                              dtype=np.uint8))
    assert [a.name for a in read_arff_header(arff).attributes][2] == "w'2"


def test_sparse_and_dense_encodings_of_the_same_data_agree(tmp_path):
    rng = np.random.default_rng(1)
    xs = (rng.random((40, 7)) < 0.3) * rng.integers(1, 9, (40, 7))
    ys = (rng.random((40, 4)) < 0.4).astype(int)
    attrs = [f"@attribute a{i} numeric" for i in range(7)] + \
            [f"@attribute L{j} {{0,1}}" for j in range(4)]
    head = "@relation r\n" + "\n".join(attrs) + "\n@data\n"
    rows = np.hstack([xs, ys])
    (tmp_path / "d.arff").write_text(head + "\n".join(",".join(map(str, r)) for r in rows))
    sparse = ["{" + ",".join(f"{i} {v}" for i, v in enumerate(r) if v) + "}" for r in rows]
    (tmp_path / "s.arff").write_text(head + "\n".join(sparse))
    xml = _xml(tmp_path / "l.xml", ["L3", "L0", "L2", "L1"])
    xd, yd, _ = read_mulan(tmp_path / "d.arff", xml)
    xsp, ysp, _ = read_mulan(tmp_path / "s.arff", xml)
    np.testing.assert_array_equal(xd, xsp)
    np.testing.assert_array_equal(yd, ysp)
    np.testing.assert_array_equal(yd, ys[:, [3, 0, 2, 1]])
    np.testing.assert_array_equal(xd, xs)


@pytest.mark.parametrize("data", ["1,?,0\n", "{0 1,1 ?}\n"])
def test_missing_values_are_an_error(tmp_path, data):
    arff = tmp_path / "m.arff"
    arff.write_text("@relation m\n@attribute a numeric\n@attribute b numeric\n"
                    "@attribute L {0,1}\n@data\n" + data)
    with pytest.raises(UserError, match=r"missing"):
        read_mulan(arff, _xml(tmp_path / "m.xml", ["L"]))


def test_label_missing_from_arff_is_an_error(tmp_path):
    arff = tmp_path / "t.arff"
    arff.write_text(DENSE)
    with pytest.raises(UserError, match="not ARFF attributes"):
        read_mulan(arff, _xml(tmp_path / "t.xml", ["lab_a", "nope"]))


def test_non_binary_label_is_an_error(tmp_path):
    arff = tmp_path / "t.arff"
    arff.write_text("@relation t\n@attribute a numeric\n@attribute L numeric\n@data\n1,2\n")
    with pytest.raises(UserError, match="0/1"):
        read_mulan(arff, _xml(tmp_path / "t.xml", ["L"]))


def test_wrong_column_count_and_garbage_are_errors(tmp_path):
    arff = tmp_path / "t.arff"
    arff.write_text("@relation t\n@attribute a numeric\n@attribute L {0,1}\n@data\n1,0,5\n")
    with pytest.raises(UserError):
        read_mulan(arff, _xml(tmp_path / "t.xml", ["L"]))
    arff.write_text("this is not an arff file\n")
    with pytest.raises(UserError, match="line 1"):
        read_mulan(arff, tmp_path / "t.xml")


def test_xml_reader_handles_nesting_and_rejects_junk(tmp_path):
    p = tmp_path / "h.xml"
    p.write_text('<labels xmlns="http://mulan.sourceforge.net/labels"><label name="a">'
                 '<label name="a.1"></label></label><label name="b"/></labels>')
    assert read_mulan_xml(p) == ["a", "a.1", "b"]
    p.write_text("<labels><label/></labels>")
    with pytest.raises(UserError):
        read_mulan_xml(p)
    p.write_text("<labels")
    with pytest.raises(UserError):
        read_mulan_xml(p)


def test_large_sparse_file_parses_quickly(tmp_path):
    """Delicious-like: 500 binary features then 983 labels, thousands of rows."""
    rng = np.random.default_rng(0)
    n, d, c = 6000, 500, 983
    attrs = [f"@attribute w{i} {{0,1}}" for i in range(d)] + \
            [f"@attribute TAG_{j} {{0,1}}" for j in range(c)]
    feats = [np.sort(rng.choice(d, rng.integers(0, 60), replace=False)) for _ in range(n)]
    labs = [np.sort(rng.choice(c, rng.integers(0, 40), replace=False)) for _ in range(n)]
    lines = ["{" + ",".join([f"{i} 1" for i in f] + [f"{d + j} 1" for j in lab]) + "}"
             for f, lab in zip(feats, labs)]
    arff = tmp_path / "big.arff"
    arff.write_text("@relation big\n" + "\n".join(attrs) + "\n@data\n" + "\n".join(lines) + "\n")
    xml = _xml(tmp_path / "big.xml", [f"TAG_{j}" for j in range(c)])
    start = time.perf_counter()
    x, y, _ = read_mulan(arff, xml)
    elapsed = time.perf_counter() - start
    assert x.shape == (n, d) and y.shape == (n, c)
    for r in (0, 1, n // 2, n - 1):
        assert set(np.flatnonzero(x[r])) == set(feats[r])
        assert set(np.flatnonzero(y[r])) == set(labs[r])
    assert int(x.sum()) == sum(len(f) for f in feats) and int(y.sum()) == sum(len(v) for v in labs)
    assert elapsed < 20, f"parsing {n} sparse rows took {elapsed:.1f}s"


# ---------------------------------------------------------------------------------------------
# HDF5


def _h5(path, feature, target):
    with h5py.File(path, "w") as fh:
        fh["feature"] = feature
        fh["target"] = target
    return path


def test_hdf5_reader_returns_float32_and_uint8(tmp_path):
    feat = np.array([[0.1, 2.0, -3.5], [4.0, 5.25, 6.0]], dtype=np.float64)
    targ = np.array([[1, 0], [1, 1]], dtype=np.int64)
    x, y = read_mulsupcon_hdf5(_h5(tmp_path / "a.hdf5", feat, targ), n_features=3, n_labels=2)
    assert x.dtype == np.float32 and y.dtype == np.uint8
    np.testing.assert_array_equal(x, feat.astype(np.float32))
    np.testing.assert_array_equal(y, [[1, 0], [1, 1]])


def test_hdf5_reader_rejects_bad_files(tmp_path):
    good_f, good_t = np.zeros((2, 3)), np.zeros((2, 2), dtype=np.int64)
    with pytest.raises(UserError, match="features, expected 4"):
        read_mulsupcon_hdf5(_h5(tmp_path / "a.hdf5", good_f, good_t), n_features=4)
    with pytest.raises(UserError, match="0/1"):
        read_mulsupcon_hdf5(_h5(tmp_path / "b.hdf5", good_f, good_t + 2))
    with pytest.raises(UserError, match="NaN"):
        read_mulsupcon_hdf5(_h5(tmp_path / "c.hdf5", good_f + np.nan, good_t))
    with h5py.File(tmp_path / "d.hdf5", "w") as fh:
        fh["x"] = good_f
    with pytest.raises(UserError, match="feature"):
        read_mulsupcon_hdf5(tmp_path / "d.hdf5")
    (tmp_path / "e.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(UserError):
        read_mulsupcon_hdf5(tmp_path / "e.hdf5")


# ---------------------------------------------------------------------------------------------
# real files nobody here wrote


def test_real_yeast_arff_agrees_with_mulsupcon_hdf5(shared_data):
    d = shared_data / "yeast"
    names_h5 = list(get_dataset("yeast").label_names)  # MulSupCon's column order
    xa, ya, names = read_mulan(d / "yeast-test.arff", d / "yeast.xml")
    assert xa.shape == (917, 103) and ya.shape == (917, 14)
    assert names[:6] == ["Class1", "Class2", "Class3", "Class6", "Class4", "Class10"]  # XML order
    ya = ya[:, [names.index(n) for n in names_h5]]
    xh, yh = read_mulsupcon_hdf5(d / "yeast_official_test.hdf5", 103, 14)
    np.testing.assert_array_equal(ya, yh)  # same rows, same order
    np.testing.assert_allclose(xa, xh, rtol=0, atol=1e-6)

    # train: MulSupCon's train + val is Mulan's train set, shuffled -> compare as sorted rows
    xa, ya, names = read_mulan(d / "yeast-train.arff", d / "yeast.xml")
    ya = ya[:, [names.index(n) for n in names_h5]]
    parts = [read_mulsupcon_hdf5(d / f"yeast_official_{s}.hdf5", 103, 14) for s in ("train", "val")]
    xh = np.concatenate([p[0] for p in parts])
    yh = np.concatenate([p[1] for p in parts])
    assert len(xh) == len(xa) == 1500

    def rows(x, y):
        a = np.hstack([x.astype(np.float64), y])
        return a[np.lexsort(a.T[::-1])]

    np.testing.assert_allclose(rows(xa, ya), rows(xh, yh), rtol=0, atol=1e-6)


def test_real_scene_arff(shared_data):
    d = shared_data / "scene"
    x, y, names = read_mulan(d / "scene-train.arff", d / "scene.xml")
    assert names == ["Beach", "Sunset", "FallFoliage", "Field", "Mountain", "Urban"]
    assert x.shape == (1211, 294) and y.shape == (1211, 6)
    assert (y.sum(1) > 0).all()
    assert 0.0 <= x.min() and x.max() <= 1.0 + 1e-6  # scene features are normalised colour moments


def test_real_delicious_sparse_arff_slice(shared_data, tmp_path):
    """The real sparse Delicious file (Mulan's official split): its header and first 300 rows, cut out
    as a file of their own, read the same as those rows of the whole file; shapes and label
    statistics as SOURCE.md and Table 1 say."""
    from prereq import missing

    d = shared_data / "delicious"
    if not (d / "delicious-train.arff").is_file():
        missing(f"pre-staged Delicious files not found in {d} (see ../shared/data/delicious/SOURCE.md)")
    lines = (d / "delicious-train.arff").read_text().splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.strip().lower() == "@data") + 1
    part = tmp_path / "slice.arff"
    part.write_text("".join(lines[:start + 300]))
    xs, ys, names = read_mulan(part, d / "delicious.xml")
    assert len(names) == 983 and xs.shape == (300, 500) and ys.shape == (300, 983)
    x, y, names_full = read_mulan(d / "delicious-train.arff", d / "delicious.xml")
    assert names_full == names and x.shape == (12920, 500) and y.shape == (12920, 983)
    np.testing.assert_array_equal(xs, x[:300])
    np.testing.assert_array_equal(ys, y[:300])
    assert set(np.unique(x)) <= {0.0, 1.0}                 # binary word features
    assert abs(float(y.sum(1).mean()) - 19.05) < 0.01     # Table 1: 19.07 (on 12,886 rows)
    assert int((y.sum(1) == 0).sum()) == 10                # rows without any tag, kept
