"""The six metrics and the two protocols (mulsupcon_ld.metrics)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, hamming_loss

from mulsupcon_ld.errors import UserError
from mulsupcon_ld.metrics import (
    METRIC_KEYS,
    THRESHOLDS,
    average_precision_per_label,
    compute_metrics,
    compute_metrics_with_thresholds,
    mean_average_precision,
    metrics_at_threshold,
    precision_at_1,
    select_thresholds,
    threshold_sweep,
)

TOL = 1e-6


def _random_case(seed: int, n: int = 60, c: int = 7, dtype=np.float64, every_row_labelled=False):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(np.uint8)
    y[:, -1] = 0  # one label without positives
    y[0, 0] = 1
    if every_row_labelled:
        y[np.arange(n), rng.integers(0, c - 1, n)] = 1
    s = np.clip(0.6 * rng.random((n, c)) + 0.4 * y * rng.random((n, c)), 0, 1)
    s[: n // 3] = np.round(s[: n // 3], 1)  # many ties and scores exactly on a threshold
    return s.astype(dtype), y


def _naive(s, y, t):
    """Straight translation of the definitions for one threshold (compared in the scores' dtype)."""
    p = s >= np.asarray(t, dtype=s.dtype)
    yb = y.astype(bool)
    tp = (p & yb).sum(0).astype(float)
    fp = (p & ~yb).sum(0).astype(float)
    fn = (~p & yb).sum(0).astype(float)
    ha = 1 - np.mean(p != yb)
    mi = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())
    ma = np.mean(2 * tp / (2 * tp + fp + fn + 1e-6))
    num = 2 * (p & yb).sum(1)
    den = yb.sum(1) + p.sum(1)
    eb = np.mean(num[den > 0] / den[den > 0])
    return {"HA": ha, "miF1": mi, "maF1": ma, "ebF1": eb}, p


# --------------------------------------------------------------------------- against scikit-learn


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sweep_matches_sklearn_and_definitions(seed, dtype):
    s, y = _random_case(seed, dtype=dtype, every_row_labelled=True)
    sweep = threshold_sweep(s, y)
    for k, t in enumerate(THRESHOLDS):
        ref, p = _naive(s, y, t)
        assert sweep["miF1"][k] == pytest.approx(f1_score(y, p, average="micro"), abs=TOL)
        assert sweep["HA"][k] == pytest.approx(1 - hamming_loss(y, p), abs=TOL)
        # no sample has empty truth, so no sample is dropped: equals sklearn's samples-average F1
        assert sweep["ebF1"][k] == pytest.approx(
            f1_score(y, p, average="samples", zero_division=0), abs=TOL)
        # macro-F1 differs from sklearn's only by the 1e-6 smoothing (<= 1e-6 per label)
        assert sweep["maF1"][k] == pytest.approx(
            f1_score(y, p, average="macro", zero_division=0), abs=2e-6)
        for m in ref:
            assert sweep[m][k] == pytest.approx(ref[m], abs=1e-12), (m, t)


def test_sweep_matches_definitions_with_empty_rows():
    s, y = _random_case(5, n=80, c=9)  # many samples without labels → dropped when prediction empty
    assert (y.sum(1) == 0).any()
    sweep = threshold_sweep(s, y)
    for k, t in enumerate(THRESHOLDS):
        ref, _ = _naive(s, y, t)
        for m in ref:
            assert sweep[m][k] == pytest.approx(ref[m], abs=1e-12), (m, t)


@pytest.mark.parametrize("seed", [0, 3])
def test_average_precision_matches_sklearn_per_label(seed):
    s, y = _random_case(seed)
    ap = average_precision_per_label(s, y)
    for j in range(y.shape[1] - 1):
        assert ap[j] == pytest.approx(average_precision_score(y[:, j], s[:, j]), abs=TOL)
    assert ap[-1] == 0.0  # the label without positives
    assert compute_metrics(s, y)["mAP"] == pytest.approx(ap.mean(), abs=1e-12)


def test_map_label_without_positive_is_zero_and_silent():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.8], [0.2, 0.1], [0.6, 0.3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail the test
        assert mean_average_precision(s, y) == pytest.approx(0.5)
        assert mean_average_precision(s, y, no_positive="skip") == pytest.approx(1.0)
        res = compute_metrics(s, y)
    assert res["mAP"] == pytest.approx(0.5)
    # same value as the reference code's call with the installed scikit-learn (0 for that label)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.mean(average_precision_score(y, s, average=None)) == pytest.approx(0.5)


# --------------------------------------------------------------------------- hand-computed cases


def test_best_threshold_chosen_per_metric():
    # one sample, four labels; only label 0 true; three labels tied at 0.15
    y = np.array([[1, 0, 0, 0]])
    s = np.array([[0.15, 0.15, 0.15, 0.05]])
    # t = 0.1: predict labels 0-2 → tp 1, fp 2, fn 0: HA 1/2, miF1 2/4, ebF1 2/(1+3), maF1 (2/(2+1e-6))/4
    # t >= 0.2: predict nothing → tp 0, fn 1: HA 3/4, miF1 0, ebF1 0, maF1 0
    res, thr = compute_metrics_with_thresholds(s, y)
    assert res["HA"] == pytest.approx(0.75, abs=1e-12)
    assert res["miF1"] == pytest.approx(0.5, abs=1e-12)
    assert res["ebF1"] == pytest.approx(0.5, abs=1e-12)
    assert res["maF1"] == pytest.approx(2 / (2 + 1e-6) / 4, abs=1e-12)
    assert thr == {"HA": 0.2, "ebF1": 0.1, "miF1": 0.1, "maF1": 0.1}  # HA ties 0.2..0.9 → smallest
    assert select_thresholds(s, y) == thr
    # p_at_1: the tie 0.15/0.15/0.15 goes to the highest index (label 2, false) → 0
    assert res["p_at_1"] == 0.0
    # mAP: label 0 has AP 1, labels 1-3 have no positives → 0
    assert res["mAP"] == pytest.approx(0.25)
    assert list(res) == list(METRIC_KEYS)


def test_ebf1_drops_empty_empty_samples():
    y = np.array([[1, 0], [0, 0], [0, 0]])
    s = np.array([[0.9, 0.0], [0.0, 0.2], [0.8, 0.0]])
    # t = 0.5: sample 0 → 2/(1+1) = 1; sample 1 empty truth and prediction → dropped;
    # sample 2 empty truth, one prediction → 0/(0+1) = 0; mean over kept = 0.5
    assert metrics_at_threshold(s, y, 0.5)["ebF1"] == pytest.approx(0.5)
    # t = 0.1: sample 1 now predicts label 1 → kept with 0 → 1/3
    assert metrics_at_threshold(s, y, 0.1)["ebF1"] == pytest.approx(1 / 3)
    # sklearn keeps the empty-empty sample (zero_division) → differs
    p = s >= 0.5
    assert f1_score(y, p, average="samples", zero_division=0) == pytest.approx(1 / 3)


def test_maf1_smoothing_and_label_without_positive():
    y = np.array([[1, 0], [1, 0]])
    s = np.array([[0.9, 0.3], [0.9, 0.1]])
    # t = 0.5: label 0: tp 2 → 4/(4+1e-6); label 1: no positive, no prediction → 0/(1e-6) = 0
    assert metrics_at_threshold(s, y, 0.5)["maF1"] == pytest.approx(0.5 * 4 / (4 + 1e-6), abs=1e-15)
    # t = 0.2: label 1 predicted once (fp 1) → 0; label 0 unchanged
    assert metrics_at_threshold(s, y, 0.2)["maF1"] == pytest.approx(0.5 * 4 / (4 + 1e-6), abs=1e-15)
    # sklearn would say 0.5 * 1.0 (no smoothing); difference 1.25e-7
    assert f1_score(y, s >= 0.5, average="macro", zero_division=0) == pytest.approx(0.5)


def test_p_at_1_ties_go_to_highest_index():
    y = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    s = np.array([[0.5, 0.5, 0.1], [0.2, 0.7, 0.7], [0.3, 0.3, 0.3]])
    # row 0 → label 1 (false); row 1 → label 2 (true); row 2 has no labels → 0
    assert precision_at_1(s, y) == pytest.approx(1 / 3)
    # the reference's argsort(...)[:, ::-1][:, 0] gives the same picks when the sort is stable
    top = np.argsort(s, axis=1, kind="stable")[:, ::-1][:, 0]
    assert top.tolist() == [1, 2, 2]


def test_float32_thresholds_compared_in_float32():
    # float32(0.7) = 0.69999999 < 0.7 (float64); the reference (numpy, float32 scores) predicts it
    s = np.array([[np.float32(0.7), 0.2]], dtype=np.float32)
    y = np.array([[1, 0]])
    assert metrics_at_threshold(s, y, 0.7)["miF1"] == 1.0
    assert metrics_at_threshold(s.astype(np.float64), y, 0.7)["miF1"] == 0.0


def test_thresholds_are_i_over_10():
    assert THRESHOLDS == tuple(i / 10.0 for i in range(1, 10))
    assert THRESHOLDS[2] == 0.3  # not 0.1 * 3 = 0.30000000000000004


def test_all_empty_predictions():
    y = np.array([[1, 0], [0, 1]])
    s = np.array([[0.01, 0.0], [0.0, 0.05]])  # below every threshold
    for m in threshold_sweep(s, y).values():
        assert m.shape == (9,)
    res = metrics_at_threshold(s, y, 0.1)
    assert res["miF1"] == 0.0 and res["maF1"] == 0.0 and res["ebF1"] == 0.0
    assert res["HA"] == 0.5
    assert res["mAP"] == 1.0 and res["p_at_1"] == 1.0


# --------------------------------------------------------------------------- val-threshold protocol


def test_val_threshold_differs_from_test_best():
    val_y = np.array([[1], [0]])
    val_s = np.array([[0.65], [0.55]])  # val miF1: 2/3 for t<=0.5, 1 at t=0.6, 0 from 0.7
    y = np.array([[1], [0]])
    s = np.array([[0.45], [0.2]])  # test best at 0.3/0.4 (miF1 1), nothing predicted at 0.6
    paper, paper_thr = compute_metrics_with_thresholds(s, y)
    assert paper_thr["miF1"] == 0.3 and paper["miF1"] == 1.0 and paper["HA"] == 1.0
    honest = compute_metrics(s, y, protocol="val-threshold", val_scores=val_s, val_labels=val_y)
    assert honest["threshold"] == 0.6
    assert honest["miF1"] == 0.0 and honest["HA"] == 0.5 and honest["maF1"] == 0.0
    assert honest["ebF1"] == 0.0  # sample 0 (truth, no prediction) 0; sample 1 empty-empty dropped
    assert honest["mAP"] == paper["mAP"] and honest["p_at_1"] == paper["p_at_1"]
    assert list(honest) == list(METRIC_KEYS) + ["threshold"]


def test_val_threshold_criteria():
    s, y = _random_case(7, n=100)
    vs, vy = _random_case(8, n=50)
    per = compute_metrics(s, y, "val-threshold", vs, vy, criterion="per-metric")
    chosen = select_thresholds(vs, vy, "per-metric")
    for m, t in chosen.items():
        assert per[f"threshold_{m}"] == t
        assert per[m] == pytest.approx(metrics_at_threshold(s, y, t)[m], abs=1e-12)
    ha = compute_metrics(s, y, "val-threshold", vs, vy, criterion="HA")
    assert ha["threshold"] == chosen["HA"]
    paper = compute_metrics(s, y)
    for m in ("HA", "ebF1", "miF1", "maF1"):
        assert per[m] <= paper[m] + 1e-12  # the paper protocol is the max over the grid on test


def test_val_threshold_errors():
    s, y = _random_case(1)
    with pytest.raises(UserError, match="validation"):
        compute_metrics(s, y, protocol="val-threshold")
    with pytest.raises(UserError, match="labels"):
        compute_metrics(s, y, "val-threshold", s[:, :3], y[:, :3])
    with pytest.raises(UserError, match="criterion"):
        compute_metrics(s, y, "val-threshold", s, y, criterion="f1")
    with pytest.raises(UserError, match="protocol"):
        compute_metrics(s, y, protocol="oracle")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        (np.array([[0.1, np.nan]]), np.array([[1, 0]]), "NaN"),
        (np.array([[0.1, np.inf]]), np.array([[1, 0]]), "infinite"),
        (np.array([[0.1, 1.5]]), np.array([[1, 0]]), r"\[0, 1\]"),
        (np.array([[-0.1, 0.5]]), np.array([[1, 0]]), r"\[0, 1\]"),
        (np.array([[0.1, 0.5]]), np.array([[1, 0, 0]]), "shape"),
        (np.array([0.1, 0.5]), np.array([1, 0]), "2-D"),
        (np.array([[0.1, 0.5]]), np.array([[2, 0]]), "0/1"),
        (np.array([[0.1, 0.5]]), np.array([[0, 0]]), "no positive"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "empty"),
        (np.array([["a", "b"]]), np.array([[1, 0]]), "numeric"),
    ],
)
def test_invalid_inputs(scores, labels, match):
    with pytest.raises(UserError, match=match):
        compute_metrics(scores, labels)


def test_accepts_bool_and_float_labels():
    s, y = _random_case(2)
    ref = compute_metrics(s, y)
    assert compute_metrics(s, y.astype(bool)) == ref
    assert compute_metrics(s, y.astype(np.float32)) == ref


def test_delicious_sized_input_is_fast():
    import time

    rng = np.random.default_rng(0)
    y = (rng.random((3181, 983)) < 0.02).astype(np.uint8)
    s = rng.random((3181, 983)).astype(np.float32)
    t0 = time.perf_counter()
    res = compute_metrics(s, y)
    assert time.perf_counter() - t0 < 20  # ~1 s on one core; generous for a shared machine
    assert set(res) == set(METRIC_KEYS)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shape", [(2, 3), (7, 4), (300, 50)])
def test_tracking_map_equals_scikit_learn(ties, shape):
    """The fine-tuning loop's vectorised mAP equals scikit-learn's per-label AP mean, tied scores
    (one threshold per distinct score) and labels without positives (AP 0) included."""
    from mulsupcon_ld.metrics import mean_average_precision, tracking_map

    rng = np.random.default_rng(sum(shape) + ties)
    s = rng.random(shape).astype(np.float32)
    if ties:
        s = np.round(s * 4) / 4                      # 5 distinct values: many ties
    y = (rng.random(shape) < 0.3).astype(np.uint8)
    y[:, 0] = 0                                      # a label without any positive
    y[0, 1] = 1
    assert tracking_map(s, y) == pytest.approx(mean_average_precision(s, y), rel=1e-12, abs=1e-12)
    if shape[0] >= 100:                              # it depends on how scores rank the labels
        assert tracking_map(s, y) != pytest.approx(tracking_map(s[::-1].copy(), y), abs=1e-6)
