"""The closed vocabularies of the harness: one home for each list (core layer, imports nothing).

The CLI's choices, the loss dispatch, the run planner, the paper-number parser, the aggregator
and the workflow's wildcard patterns all read these tuples, so adding a method or an ablation is
one edit here plus its implementation.
"""

from __future__ import annotations

# Section 3: MulSupCon (eq. 1) and its two label-distribution variants (eqs. 9 and 11)
# plus our control "bce": the same network fine-tuned from random initialisation, no pretraining,
# and "asl": the same, fine-tuned with the asymmetric loss (Ridnik et al. 2021; the paper quotes ASL)
METHODS: tuple[str, ...] = ("mulsupcon", "rld", "cld", "bce", "asl")
LD_METHODS: tuple[str, ...] = ("rld", "cld")
# name in the paper's tables (Tables 2-4)
PAPER_METHOD: dict[str, str] = {"mulsupcon": "MulSupCon", "rld": "MulSupCon_RLD", "cld": "MulSupCon_CLD"}
# our control rows (never a paper row) and their label in Tables 2-4
CONTROL_METHOD: dict[str, str] = {"bce": "BCE (no pretraining, ours)", "asl": "ASL (ours)"}
# methods without the label-distribution loss (alpha, beta are not used)
NO_LD_METHODS: tuple[str, ...] = ("mulsupcon", "bce", "asl")
# methods fine-tuned from the random initialisation, with no pretraining phase
NO_PRETRAIN_METHODS: tuple[str, ...] = ("bce", "asl")
# Figure 2: which terms of eqs. 9/11 are dropped
ABLATIONS: tuple[str, ...] = ("none", "no-alpha", "no-beta", "no-all")
SCALES: tuple[str, ...] = ("paper", "smoke")
# evaluation protocols (docs/method.md): the paper's fixed 0.5 threshold, or one picked on val
PROTOCOLS: tuple[str, ...] = ("paper", "val-threshold")
# metric keys in the order metrics.json holds them
METRIC_KEYS: tuple[str, ...] = ("mAP", "p_at_1", "maF1", "miF1", "HA", "ebF1")
# the same metrics in the paper's column order (Tables 2-4)
TABLE_METRICS: tuple[str, ...] = ("HA", "ebF1", "miF1", "maF1", "p_at_1", "mAP")
# pretraining step implementations (mulsupcon_ld/hotpath.py): the reference arithmetic, or the fast lane
HOTPATHS: tuple[str, ...] = ("reference", "fast")
# what the networks compute in: fp32, bf16 autocast, or chosen per machine and shape (mulsupcon_ld/precision.py)
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")
# --method asl: how its loss is reduced, and whether the gradient flows through its focusing weights
# (mulsupcon_ld/asl.py; the official training's: "sum", "detached")
ASL_REDUCTIONS: tuple[str, ...] = ("sum", "mean")
ASL_FOCAL_WEIGHTS: tuple[str, ...] = ("detached", "through")
# where image augmentation runs (settings data.augment_on; data/images.py, device_augment.py)
AUGMENT_ON: tuple[str, ...] = ("cpu", "device", "auto")
# file names of one run's output folder
METRICS_FILE = "metrics.json"
PRETRAINED_FILE = "pretrained.pt"
