"""The paper's six metrics (Section 4 "Metrics") under two evaluation protocols.

Metrics (keys as in the paper's tables): ``mAP``, ``p_at_1``, ``maF1``, ``miF1``, ``HA``, ``ebF1``.
``mAP`` and ``p_at_1`` rank the scores; the other four binarise them (``ŷ = score >= t``).

Protocols
---------
``paper``
    What the evaluation code of MulSupCon (williamzhangsjtu/MulSupCon, ``codes/metrics.py``,
    ``get_mlc_metrics``, itself adapted from C-GMVAE's ``evals.py``) does, and therefore what the
    paper's Tables 2–8 report: for each of HA, ebF1, miF1 and maF1 *separately*, the best value
    over the thresholds 0.1, 0.2, …, 0.9, chosen **on the evaluated (test) set itself**. Four
    metrics may thus use four different thresholds, each picked with knowledge of the test labels.
``val-threshold``
    The honest counterpart: the threshold is chosen on a validation set and then applied to the
    test set. By default one threshold (criterion ``miF1``: the grid value maximising validation
    micro-F1) is used for all four thresholded metrics; ``criterion`` selects another metric or
    ``"per-metric"`` (each metric gets its own validation-chosen threshold, the exact analogue of the
    paper protocol). Why micro-F1 by default: a deployed classifier has *one* decision rule; micro-F1
    pools every (sample, label) decision, so it is the least noisy of the four on small validation
    sets (Scene, Yeast), whereas HA rewards predicting almost nothing on sparse label matrices
    (Delicious: 19 of 983 labels per sample) and macro-F1 is dominated by rare labels with a handful
    of validation positives.

Definitions (identical to the reference code unless stated)
-----------------------------------------------------------
Thresholds
    ``THRESHOLDS = (1/10, 2/10, …, 9/10)`` computed as ``i / 10.0`` like the reference (so 0.3 is
    the double nearest to 0.3, not ``0.1 * 3``), and compared **in the scores' own floating dtype**
    (float32 scores are compared with ``float32(t)``, as numpy does in the reference). This matters
    only for scores exactly equal to a threshold, e.g. float32(0.7) < 0.7 in float64.
HA
    ``1 − mean over samples and labels of [y ≠ ŷ]`` (= ``1 − sklearn.metrics.hamming_loss``).
ebF1
    Per sample ``2·|y ∧ ŷ| / (|y| + |ŷ|)``; samples whose truth **and** prediction are both empty
    (0/0) are *dropped*, then the mean over the remaining samples. A sample with labels but an empty
    prediction (or the reverse) counts 0. This differs from sklearn's ``f1_score(average="samples")``
    only in those empty-empty samples (sklearn keeps them with its ``zero_division`` value).
miF1
    ``2·Σtp / (2·Σtp + Σfp + Σfn)`` over all samples and labels (= sklearn micro-F1). Always defined
    here because inputs are required to contain at least one positive (so the denominator is > 0).
maF1
    Mean over **all** labels of ``2·tp / (2·tp + fp + fn + 1e-6)``: a label with no positive and no
    prediction contributes 0 (not skipped, not 1), a label with no positive but some predictions
    contributes 0 too. The ``1e-6`` also shrinks every other label's F1 by a relative ≤ 1e-6/(2tp+fp+fn).
    (The reference computes in float32; we use float64 — differences are below 1e-6.)
mAP
    Mean over **all** labels of ``sklearn.metrics.average_precision_score`` for that label (no
    interpolation). A label with **no positive** in the evaluated set contributes **0.0**: that is
    what the reference's ``average_precision_score(target, output, average=None)`` returns for it
    with scikit-learn ≥ 1.1 (scikit-learn PR #19085 sets recall to 1 and warns "No positive class
    found in y_true"; verified with the installed 1.9.1; before 1.1 it returned nan). We do not call
    scikit-learn for such labels: the 0.0 is set explicitly, so the result does not depend on the
    scikit-learn version and no warning reaches the user. ``no_positive="skip"`` in
    :func:`mean_average_precision` gives the mean over labels that have positives instead.
    A label whose samples are all positive gets AP = 1.
p_at_1
    Share of samples whose top-scored label is a true label (a sample without labels counts 0).
    **Ties** for the top score are broken towards the **highest label index**: the reference takes
    ``np.argsort(scores, axis=1)[:, ::-1][:, 0]``, which with a stable sort is the last of the tied
    maxima; numpy's default sort is not guaranteed stable, so we make that rule explicit and
    deterministic (``C − 1 − argmax(scores[:, ::-1])``).
Best threshold
    When several grid thresholds give the same best value, the smallest one is reported.

Inputs (validated, violations raise :class:`~mulsupcon_ld.errors.UserError`): ``scores`` and
``labels`` 2-D ``[N, C]`` of equal shape, N ≥ 1, C ≥ 1; labels only 0/1 (bool, int or float) with
at least one positive overall (otherwise ebF1/miF1 are 0/0); scores real, finite (no NaN/inf) and in
[0, 1]. Samples without labels and labels without positives are allowed (see above).
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

from .errors import UserError
from .names import METRIC_KEYS, PROTOCOLS

THRESHOLDS: tuple[float, ...] = tuple(i / 10.0 for i in range(1, 10))
THRESHOLD_METRICS: tuple[str, ...] = ("HA", "ebF1", "miF1", "maF1")
CRITERIA: tuple[str, ...] = ("miF1", "ebF1", "maF1", "HA", "per-metric")
DEFAULT_CRITERION = "miF1"
MACRO_F1_EPS = 1e-6

__all__ = [
    "tracking_map",
    "THRESHOLDS", "METRIC_KEYS", "THRESHOLD_METRICS", "PROTOCOLS", "CRITERIA", "DEFAULT_CRITERION",
    "validate_inputs", "average_precision_per_label", "mean_average_precision", "precision_at_1",
    "threshold_sweep", "metrics_at_threshold", "select_thresholds", "compute_metrics",
    "compute_metrics_with_thresholds",
]


# ----------------------------------------------------------------------------- validation


def validate_inputs(scores, labels, scores_name: str = "scores",
                    labels_name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Check and convert ``scores``/``labels``; return ``(scores, labels_bool)``.

    ``scores`` keep a float32/float64 dtype (other numeric dtypes become float64) so thresholds are
    compared in the dtype the model produced. ``labels`` become ``bool``. The names appear in the
    error messages (the CLI passes the file paths).
    """
    s = np.asarray(scores)
    y = np.asarray(labels)
    for arr, name in ((s, scores_name), (y, labels_name)):
        if arr.ndim != 2:
            raise UserError(f"{name} must be a 2-D [samples, labels] array, got shape {arr.shape}")
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise UserError(f"{name} is empty (shape {arr.shape})")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) \
                or np.issubdtype(arr.dtype, np.complexfloating):
            raise UserError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if s.shape != y.shape:
        raise UserError(f"{scores_name} has shape {s.shape} but {labels_name} has shape {y.shape}; "
                        "they must match ([samples, labels])")

    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    nan = np.isnan(s)
    if nan.any():
        r, c = np.argwhere(nan)[0]
        raise UserError(f"{scores_name} contains {int(nan.sum())} NaN value(s) (first at sample {r}, "
                        f"label {c}); the metrics need finite probabilities in [0, 1]")
    inf = np.isinf(s)
    if inf.any():
        r, c = np.argwhere(inf)[0]
        raise UserError(f"{scores_name} contains {int(inf.sum())} infinite value(s) (first at sample "
                        f"{r}, label {c}); the metrics need finite probabilities in [0, 1]")
    lo, hi = float(s.min()), float(s.max())
    if lo < 0.0 or hi > 1.0:
        raise UserError(f"{scores_name} must be probabilities in [0, 1] but range over "
                        f"[{lo:.6g}, {hi:.6g}]; apply a sigmoid to logits first")

    if y.dtype != np.bool_:
        bad = (y != 0) & (y != 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise UserError(f"{labels_name} must contain only 0/1, found {y[r, c]!r} at sample {r}, "
                            f"label {c}")
        y = y == 1
    if not y.any():
        raise UserError(f"{labels_name} contains no positive entry at all; ebF1 and miF1 are "
                        "undefined (0/0) — is this the right file?")
    return s, y


def _validated(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    return validate_inputs(scores, labels)


def _check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise UserError(f"thresholds must be a non-empty strictly increasing sequence, got {thresholds!r}")
    return t


# ----------------------------------------------------------------------------- ranking metrics


def average_precision_per_label(scores, labels) -> np.ndarray:
    """Per-label AP ``[C]`` from ``sklearn.metrics.average_precision_score``.

    Labels with no positive get exactly 0.0 without calling scikit-learn (see module docstring).
    """
    s, y = _validated(scores, labels)
    return _ap_per_label(s, y)


def _ap_per_label(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    from sklearn.metrics import average_precision_score

    ap = np.zeros(y.shape[1], dtype=np.float64)
    has_pos = y.any(axis=0)
    if has_pos.any():
        with warnings.catch_warnings():
            # nothing is expected here (no-positive labels are excluded); keep the user's stderr clean
            warnings.simplefilter("ignore")
            # C-ordered uint8: scikit-learn's per-column loop is far slower on a bool matrix or on the
            # Fortran-ordered arrays that y[:, mask] produces (docs/performance.md, "AP on C-ordered uint8 labels")
            yc = np.ascontiguousarray(y[:, has_pos], dtype=np.uint8)
            sc = np.ascontiguousarray(s[:, has_pos])
            ap[has_pos] = average_precision_score(yc, sc, average=None)
    return ap


def mean_average_precision(scores, labels, no_positive: str = "zero") -> float:
    """mAP: mean of :func:`average_precision_per_label`.

    ``no_positive="zero"`` (the paper's code): labels without positives count as AP 0 in the mean.
    ``no_positive="skip"``: the mean is over labels with at least one positive only.
    """
    s, y = _validated(scores, labels)
    ap = _ap_per_label(s, y)
    if no_positive == "zero":
        return float(ap.mean())
    if no_positive == "skip":
        return float(ap[y.any(axis=0)].mean())
    raise UserError(f"no_positive must be 'zero' or 'skip', got {no_positive!r}")


def tracking_map(scores, labels) -> float:
    """mAP (labels without positives count 0) for the per-epoch validation curve of fine-tuning.

    Equal to :func:`mean_average_precision` (scikit-learn's ``average_precision_score``: one
    threshold per distinct score, AP = sum over thresholds of (R_t - R_{t-1}) P_t) up to float
    summation order, but one sort of all columns at once instead of scikit-learn's per-column loop,
    many times slower on Delicious' validation split (2,584 x 983), a cost the 100 fine-tuning epochs
    of every run paid (docs/performance.md, "Tracking mAP in one sort"). Written by hand for that
    reason; tests/test_metrics.py checks it against scikit-learn, ties included. Reported metrics keep
    scikit-learn (:func:`compute_metrics`).
    """
    s, y = _validated(scores, labels)
    n = y.shape[0]
    st, yt = np.ascontiguousarray(s.T), np.ascontiguousarray(y.T)        # one row per label
    order = np.argsort(-st, axis=1)     # order inside a group of ties does not matter: see `end`
    ss = np.take_along_axis(st, order, 1)
    tp = np.cumsum(np.take_along_axis(yt, order, 1), axis=1, dtype=np.float64)
    end = np.ones(ss.shape, dtype=bool)                    # last entry of each group of tied scores
    end[:, :-1] = ss[:, :-1] != ss[:, 1:]
    before = np.zeros_like(tp)                             # tp at the previous threshold
    before[:, 1:] = np.maximum.accumulate(np.where(end, tp, 0.0), axis=1)[:, :-1]
    precision = tp / np.arange(1, n + 1, dtype=np.float64)
    npos = tp[:, -1]
    gain = np.where(end, (tp - before) * precision, 0.0).sum(1)
    return float(np.where(npos > 0, gain / np.maximum(npos, 1.0), 0.0).mean())


def precision_at_1(scores, labels) -> float:
    """Share of samples whose top-scored label is true; ties → highest label index (module doc)."""
    s, y = _validated(scores, labels)
    return _p_at_1(s, y)


def _p_at_1(s: np.ndarray, y: np.ndarray) -> float:
    c = s.shape[1]
    top = c - 1 - np.argmax(s[:, ::-1], axis=1)  # argmax takes the first max → last in original order
    return float(y[np.arange(s.shape[0]), top].mean())


# ----------------------------------------------------------------------------- thresholded metrics


def _rev_cumsum_counts(keys: np.ndarray, groups: int, nbins: int) -> np.ndarray:
    """counts[g, b] = #entries of group g with bin >= b, for b = 1..nbins-1 → shape [groups, nbins-1]."""
    hist = np.bincount(keys, minlength=groups * nbins).reshape(groups, nbins)
    ge = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]
    return ge[:, 1:]


def _sweep(s: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """HA, ebF1, miF1, maF1 at every threshold at once, each an array ``[T]``.

    Vectorised without a [T, N, C] tensor: each score gets the number of thresholds it reaches
    (``bins``; prediction at threshold k ⇔ bins > k), then per-label and per-sample histograms of
    ``bins`` (all entries and positive entries) give tp and predicted counts for all T thresholds.
    Integer counts, so the result is exact up to the final float64 divisions.
    """
    n, c = s.shape
    t = thresholds.astype(s.dtype)  # compare in the scores' dtype, like numpy in the reference
    nb = t.size + 1
    bins = np.searchsorted(t, s, side="right")  # number of thresholds <= score, in 0..T

    lab_key = bins + nb * np.arange(c)[None, :]
    pred_l = _rev_cumsum_counts(lab_key.ravel(), c, nb)                 # [C, T]
    tp_l = _rev_cumsum_counts(lab_key[y], c, nb)                        # [C, T]
    pos_l = y.sum(axis=0)[:, None]                                      # [C, 1]
    fp_l = pred_l - tp_l
    fn_l = pos_l - tp_l

    smp_key = bins + nb * np.arange(n)[:, None]
    pred_s = _rev_cumsum_counts(smp_key.ravel(), n, nb)                 # [N, T]
    tp_s = _rev_cumsum_counts(smp_key[y], n, nb)                        # [N, T]
    true_s = y.sum(axis=1)[:, None]                                     # [N, 1]

    tp, fp, fn = (a.sum(axis=0).astype(np.float64) for a in (tp_l, fp_l, fn_l))
    ha = 1.0 - (fp + fn) / float(n * c)
    mi = 2.0 * tp / (2.0 * tp + fp + fn)
    ma = np.mean(2.0 * tp_l / (2.0 * tp_l + fp_l + fn_l + MACRO_F1_EPS), axis=0)
    den = (true_s + pred_s).astype(np.float64)
    keep = den > 0
    per_sample = np.divide(2.0 * tp_s, den, out=np.zeros_like(den), where=keep)
    eb = per_sample.sum(axis=0) / keep.sum(axis=0)  # keep.sum > 0: some sample has a true label
    return {"HA": ha, "ebF1": eb, "miF1": mi, "maF1": ma}


def threshold_sweep(scores, labels, thresholds: Sequence[float] = THRESHOLDS) -> dict[str, np.ndarray]:
    """HA, ebF1, miF1 and maF1 at each threshold (prediction = score >= t), arrays of ``len(thresholds)``."""
    s, y = _validated(scores, labels)
    return _sweep(s, y, _check_thresholds(thresholds))


def metrics_at_threshold(scores, labels, threshold: float) -> dict[str, float]:
    """All six metrics with one threshold for HA/ebF1/miF1/maF1 (mAP and p_at_1 ignore it)."""
    s, y = _validated(scores, labels)
    sweep = _sweep(s, y, _check_thresholds([threshold]))
    out = {"mAP": float(_ap_per_label(s, y).mean()), "p_at_1": _p_at_1(s, y)}
    out.update({m: float(sweep[m][0]) for m in THRESHOLD_METRICS})
    return {k: out[k] for k in METRIC_KEYS}


def _best_index(values: np.ndarray) -> int:
    # first maximum = smallest threshold among equal best values
    return int(np.argmax(values))


def select_thresholds(scores, labels, criterion: str = "per-metric",
                      thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
    """The grid threshold each thresholded metric uses when chosen on ``(scores, labels)``.

    ``criterion="per-metric"``: each of HA/ebF1/miF1/maF1 gets its own best threshold (the paper's
    rule when applied to the test set). A metric name: that metric's best threshold, for all four.
    Ties → the smallest threshold.
    """
    s, y = _validated(scores, labels)
    t = _check_thresholds(thresholds)
    return _select(_sweep(s, y, t), _check_criterion(criterion), t)


def _check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise UserError(f"unknown threshold criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    return criterion


def _select(sweep: Mapping[str, np.ndarray], criterion: str, t: np.ndarray) -> dict[str, float]:
    if criterion == "per-metric":
        return {m: float(t[_best_index(sweep[m])]) for m in THRESHOLD_METRICS}
    best = float(t[_best_index(sweep[criterion])])
    return {m: best for m in THRESHOLD_METRICS}


# ----------------------------------------------------------------------------- protocols


def compute_metrics_with_thresholds(
    scores, labels, protocol: str = "paper", val_scores=None, val_labels=None,
    criterion: str = DEFAULT_CRITERION, thresholds: Sequence[float] = THRESHOLDS,
) -> tuple[dict[str, float], dict[str, float]]:
    """Like :func:`compute_metrics`, also returning ``{metric: threshold used}`` for HA/ebF1/miF1/maF1."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    t = _check_thresholds(thresholds)
    s, y = validate_inputs(scores, labels)
    test_sweep = _sweep(s, y, t)
    out: dict[str, float] = {"mAP": float(_ap_per_label(s, y).mean()), "p_at_1": _p_at_1(s, y)}
    extra: dict[str, float] = {}

    if protocol == "paper":
        chosen = _select(test_sweep, "per-metric", t)
    else:
        _check_criterion(criterion)
        if val_scores is None or val_labels is None:
            raise UserError("the val-threshold protocol needs validation scores and labels "
                            "(--val-scores V.npy --val-labels W.npy)")
        vs, vy = validate_inputs(val_scores, val_labels, "validation scores", "validation labels")
        if vs.shape[1] != s.shape[1]:
            raise UserError(f"validation arrays have {vs.shape[1]} labels but the test arrays have "
                            f"{s.shape[1]}; they must describe the same label set")
        chosen = _select(_sweep(vs, vy, t), criterion, t)
        if criterion == "per-metric":
            extra = {f"threshold_{m}": chosen[m] for m in THRESHOLD_METRICS}
        else:
            extra = {"threshold": chosen[THRESHOLD_METRICS[0]]}

    index = {float(v): i for i, v in enumerate(t)}
    for m in THRESHOLD_METRICS:
        out[m] = float(test_sweep[m][index[chosen[m]]])
    result = {k: out[k] for k in METRIC_KEYS}
    result.update(extra)
    return result, chosen


def compute_metrics(scores, labels, protocol: str = "paper", val_scores=None, val_labels=None,
                    criterion: str = DEFAULT_CRITERION,
                    thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
    """The six metrics of ``scores`` ``[N, C]`` (probabilities) against ``labels`` ``[N, C]`` (0/1).

    ``protocol="paper"``: HA/ebF1/miF1/maF1 each at its own best threshold on these very arrays
    (the paper's numbers). Returns exactly the keys ``METRIC_KEYS``.

    ``protocol="val-threshold"``: thresholds chosen on ``(val_scores, val_labels)`` by ``criterion``
    (default ``"miF1"``; any of ``CRITERIA``) and applied to ``(scores, labels)``. Returns the six
    metrics plus ``"threshold"`` (single criterion) or ``"threshold_HA"``, ``"threshold_ebF1"``,
    ``"threshold_miF1"``, ``"threshold_maF1"`` (``criterion="per-metric"``).

    mAP and p_at_1 do not depend on a threshold and are the same under both protocols. Validation
    arrays passed with ``protocol="paper"`` are ignored.
    Edge cases (labels without positives, samples without labels, ties, empty predictions) are
    described in the module docstring.
    """
    return compute_metrics_with_thresholds(scores, labels, protocol, val_scores, val_labels,
                                           criterion, thresholds)[0]
