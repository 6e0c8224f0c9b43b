"""`mulsupcon-ld evaluate` through mulsupcon_ld.cli.main."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mulsupcon_ld.cli import main
from mulsupcon_ld.metrics import METRIC_KEYS, compute_metrics


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random((40, 5)) < 0.4).astype(np.uint8)
    y[0, 0] = 1
    s = np.clip(0.6 * rng.random((40, 5)) + 0.4 * y, 0, 1).astype(np.float32)
    vy = (rng.random((20, 5)) < 0.4).astype(np.uint8)
    vy[0, 0] = 1
    vs = np.clip(0.6 * rng.random((20, 5)) + 0.4 * vy, 0, 1).astype(np.float32)
    paths = {}
    for name, arr in {"s": s, "y": y, "vs": vs, "vy": vy}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    return paths, (s, y, vs, vy)


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_json_paper(arrays, capsys):
    p, (s, y, _, _) = arrays
    assert main(["evaluate", "--scores", str(p["s"]), "--labels", str(p["y"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == list(METRIC_KEYS)
    assert out == pytest.approx(compute_metrics(s, y))


def test_json_val_threshold(arrays, capsys):
    p, (s, y, vs, vy) = arrays
    rc = main(["evaluate", "--scores", str(p["s"]), "--labels", str(p["y"]), "--protocol",
               "val-threshold", "--val-scores", str(p["vs"]), "--val-labels", str(p["vy"]), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == list(METRIC_KEYS) + ["threshold"]
    assert out == pytest.approx(compute_metrics(s, y, "val-threshold", vs, vy))


def test_table_output(arrays, capsys):
    p, _ = arrays
    assert main(["evaluate", "--scores", str(p["s"]), "--labels", str(p["y"])]) == 0
    out = capsys.readouterr().out
    for k in METRIC_KEYS:
        assert k in out
    assert "protocol: paper" in out and "best on these labels" in out


def test_nan_scores_exit_2(arrays, tmp_path, capsys):
    p, (s, *_) = arrays
    bad = s.copy()
    bad[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert main(["evaluate", "--scores", str(tmp_path / "nan.npy"), "--labels", str(p["y"])]) == 2
    assert "NaN" in _err_line(capsys)


def test_shape_mismatch_exit_2(arrays, capsys):
    p, _ = arrays
    assert main(["evaluate", "--scores", str(p["vs"]), "--labels", str(p["y"]), "--json"]) == 2
    assert "shape" in _err_line(capsys)


def test_missing_file_exit_2(arrays, tmp_path, capsys):
    p, _ = arrays
    assert main(["evaluate", "--scores", str(tmp_path / "nope.npy"), "--labels", str(p["y"])]) == 2
    assert "not found" in _err_line(capsys)


def test_not_an_npy_exit_2(arrays, tmp_path, capsys):
    p, _ = arrays
    (tmp_path / "x.npy").write_text("hello")
    assert main(["evaluate", "--scores", str(tmp_path / "x.npy"), "--labels", str(p["y"])]) == 2
    _err_line(capsys)


def test_val_threshold_without_val_arrays_exit_2(arrays, capsys):
    p, _ = arrays
    assert main(["evaluate", "--scores", str(p["s"]), "--labels", str(p["y"]),
                 "--protocol", "val-threshold"]) == 2
    assert "--val-scores" in _err_line(capsys)
    assert main(["evaluate", "--scores", str(p["s"]), "--labels", str(p["y"]),
                 "--protocol", "val-threshold", "--val-scores", str(p["vs"])]) == 2
    _err_line(capsys)
