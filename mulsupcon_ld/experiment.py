"""One experiment, start to ``metrics.json``: :func:`run_experiment` (no argparse below the CLI).

``run`` = pretrain → fine-tune → evaluate → record. Files under ``spec.out``:

* ``state/pretrain.pt``, ``state/finetune.pt`` — resumable checkpoints (deleted when a phase ends);
* ``pretrained.pt`` — the pretrained MoCo (query/key encoders, ``fc``, queues) and its history;
* ``test_scores.npy``, ``test_labels.npy``, ``val_scores.npy``, ``val_labels.npy`` — the selected
  model's probabilities, for ``mulsupcon-ld evaluate``;
* ``metrics.json`` — written last, atomically (schema: docs/architecture.md).

Re-running the same experiment after a kill resumes from the last checkpoint; re-running a
finished one says where the result is and does nothing. A directory holding results of a
*different* configuration is refused (UserError), never overwritten.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import hotpath, paths
from . import train as T
from .asl import asl_loss
from .atomic import atomic_path, save_npy, write_json
from .batches import make_batches, release_image_loaders
from .data.prepare import ensure_prepared
from .data.prepared import PreparedDataset
from .encoders import Classifier, build_encoder
from .cost import guard_image_run
from .errors import UserError
from .metrics import compute_metrics
from .moco import MoCo
from .names import METRICS_FILE, NO_LD_METHODS, NO_PRETRAIN_METHODS, PRETRAINED_FILE
from .provenance import config_hash, provenance
from .settings import get_settings

PHASES = ("pretrain", "finetune")
# settings that do not change the numbers (excluded from the resume/compatibility hashes)
_NON_RESULT_KEYS = ("checkpoint_every", "log_every")


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything a run is asked for (the CLI's ``run`` / ``pretrain`` / ``finetune`` arguments)."""

    dataset: str
    method: str
    out: Path
    seed: int = 0
    alpha: float | None = None       # None: the dataset's default (settings.py)
    beta: float | None = None
    ablation: str = "none"
    scale: str = "paper"
    synthetic: bool = False
    overrides: tuple[str, ...] = ()  # "KEY=VALUE" settings overrides (--set)
    device: str | None = None        # None: cuda if available, else cpu
    raw_dir: str | None = None
    data_dir: str | None = None
    phases: tuple[str, ...] = PHASES
    preset: str = "paper"          # a key of settings.PRESETS


@dataclass
class _Context:
    """What the steps of one experiment share."""

    spec: ExperimentSpec
    config: dict[str, Any]
    out: Path
    device: torch.device
    prepared: PreparedDataset
    full_hash: str
    pre_hash: str

    @property
    def settings(self) -> dict[str, Any]:
        return self.config["settings"]

    @property
    def seed(self) -> int:
        return self.config["seed"]

    def state(self, phase: str) -> Path:
        return self.out / "state" / f"{phase}.pt"


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


def build_config(spec: ExperimentSpec) -> dict[str, Any]:
    """Everything that decides the numbers of one experiment (the provenance ``config``)."""
    if spec.method in NO_LD_METHODS and spec.ablation != "none":
        raise UserError("--ablation applies to rld and cld only (it removes terms of eqs. 9/11); "
                        "drop it or use --method cld")
    overrides = list(spec.overrides)
    if spec.alpha is not None:
        overrides.append(f"loss.alpha={spec.alpha}")
    if spec.beta is not None:
        overrides.append(f"loss.beta={spec.beta}")
    settings = get_settings(spec.dataset, spec.scale, overrides, preset=spec.preset)
    for name in ("alpha", "beta"):
        v = settings["loss"][name]
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise UserError(f"{name} must be a finite number >= 0, got {v!r}")
    ld = spec.method not in NO_LD_METHODS
    return {
        "dataset": settings["dataset"],
        "method": spec.method,
        "preset": settings["preset"],
        "seed": int(spec.seed),
        "alpha": float(settings["loss"]["alpha"]) if ld else None,
        "beta": float(settings["loss"]["beta"]) if ld else None,
        "ablation": spec.ablation,
        "scale": spec.scale,
        "synthetic": bool(spec.synthetic),
        "settings": settings,
    }


def _result_hash(config: dict[str, Any], pretrain_only: bool = False) -> str:
    c = copy.deepcopy(config)
    for k in _NON_RESULT_KEYS:
        c["settings"].pop(k, None)
    for k in ("num_workers", "prefetch_factor"):  # data/images.py: batches do not depend on them
        c["settings"]["data"].pop(k, None)
    if pretrain_only:
        c["settings"].pop("finetune", None)
        c.pop("scale", None)
    return config_hash(c)


def load_data(config: dict[str, Any], spec: ExperimentSpec) -> PreparedDataset:
    prepared = ensure_prepared(config["dataset"], paths.raw_dir(spec.raw_dir), paths.data_dir(spec.data_dir),
                               synthetic=config["synthetic"])
    kind = config["settings"]["kind"]
    if prepared.kind != kind:
        raise UserError(f"prepared data of {config['dataset']} is {prepared.kind!r} but its settings are "
                        f"for {kind!r} data; re-run `mulsupcon-ld prepare {config['dataset']}`")
    return prepared


def build_moco(settings: dict[str, Any], n_labels: int, n_features: int | None) -> MoCo:
    encoder = build_encoder(settings["model"], n_features)
    p = settings["pretrain"]
    return MoCo(encoder, n_labels, p["queue_size"], p["momentum"], settings["model"]["fc_input"])


def _place(model: torch.nn.Module, settings: dict[str, Any], device: torch.device) -> torch.nn.Module:
    model = model.to(device)
    if settings["model"]["backbone"] != "mlp" and settings["model"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf floats become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------ the steps
def _already_done(metrics_path: Path, full_hash: str) -> bool:
    """True when ``metrics_path`` holds this configuration's result; refuses another one's."""
    if not metrics_path.exists():
        return False
    try:
        done = json.loads(metrics_path.read_text())
    except ValueError:
        done = {}
    if done.get("result_hash") == full_hash:
        print(f"{metrics_path} already holds this configuration's result; nothing to do", file=sys.stderr)
        return True
    raise UserError(f"{metrics_path} holds the result of a different configuration; "
                    "use another --out directory")


def _pretrained(ctx: _Context, on_epoch_end: T.EpochCallback | None) -> tuple[MoCo, dict[str, Any]]:
    """The pretrained MoCo and its info: loaded from ``pretrained.pt``, or pretrained now."""
    meta = ctx.prepared.meta
    T.seed_everything(ctx.seed)  # model initialisation below is a function of the seed only
    moco = build_moco(ctx.settings, int(meta["n_labels"]), meta.get("n_features"))
    path = ctx.out / PRETRAINED_FILE
    method = ctx.config["method"]
    if method in NO_PRETRAIN_METHODS:  # our controls: fine-tuning from the random initialisation, no pretraining
        if "finetune" not in ctx.spec.phases:
            raise UserError(f"--method {method} has no pretraining phase; use `mulsupcon-ld run` or `finetune`")
        return moco, {"history": {}, "wall_time_s": 0.0, "iters_per_epoch": None}
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("pretrain_hash") != ctx.pre_hash:
            raise UserError(f"{path} was pretrained with different settings (dataset, method, seed, "
                            "alpha, beta, ablation, model or pretrain.*); use another --out directory")
        moco.load_state_dict(saved["model"])
        return moco, saved["info"]
    if "pretrain" not in ctx.spec.phases:
        raise UserError(f"{path} does not exist; run `mulsupcon-ld pretrain` with the same "
                        "arguments first (or use `mulsupcon-ld run`)")
    return _pretrain(ctx, moco, path, on_epoch_end)


def _pretrain(ctx: _Context, moco: MoCo, path: Path, on_epoch_end: T.EpochCallback | None
              ) -> tuple[MoCo, dict[str, Any]]:
    s, config = ctx.settings, ctx.config
    moco = _place(moco, s, ctx.device)
    loss_fn = T.make_pretrain_loss(config["method"], s["loss"], s["pretrain"]["temperature"], config["ablation"])
    batches = make_batches(ctx.prepared, "train", s, "pretrain", ctx.seed, ctx.device)
    history = T.pretrain(moco, batches, s["pretrain"], loss_fn, seed=ctx.seed, device=ctx.device,
                         state_path=ctx.state("pretrain"), config_hash=ctx.pre_hash,
                         checkpoint_every=s["checkpoint_every"], log_every=s["log_every"],
                         precision=s["precision"], on_epoch_end=on_epoch_end)
    info = {"history": _clean(history), "wall_time_s": history["elapsed_s"], "iters_per_epoch": len(batches)}
    with atomic_path(path) as tmp:
        torch.save({"pretrain_hash": ctx.pre_hash, "config": config,
                    "model": {k: v.cpu() for k, v in moco.state_dict().items()}, "info": info}, tmp)
    ctx.state("pretrain").unlink(missing_ok=True)
    del batches
    release_image_loaders()
    return moco, info


def _finetune(ctx: _Context, moco: MoCo, on_epoch_end: T.EpochCallback | None
              ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Classifier from the pretrained MoCo, BCE-fine-tuned with selection on val (in place)."""
    s = ctx.settings
    model = _place(Classifier.from_pretrained(moco.cpu()), s, ctx.device)
    result = T.finetune(model, make_batches(ctx.prepared, "train", s, "finetune", ctx.seed, ctx.device),
                        make_batches(ctx.prepared, "val", s, "eval", ctx.seed, ctx.device), s["finetune"],
                        seed=ctx.seed, device=ctx.device, state_path=ctx.state("finetune"),
                        config_hash=ctx.full_hash, checkpoint_every=s["checkpoint_every"],
                        log_every=s["log_every"], precision=s["precision"], on_epoch_end=on_epoch_end,
                        loss_fn=asl_loss if ctx.config["method"] == "asl" else None)
    return model, result


def _evaluate(ctx: _Context, model: torch.nn.Module, result: dict[str, Any]) -> dict[str, Any]:
    """Test scores of the selected model, the metrics under both protocols, the .npy files."""
    s = ctx.settings
    t_eval = time.monotonic()
    test_scores, test_labels, test_loss = T.predict(
        model, make_batches(ctx.prepared, "test", s, "eval", ctx.seed, ctx.device), ctx.device, s["precision"])
    val_scores, val_labels = result["val_scores"], result["val_labels"]
    metrics = {
        "paper": compute_metrics(test_scores, test_labels, protocol="paper"),
        "val-threshold": compute_metrics(test_scores, test_labels, protocol="val-threshold",
                                         val_scores=val_scores, val_labels=val_labels),
    }
    for name, arr in (("test_scores", test_scores), ("test_labels", test_labels),
                      ("val_scores", val_scores), ("val_labels", val_labels)):
        save_npy(ctx.out / f"{name}.npy", arr)
    return {"metrics": metrics, "test_bce": test_loss, "n_val": len(val_labels), "n_test": len(test_labels),
            "eval_s": time.monotonic() - t_eval}


def _record(ctx: _Context, pretrain_info: dict[str, Any], result: dict[str, Any],
            evaluation: dict[str, Any]) -> dict[str, Any]:
    """The ``metrics.json`` record (schema: docs/architecture.md)."""
    config, meta = ctx.config, ctx.prepared.meta
    splits = meta.get("splits", {})
    wall = {"pretrain": float(pretrain_info["wall_time_s"]), "finetune": float(result["elapsed_s"]),
            "evaluate": evaluation["eval_s"]}
    wall["total"] = sum(wall.values())
    return {
        "dataset": config["dataset"], "method": config["method"], "preset": config["preset"], "seed": ctx.seed,
        "alpha": config["alpha"], "beta": config["beta"], "ablation": config["ablation"],
        "scale": config["scale"], "synthetic": config["synthetic"],
        "metrics": evaluation["metrics"],
        "wall_time_s": wall,
        **provenance(config, str(ctx.device)),
        "result_hash": ctx.full_hash,
        "data": {"n_train": int(splits.get("train", -1)), "n_val": int(splits.get("val", evaluation["n_val"])),
                 "n_test": int(splits.get("test", evaluation["n_test"])), "source": _data_source(meta),
                 "data_dir": str(paths.data_dir(ctx.spec.data_dir))},
        "training": {
            "pretrain": {"loss": pretrain_info["history"].get("loss"),
                         "parts": pretrain_info["history"].get("parts"),
                         "iters_per_epoch": pretrain_info.get("iters_per_epoch")},
            "pretrain_kept_epoch": pretrain_info["history"].get("kept_epoch"),
            "finetune": {"select": result["select"], "selected_epoch": result["best_epoch"],
                         "stopped_epoch": result["stopped_epoch"],
                         **{k: v for k, v in result["history"].items() if k != "lr"}},
            "test_bce": evaluation["test_bce"],
        },
    }


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


# ------------------------------------------------------------------------------------ the experiment
def run_experiment(spec: ExperimentSpec, on_epoch_end: T.EpochCallback | None = None) -> Path | None:
    """Run ``spec.phases`` of one experiment; returns ``metrics.json`` (None after pretrain only).

    ``on_epoch_end(phase, epoch)`` is called after each training epoch, its checkpoint on disk.
    """
    try:
        return _run(spec, on_epoch_end)
    finally:
        release_image_loaders()


def _run(spec: ExperimentSpec, on_epoch_end: T.EpochCallback | None) -> Path | None:
    t_start = time.monotonic()
    config = build_config(spec)
    out = Path(spec.out)
    full_hash = _result_hash(config)
    metrics_path = out / METRICS_FILE
    if "finetune" in spec.phases and _already_done(metrics_path, full_hash):
        return metrics_path
    guard_image_run(config["settings"], spec.device, torch.cuda.is_available(), config["synthetic"])  # before any download
    device = resolve_device(spec.device)
    note = hotpath.bf16_cpu_note(config["settings"]["precision"], device)
    if note:
        print(note, file=sys.stderr)
    if config["settings"]["threads"]:
        torch.set_num_threads(int(config["settings"]["threads"]))
    ctx = _Context(spec, config, out, device, load_data(config, spec), full_hash,
                   _result_hash(config, pretrain_only=True))
    moco, pretrain_info = _pretrained(ctx, on_epoch_end)
    if "finetune" not in spec.phases:
        print(f"pretrained model: {out / PRETRAINED_FILE}", file=sys.stderr)
        return None
    model, result = _finetune(ctx, moco, on_epoch_end)
    del moco
    evaluation = _evaluate(ctx, model, result)
    write_json(metrics_path, _clean(_record(ctx, pretrain_info, result, evaluation)))
    ctx.state("finetune").unlink(missing_ok=True)
    try:
        (out / "state").rmdir()
    except OSError:
        pass
    print(f"{metrics_path}: mAP {evaluation['metrics']['paper']['mAP']:.4f}  (selected epoch "
          f"{result['best_epoch']}, {time.monotonic() - t_start:.0f}s)", file=sys.stderr)
    return metrics_path
