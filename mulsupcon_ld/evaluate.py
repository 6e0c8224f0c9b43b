"""``mulsupcon-ld evaluate``: the six metrics of a saved score matrix.

    mulsupcon-ld evaluate --scores S.npy --labels Y.npy [--protocol paper|val-threshold]
                          [--val-scores V.npy --val-labels W.npy] [--json]

``--json`` prints the dict returned by :func:`mulsupcon_ld.metrics.compute_metrics` (the six metrics;
under ``val-threshold`` also ``threshold``); without it a small table with the threshold each
thresholded metric used. Every input problem is a :class:`UserError` (one ``error:`` line, exit 2).
The val-threshold criterion is ``args.criterion`` when the parser defines ``--criterion``, else
:data:`mulsupcon_ld.metrics.DEFAULT_CRITERION` (``miF1``).
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError
from .metrics import DEFAULT_CRITERION, METRIC_KEYS, compute_metrics_with_thresholds, validate_inputs


def load_array(path: str | None, flag: str) -> np.ndarray:
    """Load one ``.npy`` array (no pickles); any failure becomes a :class:`UserError` naming ``flag``."""
    if path is None:
        raise UserError(f"{flag} is required")
    p = Path(path)
    if not p.exists():
        raise UserError(f"{flag} file not found: {p}")
    if p.is_dir():
        raise UserError(f"{flag} must be a .npy file, but {p} is a directory")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot read {flag} {p} as a .npy array ({exc}); save it with numpy.save") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise UserError(f"{flag} {p} is an .npz archive; pass a single .npy array (numpy.save)")
    return arr


def _table(result: dict, thresholds: dict, protocol: str, criterion: str, note: str | None) -> str:
    lines = [f"protocol: {protocol}" + (f" (criterion: val {criterion})" if protocol == "val-threshold" else "")]
    lines.append(f"{'metric':<8}{'value':>10}  threshold")
    for k in METRIC_KEYS:
        thr = thresholds.get(k)
        where = "" if thr is None else (f"{thr:.1f} (best on these labels)" if protocol == "paper"
                                        else f"{thr:.1f} (chosen on validation)")
        lines.append(f"{k:<8}{result[k]:>10.4f}  {where or '-'}")
    if note:
        lines.append(note)
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    protocol = getattr(args, "protocol", "paper") or "paper"
    criterion = getattr(args, "criterion", None) or DEFAULT_CRITERION
    val_scores_path = getattr(args, "val_scores", None)
    val_labels_path = getattr(args, "val_labels", None)
    if (val_scores_path is None) != (val_labels_path is None):
        raise UserError("--val-scores and --val-labels must be given together")
    if protocol == "val-threshold" and val_scores_path is None:
        raise UserError("--protocol val-threshold needs --val-scores V.npy and --val-labels W.npy "
                        "(validation scores and labels to choose the threshold on)")

    scores = load_array(args.scores, "--scores")
    labels = load_array(args.labels, "--labels")
    val_scores = val_labels = None
    note = None
    if val_scores_path is not None:
        if protocol == "val-threshold":
            val_scores = load_array(val_scores_path, "--val-scores")
            val_labels = load_array(val_labels_path, "--val-labels")
        else:
            note = "note: --val-scores/--val-labels are not used by the paper protocol"

    validate_inputs(scores, labels, f"--scores {args.scores}", f"--labels {args.labels}")
    if val_scores is not None:
        validate_inputs(val_scores, val_labels, f"--val-scores {val_scores_path}",
                        f"--val-labels {val_labels_path}")

    result, thresholds = compute_metrics_with_thresholds(
        scores, labels, protocol=protocol, val_scores=val_scores, val_labels=val_labels,
        criterion=criterion)
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        print(_table(result, thresholds, protocol, criterion, note))
    return 0
