"""``mulsupcon-ld run | pretrain | finetune | settings``: one experiment, start to ``metrics.json``.

``run`` = pretrain → fine-tune → evaluate. Files under ``--out DIR``:

* ``state/pretrain.pt``, ``state/finetune.pt`` — resumable checkpoints (deleted when a phase ends);
* ``pretrained.pt`` — the pretrained MoCo (query/key encoders, ``fc``, queues) and its history;
* ``test_scores.npy``, ``test_labels.npy``, ``val_scores.npy``, ``val_labels.npy`` — the selected
  model's probabilities, for ``mulsupcon-ld evaluate``;
* ``metrics.json`` — written last, atomically (schema: docs/architecture.md).

Re-running the same command after a kill resumes from the last checkpoint; re-running a finished
one prints where the result is and does nothing. A directory holding results of a *different*
configuration is refused (UserError), never overwritten.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import paths
from .atomic import atomic_path, write_json
from .errors import UserError
from .provenance import config_hash, provenance
from .settings import format_settings, get_settings

PRETRAINED = "pretrained.pt"
METRICS = "metrics.json"
# settings that do not change the numbers (excluded from the resume/compatibility hashes)
_NON_RESULT_KEYS = ("checkpoint_every", "log_every")


# ------------------------------------------------------------------------------------ commands
def cmd_settings(args: argparse.Namespace) -> int:
    s = get_settings(args.dataset, args.scale, preset=args.preset)
    print(json.dumps(s, indent=2) if args.json else format_settings(s))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return run_job(args, ("pretrain", "finetune"))


def cmd_pretrain(args: argparse.Namespace) -> int:
    return run_job(args, ("pretrain",))


def cmd_finetune(args: argparse.Namespace) -> int:
    return run_job(args, ("finetune",))


# ------------------------------------------------------------------------------------ setup
def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"--device {name!r} is not a torch device (use cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for CUDA but torch sees no GPU; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: only cpu and cuda are supported")
    return dev


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that decides the numbers of one experiment (the provenance ``config``)."""
    if args.method in ("mulsupcon", "bce") and args.ablation != "none":
        raise UserError("--ablation applies to rld and cld only (it removes terms of eqs. 9/11); "
                        "drop it or use --method cld")
    overrides = list(getattr(args, "set", None) or [])
    if args.alpha is not None:
        overrides.append(f"loss.alpha={args.alpha}")
    if args.beta is not None:
        overrides.append(f"loss.beta={args.beta}")
    settings = get_settings(args.dataset, args.scale, overrides, preset=getattr(args, "preset", "paper"))
    for name in ("alpha", "beta"):
        v = settings["loss"][name]
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise UserError(f"{name} must be a finite number >= 0, got {v!r}")
    ld = args.method in ("rld", "cld")
    return {
        "dataset": settings["dataset"],
        "method": args.method,
        "preset": settings["preset"],
        "seed": int(args.seed),
        "alpha": float(settings["loss"]["alpha"]) if ld else None,
        "beta": float(settings["loss"]["beta"]) if ld else None,
        "ablation": args.ablation,
        "scale": args.scale,
        "synthetic": bool(args.synthetic),
        "settings": settings,
    }


def _result_hash(config: dict[str, Any], pretrain_only: bool = False) -> str:
    c = copy.deepcopy(config)
    for k in _NON_RESULT_KEYS:
        c["settings"].pop(k, None)
    for k in ("num_workers", "prefetch_factor"):  # images.py: batches do not depend on them
        (c["settings"].get("data") or {}).pop(k, None)
    if pretrain_only:
        c["settings"].pop("finetune", None)
        c.pop("scale", None)
    return config_hash(c)


def load_data(config: dict[str, Any], args: argparse.Namespace):
    from .data import ensure_prepared

    prepared = ensure_prepared(config["dataset"], paths.raw_dir(args.raw_dir), paths.data_dir(args.data_dir),
                               synthetic=config["synthetic"])
    kind = config["settings"]["kind"]
    if prepared.kind != kind:
        raise UserError(f"prepared data of {config['dataset']} is {prepared.kind!r} but its settings are "
                        f"for {kind!r} data; re-run `mulsupcon-ld prepare {config['dataset']}`")
    return prepared


class ImageBatches:
    """Adapter over ``mulsupcon_ld.data.images.make_batches`` (one call per epoch).

    ``make_batches(prepared, split, settings, train, seed, device)`` gets the full settings with
    ``settings["phase"]`` set to ``"pretrain"`` (batches ``(view1, view2, y)``), ``"finetune"``
    (``(x, y)``, augmented) or ``"eval"`` (``(x, y)``, fixed order), and a seed that depends only
    on ``(seed, phase, epoch)``.
    """

    def __init__(self, prepared, split: str, settings: dict[str, Any], phase: str, seed: int,
                 device: torch.device):
        from .data import images

        self._make = images.make_batches
        self.prepared, self.split, self.phase, self.seed, self.device = prepared, split, phase, seed, device
        self.settings = dict(settings, phase=phase)
        self._len: int | None = None

    def epoch(self, epoch: int):
        from .augment import epoch_seed

        return self._make(self.prepared, self.split, self.settings, train=self.phase != "eval",
                          seed=epoch_seed(self.seed, f"{self.phase}-{self.split}", epoch), device=self.device)

    def __len__(self) -> int:
        if self._len is None:
            self._len = len(self.epoch(0))
        return self._len


def make_batches(prepared, split: str, settings: dict[str, Any], phase: str, seed: int, device: torch.device):
    """Batch source for ``phase`` in pretrain / finetune / eval, dispatching on ``prepared.kind``."""
    if prepared.kind == "image":
        return ImageBatches(prepared, split, settings, phase, seed, device)
    from .augment import VectorBatches

    x, y = prepared.split(split)
    if settings.get("data", {}).get("standardize"):
        x = _standardize(prepared, x)
    if phase == "eval":
        return VectorBatches(x, y, settings["finetune"]["eval_batch_size"], shuffle=False, device=device)
    cfg = settings[phase]
    return VectorBatches(x, y, cfg["batch_size"], mask=cfg["mask"], two_views=phase == "pretrain",
                         drop_last=bool(cfg.get("drop_last", False)), iters_per_epoch=cfg["iters_per_epoch"],
                         seed=seed, stream=f"{phase}-{split}", device=device)


def _standardize(prepared, x: np.ndarray) -> np.ndarray:
    """Z-score ``x`` with the train split's per-feature mean and std (constant features left at 0)."""
    train_x, _ = prepared.split("train")
    mean = train_x.mean(axis=0, dtype=np.float64)
    std = train_x.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return ((x - mean) / std).astype(np.float32)


def build_moco(settings: dict[str, Any], n_labels: int, n_features: int | None):
    from .encoders import build_encoder
    from .moco import MoCo

    encoder = build_encoder(settings["model"], n_features)
    p = settings["pretrain"]
    return MoCo(encoder, n_labels, p["queue_size"], p["momentum"], settings["model"]["fc_input"])


def _place(model: torch.nn.Module, settings: dict[str, Any], device: torch.device) -> torch.nn.Module:
    model = model.to(device)
    if settings["model"]["backbone"] != "mlp" and settings["model"].get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf floats become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------ the job
def _release_image_loaders() -> None:
    """Let data/images.py's cached DataLoaders (persistent workers) go once they are not needed."""
    images = sys.modules.get("mulsupcon_ld.data.images")
    if images is not None and hasattr(images, "clear_loader_cache"):
        images.clear_loader_cache()


def run_job(args: argparse.Namespace, phases: tuple[str, ...]) -> int:
    try:
        return _run_job(args, phases)
    finally:
        _release_image_loaders()


def _run_job(args: argparse.Namespace, phases: tuple[str, ...]) -> int:
    from . import train as T

    t_start = time.monotonic()
    config = build_config(args)
    settings = config["settings"]
    out = Path(args.out)
    state_dir = out / "state"
    full_hash, pre_hash = _result_hash(config), _result_hash(config, pretrain_only=True)

    metrics_path = out / METRICS
    if "finetune" in phases and metrics_path.exists():
        try:
            done = json.loads(metrics_path.read_text())
        except ValueError:
            done = {}
        if done.get("result_hash") == full_hash:
            print(f"{metrics_path} already holds this configuration's result; nothing to do", file=sys.stderr)
            return 0
        raise UserError(f"{metrics_path} holds the result of a different configuration; "
                        "use another --out directory")

    device = resolve_device(args.device)
    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    prepared = load_data(config, args)
    meta = prepared.meta
    n_labels = int(meta["n_labels"])
    n_features = meta.get("n_features")
    splits = meta.get("splits", {})
    seed = config["seed"]
    T.seed_everything(seed)  # model initialisation below is a function of the seed only

    pretrained_path = out / PRETRAINED
    moco = build_moco(settings, n_labels, n_features)
    pretrain_info: dict[str, Any]
    if config["method"] == "bce":  # our control: fine-tuning from the random initialisation, no pretraining
        if phases == ("pretrain",):
            raise UserError("--method bce has no pretraining phase; use `mulsupcon-ld run` or `finetune`")
        pretrain_info = {"history": {}, "wall_time_s": 0.0, "iters_per_epoch": None}
    elif pretrained_path.exists():
        saved = torch.load(pretrained_path, map_location="cpu", weights_only=True)
        if saved.get("pretrain_hash") != pre_hash:
            raise UserError(f"{pretrained_path} was pretrained with different settings (dataset, method, seed, "
                            "alpha, beta, ablation, model or pretrain.*); use another --out directory")
        moco.load_state_dict(saved["model"])
        pretrain_info = saved["info"]
    elif "pretrain" in phases:
        moco = _place(moco, settings, device)
        loss_fn = T.make_pretrain_loss(config["method"], settings["loss"], settings["pretrain"]["temperature"],
                                       config["ablation"])
        batches = make_batches(prepared, "train", settings, "pretrain", seed, device)
        history = T.pretrain(moco, batches, settings["pretrain"], loss_fn, seed=seed, device=device,
                             state_path=state_dir / "pretrain.pt", config_hash=pre_hash,
                             checkpoint_every=settings["checkpoint_every"], log_every=settings["log_every"],
                             precision=settings["precision"])
        pretrain_info = {"history": _clean(history), "wall_time_s": history["elapsed_s"],
                         "iters_per_epoch": len(batches)}
        with atomic_path(pretrained_path) as tmp:
            torch.save({"pretrain_hash": pre_hash, "config": config,
                        "model": {k: v.cpu() for k, v in moco.state_dict().items()},
                        "info": pretrain_info}, tmp)
        (state_dir / "pretrain.pt").unlink(missing_ok=True)
        del batches
        _release_image_loaders()
    else:
        raise UserError(f"{pretrained_path} does not exist; run `mulsupcon-ld pretrain` with the same "
                        "arguments first (or use `mulsupcon-ld run`)")
    if "finetune" not in phases:
        print(f"pretrained model: {pretrained_path}", file=sys.stderr)
        return 0

    # ---------------------------------------------------------------- fine-tune
    from .encoders import Classifier

    moco = moco.cpu()
    model = _place(Classifier.from_pretrained(moco), settings, device)
    del moco
    ft = settings["finetune"]
    result = T.finetune(model, make_batches(prepared, "train", settings, "finetune", seed, device),
                        make_batches(prepared, "val", settings, "eval", seed, device), ft, seed=seed,
                        device=device, state_path=state_dir / "finetune.pt", config_hash=full_hash,
                        checkpoint_every=settings["checkpoint_every"], log_every=settings["log_every"],
                        precision=settings["precision"])

    # ---------------------------------------------------------------- evaluate
    from .metrics import compute_metrics

    t_eval = time.monotonic()
    test_scores, test_labels, test_loss = T.predict(model, make_batches(prepared, "test", settings, "eval",
                                                                          seed, device), device,
                                                settings["precision"])
    val_scores, val_labels = result["val_scores"], result["val_labels"]
    metrics = {
        "paper": compute_metrics(test_scores, test_labels, protocol="paper"),
        "val-threshold": compute_metrics(test_scores, test_labels, protocol="val-threshold",
                                         val_scores=val_scores, val_labels=val_labels),
    }
    for name, arr in (("test_scores", test_scores), ("test_labels", test_labels),
                      ("val_scores", val_scores), ("val_labels", val_labels)):
        _save_npy(out / f"{name}.npy", arr)
    eval_s = time.monotonic() - t_eval

    wall = {"pretrain": float(pretrain_info["wall_time_s"]), "finetune": float(result["elapsed_s"]),
            "evaluate": eval_s}
    wall["total"] = sum(wall.values())
    record = {
        "dataset": config["dataset"], "method": config["method"], "preset": config["preset"], "seed": seed,
        "alpha": config["alpha"], "beta": config["beta"], "ablation": config["ablation"],
        "scale": config["scale"], "synthetic": config["synthetic"],
        "metrics": metrics,
        "wall_time_s": wall,
        **provenance(config, str(device)),
        "result_hash": full_hash,
        "data": {"n_train": int(splits.get("train", -1)), "n_val": int(splits.get("val", len(val_labels))),
                 "n_test": int(splits.get("test", len(test_labels))), "source": _data_source(meta),
                 "data_dir": str(paths.data_dir(args.data_dir))},
        "training": {
            "pretrain": {"loss": pretrain_info["history"].get("loss"),
                         "iters_per_epoch": pretrain_info.get("iters_per_epoch")},
            "pretrain_kept_epoch": pretrain_info["history"].get("kept_epoch"),
            "finetune": {"select": result["select"], "selected_epoch": result["best_epoch"],
                         "stopped_epoch": result["stopped_epoch"],
                         **{k: v for k, v in result["history"].items() if k != "lr"}},
            "test_bce": test_loss,
        },
    }
    write_json(metrics_path, _clean(record))
    (state_dir / "finetune.pt").unlink(missing_ok=True)
    try:
        state_dir.rmdir()
    except OSError:
        pass
    print(f"{metrics_path}: mAP {metrics['paper']['mAP']:.4f}  (selected epoch {result['best_epoch']}, "
          f"{time.monotonic() - t_start:.0f}s)", file=sys.stderr)
    return 0


def _data_source(meta: dict[str, Any]) -> str:
    """Short description of where the data came from (e.g. ``mulsupcon-hdf5``, ``synthetic``)."""
    if meta.get("synthetic"):
        return "synthetic"
    src = meta.get("source")
    if isinstance(src, dict):
        src = src.get("name") or src.get("raw_format")
    if src:
        return str(src)
    files = meta.get("source_files") or {}
    return ", ".join(sorted(files)) if files else "unknown"
