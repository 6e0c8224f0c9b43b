"""Per-dataset hyperparameters of Section 4 ("Settings"), in one table, each value citing the paper.

:func:`mulsupcon_ld.run_settings.resolve_settings` turns a row into one run's frozen
:class:`~mulsupcon_ld.run_settings.RunSettings` (preset, scale, ``--set`` overrides, validation);
``mulsupcon-ld settings --dataset NAME [--json]`` prints it. Values the paper does not state are
marked ``ours`` below and explained in docs/method.md (Part 2).

Quotes (Section 4, Settings):

[I1] "During the pretraining phase, we configure the number of epochs to 400 and utilize AdamW and
     CosineAnnealingWarmRestarts as the optimizer and scheduler. The batch size for all image
     datasets is 128."
[I2] "… we use a momentum of 0.999, a temperature parameter of 0.1, a queue size of 4096, except
     MIRFLICKR is 8192 and PASCAL is 1024, a learning rate of 0.00004, and a weight decay of 0.0001.
     The parameters in the learning rate scheduler are set to 50, 2, and 0.00001, respectively."
[I3] "After the pretraining phase, the learning rate is set to 0.0004, the weight decay to 0.00001,
     and the learning rate scheduler parameters to 25, 2, and 0.0001, respectively."
[V1] "The batch size is 256 for Bookmarks and Scene, 128 for Delicious and Yeast, and 512 for
     Mediamill."
[V2] "… we randomly mask 0.5 of the elements. we use a momentum of 0.999, a temperature parameter
     of 0.1, a queue size of 8192 except Yeast is 256, Scene is 1024 and Delicious is 4096, a
     learning rate of 0.00004, and a weight decay of 0.0001. The parameters in the learning rate
     scheduler are set to 50, 2, and 0.00001, respectively."
[V3] "After the pretraining phase, the learning rate is set to 0.0004, weight decay to 0.00001,
     except Mediamill is 0.004 and 0.0001."
[V4] "All masks are set to 0.4, except for Delicious and Mediamill, which are set to 0.2 and 0."
[V5] "The parameters of Scene and Bookmarks in the learning rate scheduler are set to 25, 2, and
     0.0001. The parameters of Scene and Delicious in the learning rate scheduler are set to 50, 2,
     and 0.0001. The parameters of Mediamill in the learning rate scheduler are set to 50, 2, and
     0.001."
[E]  "After pretraining, we train the model using BCE with the number of epochs set to 100 for all
     datasets."
[S]  Section 3.2: "We set σ to 0.01, following DLDL."
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from .errors import UserError
from .names import ASL_FOCAL_WEIGHTS as FOCAL_WEIGHTS, ASL_REDUCTIONS as REDUCTIONS, AUGMENT_ON, HOTPATHS, PRECISIONS
from .registry import canonical_name as registry_name

# --------------------------------------------------------------------------------------------
# The table. One row per dataset; every number is from Section 4 unless marked "ours".
#   batch  : pretraining batch size [I1]/[V1]; fine-tuning reuses it (ours: not stated)
#   queue  : MoCo queue size [I2]/[V2]
#   ft_lr, ft_wd : fine-tuning AdamW [I3]/[V3]
#   ft_mask: fine-tuning masking probability [V4] (vector only; images use images.py's augmentation)
#   ft_sched: fine-tuning CosineAnnealingWarmRestarts (T_0, T_mult, eta_min) [I3]/[V5]
#   loss_options: ours, where a dataset's own validation split chose another reading of eqs. 12-15
#            than the printed one (LD_READINGS below; absent = the printed form)
# --------------------------------------------------------------------------------------------
TABLE: dict[str, dict[str, Any]] = {
    # vector datasets ([V1]–[V5])
    "yeast":     dict(kind="vector", batch=128, queue=256,  ft_lr=4e-4, ft_wd=1e-5, ft_mask=0.4,
                      # [V5] lists Scene twice and Yeast never; we read the 2nd "Scene" as Yeast
                      # (the text grouped "Delicious and Yeast" for the batch size) -> 50, 2, 1e-4
                      ft_sched=(50, 2, 1e-4)),
    "scene":     dict(kind="vector", batch=256, queue=1024, ft_lr=4e-4, ft_wd=1e-5, ft_mask=0.4,
                      ft_sched=(25, 2, 1e-4)),   # [V5] "Scene and Bookmarks … 25, 2, 0.0001"
    "bookmarks": dict(kind="vector", batch=256, queue=8192, ft_lr=4e-4, ft_wd=1e-5, ft_mask=0.4,
                      ft_sched=(25, 2, 1e-4)),   # [V5] "Scene and Bookmarks … 25, 2, 0.0001"
    "delicious": dict(kind="vector", batch=128, queue=4096, ft_lr=4e-4, ft_wd=1e-5, ft_mask=0.2,
                      ft_sched=(50, 2, 1e-4),    # [V5] "Scene and Delicious … 50, 2, 0.0001"
                      loss_options="normalised"),  # ours: Delicious' validation split (docs/method.md,
                                                 # "Readings at many labels"): val mAP CLD .1762 vs .1744,
                                                 # RLD .1780 vs .1730, val BCE lower, 3 of 3 seeds each
    "mediamill": dict(kind="vector", batch=512, queue=8192, ft_lr=4e-3, ft_wd=1e-4, ft_mask=0.0,
                      ft_sched=(50, 2, 1e-3)),   # [V3] lr/wd exception, [V4] mask 0, [V5] 50, 2, 0.001
    # image datasets ([I1]–[I3])
    "coco":      dict(kind="image", batch=128, queue=4096, ft_lr=4e-4, ft_wd=1e-5, ft_mask=0.0,
                      ft_sched=(25, 2, 1e-4)),
    "nuswide":   dict(kind="image", batch=128, queue=4096, ft_lr=4e-4, ft_wd=1e-5, ft_mask=0.0,
                      ft_sched=(25, 2, 1e-4)),
    "mirflickr": dict(kind="image", batch=128, queue=8192, ft_lr=4e-4, ft_wd=1e-5, ft_mask=0.0,
                      ft_sched=(25, 2, 1e-4)),
    "pascal":    dict(kind="image", batch=128, queue=1024, ft_lr=4e-4, ft_wd=1e-5, ft_mask=0.0,
                      ft_sched=(25, 2, 1e-4)),
}

# Named readings of eqs. 12-15 (losses.LDOptions fields) that a dataset row may choose.
LD_READINGS: dict[str, dict[str, str]] = {
    "normalised": {"pos_norm": "per_label", "beta_per": "batch", "reduction": "mean"},
}

# Shared by every dataset of a kind.
COMMON = {
    "pretrain_epochs": 400,          # [I1] "the number of epochs to 400"; vector: "We set the number of epochs to 400"
    "finetune_epochs": 100,          # [E]
    "momentum": 0.999,               # [I2]/[V2]
    "temperature": 0.1,              # [I2]/[V2]
    "pretrain_lr": 4e-5,             # [I2]/[V2] "a learning rate of 0.00004"
    "pretrain_wd": 1e-4,             # [I2]/[V2] "a weight decay of 0.0001"
    "pretrain_sched": (50, 2, 1e-5),  # [I2]/[V2] "50, 2, and 0.00001"
    "pretrain_mask": 0.5,            # [V2] "we randomly mask 0.5 of the elements" (vector only)
    "sigma": 0.01,                   # [S]
}

# Default α, β (ours, inferred): the paper does not state them for Tables 2–4, but Table 2's CLD
# Scene column equals Table 5(c)/6(d)'s cell α=0.1, β=1 and Table 4's CLD PASCAL column equals
# Table 7(d)'s cell α=1, β=0.001.
DEFAULT_ALPHA_BETA = {"vector": (0.1, 1.0), "image": (1.0, 0.001)}

# the schedulers' keys are the fields of run_settings.CosineSchedule / PlateauSchedule; this one is
# the example an error message shows
PLATEAU_EXAMPLE = {"name": "ReduceLROnPlateau", "factor": 0.1, "patience": 2, "cooldown": 1, "threshold": 0.001}

# torch.compile modes accepted by the per-phase "compile" settings (besides false / true = "default").
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# Datasets whose validation split showed bf16 equivalent to fp32, so that precision="auto" may pick
# bf16 for them (ours; benchmarks/results/bf16_validation_cpu.md, docs/method.md "precision"): paper
# budget, CLD and MulSupCon, seeds 0-2, Intel Xeon (AMX), val mAP bf16 - fp32 within one pooled seed sd.
# Elsewhere "auto" is fp32 without measuring.
BF16_VALIDATED: dict[str, str] = {
    "yeast": "val mAP CLD .4618 ± .0098 bf16 vs .4570 ± .0035 fp32; MulSupCon .4630 ± .0005 vs .4632 ± .0007",
    "scene": "val mAP CLD .8559 ± .0016 bf16 vs .8560 ± .0015 fp32; MulSupCon .8549 ± .0025 vs .8548 ± .0026",
    "delicious": "val mAP CLD .1719 ± .0037 bf16 vs .1732 ± .0020 fp32; MulSupCon .1773 ± .0009 vs .1775 ± .0028",
}

# --scale smoke: a few epochs, for tests and CI.
SMOKE = {"pretrain.epochs": 3, "finetune.epochs": 3}

# --method asl: how the official ASL training builds its loss (github Alibaba-MIIL/ASL, train.py:
# AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05, disable_torch_grad_focal_loss=True); the loss
# is summed, src/loss_functions/losses.py). asl.py has the other forms ("through", "mean").
ASL_OFFICIAL = {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05, "reduction": "sum", "focal_weights": "detached"}

# Settings a method brings with it, applied before the user's --set (which still wins) and recorded in the
# run's config like any other setting. --method asl keeps the fine-tuning epoch of the highest validation
# mAP, as the official ASL training does (train.py, train_multi_label_coco: model-highest.ckpt is saved
# when validate_multi's mAP improves): with the focusing weights detached, the validation BCE our
# selection otherwise watches rises from the first epoch on, and it picked epoch 1 (docs/method.md, "ASL").
METHOD_SETTINGS: dict[str, dict[str, Any]] = {"asl": {"finetune.select": "val_mAP"}}

def canonical_name(dataset: str) -> str:
    """Table key of a dataset name (aliases resolved by :func:`registry.canonical_name`)."""
    key = registry_name(dataset)
    if key not in TABLE:
        raise UserError(f"no settings for dataset {dataset!r}; known: {', '.join(TABLE)} "
                        "(see `mulsupcon-ld datasets`)")
    return key


def _sched(t: tuple) -> dict[str, Any]:
    return {"name": "CosineAnnealingWarmRestarts", "T_0": t[0], "T_mult": t[1], "eta_min": t[2]}


def table_settings(dataset: str) -> dict[str, Any]:
    """The paper-preset, paper-scale settings dict of ``dataset`` (no preset, scale or overrides yet)."""
    key = canonical_name(dataset)
    row, c = TABLE[key], COMMON
    kind = row["kind"]
    alpha, beta = DEFAULT_ALPHA_BETA[kind]
    vector = kind == "vector"
    return {
        "dataset": key,
        "kind": kind,
        "scale": "paper",
        "preset": "paper",
        "model": {
            "backbone": "mlp" if vector else "resnet50",
            "hidden": [256, 512, 256],   # MulSupCon codes/backbone.py MLP (after C-GMVAE); mlp only
            "dropout": 0.2,              # idem
            "weights": None,             # resnet50: path of a local ImageNet state dict; None = random init
            "channels_last": not vector,
            "proj_dim": 256,             # MulSupCon codes/models.py: out_dim 256, n_hidden 1
            "proj_hidden_layers": 1,
            "proj_dropout": 0.1,
            "fc_input": "rep",           # ours: fc reads the backbone representation h ("proj": projection)
        },
        "pretrain": {
            "epochs": c["pretrain_epochs"],
            "batch_size": row["batch"],
            "queue_size": row["queue"],
            "momentum": c["momentum"],
            "temperature": c["temperature"],
            "mask": c["pretrain_mask"] if vector else 0.0,
            "optimizer": {"name": "AdamW", "lr": c["pretrain_lr"], "weight_decay": c["pretrain_wd"]},
            "scheduler": _sched(c["pretrain_sched"]),
            "scheduler_step": "epoch",   # ours: "epoch" (MulSupCon code) or "iter" (fractional epoch)
            "iters_per_epoch": None,     # ours: None = one pass over train (MulSupCon Yeast config: 1000)
            "drop_last": True,           # ours: contrastive batches are always full
            "keep": "last",              # ours: weights handed to fine-tuning: "last" epoch, or "best_train_loss"
                                         # (MulSupCon code: lowest running train loss, preset mulsupcon-official)
            "compile": False,            # ours: torch.compile the query/key encoders (true or a mode string)
            "hotpath": "fast",           # ours: fused Linear-ReLU-Dropout nodes, 16-bit dropout masks, fused AdamW,
                                         # lerp momentum (mulsupcon_ld/hotpath.py; validated against "reference",
                                         # the module-by-module arithmetic, in docs/workflow.md "Cost")
        },
        "finetune": {
            "epochs": c["finetune_epochs"],
            "batch_size": row["batch"],  # ours: not stated; the pretraining batch size
            "mask": row["ft_mask"] if vector else 0.0,
            "optimizer": {"name": "AdamW", "lr": row["ft_lr"], "weight_decay": row["ft_wd"]},
            "scheduler": _sched(row["ft_sched"]),
            "scheduler_step": "epoch",
            "iters_per_epoch": None,
            "select": "val_loss",        # ours: epoch with the lowest validation BCE (MulSupCon code); or "val_mAP"
            "backbone_lr_mult": 1.0,     # ours: lr multiple of everything but fc (MulSupCon code's lrp: 0.1)
            "early_stop_patience": None,  # ours: None = all epochs; N = stop after N epochs without a better
                                         # selection score (MulSupCon code: 20)
            "eval_batch_size": 1024 if vector else 256,
            "compile": False,            # ours: torch.compile the classifier (true or a mode string)
        },
        "loss": {
            "alpha": alpha,
            "beta": beta,
            "sigma": c["sigma"],
            # passed through to losses.ld_loss(options=…); None = the printed form
            "options": dict(LD_READINGS[row["loss_options"]]) if row.get("loss_options") else None,
            # --method asl (our control): the asymmetric loss as its authors train with it
            # (asl.py: γ₋ 4, γ₊ 0, clip 0.05 [official train.py]; focusing weights detached, summed)
            "asl": dict(ASL_OFFICIAL),
        },
        **({"data": {
            "standardize": True,         # ours: z-score features with train-split statistics. The paper
                                         # does not say; chosen on the VALIDATION split (BCE only, seed 0):
                                         # Scene val mAP .819 -> .873, Yeast .478 -> .490 (docs/method.md)
        }} if vector else {"data": {
            "image_size": None,          # None: 224 ("we will resize the images to 224×224"); synthetic: its own size
            "num_workers": None,         # None: data/images.py's default for the device
            "prefetch_factor": None,
            "augment_on": "auto",        # ours: SimCLR views made in DataLoader workers ("cpu"), batched on the
                                         # device ("device"), or "device" on CUDA only ("auto"); docs/images.md
            "precrop_size": None,        # ours: device path: workers resize the whole image to S × S
                                         # (None: image_size * 320 / 224)
        }}),
        "threads": None,                 # CPU threads for torch (None: torch's default); 1 is fastest for the
                                         # small MLPs on a shared CPU (docs/method.md (Part 2))
        "precision": "fp32",             # ours: fp32 by default, so that one command computes alike on every
                                         # machine; "bf16" = bf16 autocast for the networks (losses stay float32);
                                         # "auto" = bf16 where the CPU has it natively, a timing calibration finds
                                         # it faster and the dataset is in BF16_VALIDATED (precision.py). auto is
                                         # resolved before the run is hashed and recorded (experiment.py)
        "flush_denormal": True,          # ours: torch.set_flush_denormal at the process edge: subnormal floats
                                         # (< 1.2e-38) become 0. Without it Delicious' CLD backward slowed many-fold
                                         # in training (MKL sgemm on subnormal gradients; docs/method.md, "Subnormal
                                         # numbers"; docs/performance.md, "flush_denormal on by default"); false =
                                         # the IEEE arithmetic of runs before this setting (the snapshot's)
        "checkpoint_every": 1,           # epochs between resumable checkpoints in OUT/state/ …
        "checkpoint_seconds": 30,        # … and at least these seconds apart (0: every `checkpoint_every`
                                         # epochs): a small dataset's epoch is short, so a checkpoint at every
                                         # epoch was a large share of a run (docs/performance.md, "Checkpoints
                                         # by time"; docs/workflow.md, "Checkpoints"; train.CheckpointClock); the
                                         # last epoch is always written
        "log_every": 10,                 # epochs between plain progress lines when stderr is not a tty
    }


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_overrides(settings: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``"a.b.c=value"`` overrides (value parsed as JSON, else kept as a string)."""
    for item in overrides or ():
        if "=" not in item:
            raise UserError(f"override {item!r} is not KEY=VALUE (e.g. --set pretrain.epochs=10)")
        path, value = item.split("=", 1)
        keys = path.strip().split(".")
        node = settings
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise UserError(f"unknown setting {path!r}; see `mulsupcon-ld settings --dataset "
                                f"{settings.get('dataset', 'NAME')}` for the keys")
            node = node[k]
        if keys[-1] not in node:
            raise UserError(f"unknown setting {path!r}; see `mulsupcon-ld settings --dataset "
                            f"{settings.get('dataset', 'NAME')}` for the keys")
        node[keys[-1]] = _parse_value(value)
    return settings


# --------------------------------------------------------------------------------------------
# Presets: named sets of values applied over the table above. "paper" = the table as it is.
# "mulsupcon-official" = the published MulSupCon code's Yeast configs, point by point
# (github williamzhangsjtu/MulSupCon; [P] = codes/config/pretrain_yeast.yaml,
# [T] = codes/config/train_yeast.yaml, [M] = codes/main.py, [U] = codes/utils.py,
# [O] = codes/models.py; "l." = line). Values that already agree with the table are not repeated:
# queue 256 [P] l. 5, momentum 0.999 [P] l. 7, temperature 0.1 [P] l. 21, pretraining mask 0.5
# [P] l. 28, projection 256 × 1 hidden layer [P] l. 4, 6, selection by validation BCE [M] l. 387-389,
# 414-418. The published repository holds Yeast configs only; on another vector dataset the preset
# applies the same recipe (ours) over that dataset's queue size.
# --------------------------------------------------------------------------------------------
OFFICIAL_YEAST: dict[str, Any] = {
    "pretrain.epochs": 150,                   # [P] l. 13 n_epochs: 150
    "pretrain.iters_per_epoch": 1000,         # [P] l. 14 iters_per_epoch: 1000 (ignite epoch_length, [M] l. 209-210)
    "pretrain.batch_size": 64,                # [P] l. 16 batch_size: 64
    "pretrain.optimizer": {"name": "Adam",    # [P] l. 30 optimizer: Adam
                           "lr": 0.0004,      # [P] l. 32
                           "weight_decay": 0.00001},  # [P] l. 33
    "pretrain.scheduler": {"name": "CosineAnnealingWarmRestarts",  # [P] l. 34-38: 50, 2, 0.0001
                           "T_0": 50, "T_mult": 2, "eta_min": 0.0001},
    "pretrain.scheduler_step": "epoch",       # [M] l. 170-173: scheduler.step() at EPOCH_COMPLETED
    "pretrain.keep": "best_train_loss",       # [M] l. 157, 175-179 train_best by running loss; [U] l. 139-140 loads *best*
    "finetune.epochs": 30,                    # [T] l. 13 n_epochs: 30
    "finetune.iters_per_epoch": 50,           # [T] l. 14 iters_per_epoch: 50
    "finetune.batch_size": 32,                # [T] l. 16 batch_size: 32
    "finetune.mask": 0.0,                     # [T] l. 35 transform_kwargs p: 0
    "finetune.optimizer": {"name": "Adam",    # [T] l. 23 optimizer: Adam
                           "lr": 0.0004,      # [T] l. 25
                           "weight_decay": 0.0},  # [T] l. 24-25: no weight_decay (torch.optim.Adam default 0)
    "finetune.backbone_lr_mult": 0.1,         # [T] l. 22 lrp: 0.1; [M] l. 332-335; [O] l. 344-348
    "finetune.scheduler": {"name": "ReduceLROnPlateau",  # [T] l. 26-33 (mode min), stepped with the
                           "factor": 0.1, "patience": 2,  # validation BCE [M] l. 382-383
                           "cooldown": 1, "threshold": 0.001},
    "finetune.scheduler_step": "epoch",
    "finetune.early_stop_patience": 20,       # [T] l. 18 patience: 20; [M] l. 448-453 EarlyStopping on -val loss
}
PRESETS: dict[str, dict[str, Any]] = {"paper": {}, "mulsupcon-official": OFFICIAL_YEAST}


def validate(s: dict[str, Any]) -> None:
    """Reject values out of range or not among the choices (run_settings.resolve_settings calls it once
    its typed blocks have checked every key and type)."""
    def check(cond: bool, msg: str) -> None:
        if not cond:
            raise UserError(msg)

    for phase in ("pretrain", "finetune"):
        p = s[phase]
        check(isinstance(p["epochs"], int) and p["epochs"] >= 1, f"{phase}.epochs must be an integer >= 1")
        check(isinstance(p["batch_size"], int) and p["batch_size"] >= 2, f"{phase}.batch_size must be an integer >= 2")
        check(0.0 <= float(p["mask"]) < 1.0, f"{phase}.mask must be in [0, 1)")
        check(p["scheduler_step"] in ("epoch", "iter"), f"{phase}.scheduler_step must be 'epoch' or 'iter'")
        ipe = p["iters_per_epoch"]
        check(ipe is None or (isinstance(ipe, int) and ipe >= 1), f"{phase}.iters_per_epoch must be null or >= 1")
        check(isinstance(p["compile"], bool) or (isinstance(p["compile"], str) and p["compile"] in COMPILE_MODES),
              f"{phase}.compile must be false, true or a torch.compile mode ({', '.join(COMPILE_MODES)})")
    check(s["pretrain"]["hotpath"] in HOTPATHS, f"pretrain.hotpath must be one of {', '.join(HOTPATHS)}")
    check(isinstance(s["pretrain"]["queue_size"], int) and s["pretrain"]["queue_size"] >= 1,
          "pretrain.queue_size must be an integer >= 1")
    check(s["finetune"]["select"] in ("val_loss", "val_mAP"), "finetune.select must be 'val_loss' or 'val_mAP'")
    check(s["pretrain"]["keep"] in ("last", "best_train_loss"), "pretrain.keep must be 'last' or 'best_train_loss'")
    mult = s["finetune"]["backbone_lr_mult"]
    check(isinstance(mult, (int, float)) and not isinstance(mult, bool) and mult >= 0,
          "finetune.backbone_lr_mult must be a number >= 0")
    pat = s["finetune"]["early_stop_patience"]
    check(pat is None or (isinstance(pat, int) and not isinstance(pat, bool) and pat >= 1),
          "finetune.early_stop_patience must be null or an integer >= 1")
    for phase in ("pretrain", "finetune"):  # the optimiser's and scheduler's own fields: run_settings' types
        check(s[phase]["scheduler"]["name"] != "ReduceLROnPlateau" or s[phase]["scheduler_step"] == "epoch",
              f"{phase}.scheduler ReduceLROnPlateau steps once per epoch; set {phase}.scheduler_step=epoch")
    check(s["model"]["fc_input"] in ("rep", "proj"), "model.fc_input must be 'rep' or 'proj'")
    _validate_asl(s["loss"]["asl"], check)
    aug = s["data"].get("augment_on", "cpu")
    check(aug in AUGMENT_ON, f"data.augment_on must be one of {', '.join(AUGMENT_ON)}")
    check(isinstance(s["flush_denormal"], bool), "flush_denormal must be true or false")
    check(s["threads"] is None or (isinstance(s["threads"], int) and s["threads"] >= 1),
          "threads must be null or an integer >= 1")
    check(s["precision"] in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
    check(isinstance(s["checkpoint_every"], int) and s["checkpoint_every"] >= 1, "checkpoint_every must be >= 1")
    check(isinstance(s["checkpoint_seconds"], (int, float)) and not isinstance(s["checkpoint_seconds"], bool)
          and s["checkpoint_seconds"] >= 0, "checkpoint_seconds must be a number >= 0")
    check(isinstance(s["log_every"], int) and s["log_every"] >= 1, "log_every must be >= 1")


def _validate_asl(asl: Any, check) -> None:
    check(isinstance(asl, dict) and set(asl) == set(ASL_OFFICIAL),
          f"loss.asl must set exactly {', '.join(ASL_OFFICIAL)}")
    for key in ("gamma_neg", "gamma_pos", "clip"):
        v = asl[key]
        check(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, f"loss.asl.{key} must be a number >= 0")
    check(asl["clip"] < 1, "loss.asl.clip must be below 1")
    check(asl["reduction"] in REDUCTIONS, f"loss.asl.reduction must be one of {', '.join(REDUCTIONS)}")
    check(asl["focal_weights"] in FOCAL_WEIGHTS, f"loss.asl.focal_weights must be one of {', '.join(FOCAL_WEIGHTS)}")


def format_settings(s: dict[str, Any]) -> str:
    """Human-readable ``key.path = value`` lines."""
    lines: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else k)
        else:
            lines.append(f"{prefix} = {json.dumps(node)}")

    walk(s, "")
    return "\n".join(lines)
