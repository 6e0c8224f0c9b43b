"""docs/method.md's arithmetic numbers (report/precision_numbers.py) from per-run rows: the bf16 validation's
within-one-pooled-sd verdict and auto's "computed exactly its choice's numbers" come from the rows."""

from __future__ import annotations

import pandas as pd
import pytest

from mulsupcon_ld.report import precision_numbers as pn


def _rows(fp32: list[float], bf16: list[float]) -> pd.DataFrame:
    return pd.DataFrame([{"precision": p, "seed": s, "val_mAP": v, "val_bce": 0.4, "pretrain_s": t, "commit": "abc1234ff"}
                         for p, vals, t in (("fp32", fp32, 50.0), ("bf16", bf16, 40.0)) for s, v in enumerate(vals)])


def test_a_difference_beyond_the_pooled_sd_is_not_within():
    near = pn.bf16_cell(_rows([0.50, 0.51, 0.52], [0.505, 0.515, 0.525]))
    far = pn.bf16_cell(_rows([0.50, 0.51, 0.52], [0.55, 0.56, 0.57]))
    assert near["within"] and near["diff"] == "+0.0050" and near["pooled"] == "0.0100"
    assert not far["within"] and far["per_seed"] == "+0.0500, +0.0500, +0.0500"
    assert far["speedup"] == pytest.approx(1.25) and far["pre"] == "50 / 40"


def test_auto_equals_its_twin_only_when_the_result_hashes_agree(tmp_path):
    rows = [{"dataset": "yeast", "reading": r, "method": "cld", "seed": 0, "precision": p, "result_hash": h,
             "calib_fp32_ms": f, "calib_bf16_ms": b}
            for r, p, h, f, b in (("fp32", "fp32", "aa", None, None), ("bf16", "bf16", "bb", None, None),
                                  ("auto", "fp32", "aa", 9.0, 10.0))]
    rows.append({**rows[2], "method": "mulsupcon", "result_hash": "zz"})
    rows.append({**rows[0], "method": "mulsupcon"})
    path = tmp_path / pn.BF16_VECTOR
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    choices = {c["name"]: c for c in pn.auto_choices(tmp_path)}
    assert choices["Yeast CLD"]["equal"] and choices["Yeast CLD"]["chose"] == "fp32"
    assert choices["Yeast CLD"]["ratio"] == pytest.approx(0.9)
    assert not choices["Yeast MulSupCon"]["equal"]
