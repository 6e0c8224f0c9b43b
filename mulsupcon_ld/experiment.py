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
import dataclasses
import functools
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
from .arithmetic import cell_key, resolved_arithmetic
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
from .precision import PrecisionChoice, resolve_precision
from .provenance import config_hash, provenance, run_facts
from .run_settings import RunSettings, resolve_settings
from .settings import METHOD_SETTINGS

PHASES = ("pretrain", "finetune")
#: the config paths the hashes leave out — the one list of them. Settings that do not change the
#: numbers (data/images.py: batches do not depend on the loader's workers) …
HASH_EXCLUDED = ("settings.checkpoint_every", "settings.checkpoint_seconds", "settings.log_every",
                 "settings.data.num_workers", "settings.data.prefetch_factor")
#: … and, for the pretrained model's hash, what only fine-tuning depends on
PRETRAIN_HASH_EXCLUDED = ("settings.finetune", "scale")


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


@dataclass(frozen=True)
class ResolvedRun:
    """An :class:`ExperimentSpec` with its settings resolved (once) and its hashes."""

    spec: ExperimentSpec
    settings: RunSettings
    config: dict[str, Any]     # the provenance ``config``: what decides the numbers
    full_hash: str             # of the whole result (resume, "already done")
    pre_hash: str              # of the pretrained model (``pretrained.pt``)

    @property
    def seed(self) -> int:
        return self.config["seed"]


@dataclass
class _Context:
    """What the steps of one experiment share. The run's settings hold the precision as computed
    (``precision="auto"`` resolved before hashing, :func:`_resolve_auto`); ``precision`` says what was
    asked for and why that was chosen."""

    run: ResolvedRun
    out: Path
    device: torch.device
    prepared: PreparedDataset
    precision: PrecisionChoice
    arithmetic: dict[str, Any]     # :func:`.arithmetic.resolved_arithmetic`

    @property
    def spec(self) -> ExperimentSpec:
        return self.run.spec

    @property
    def config(self) -> dict[str, Any]:
        return self.run.config

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def settings(self) -> RunSettings:
        return self.run.settings

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


def resolve_run(spec: ExperimentSpec) -> ResolvedRun:
    """The settings of ``spec`` (resolved here, the one time for a run), its config and hashes."""
    if spec.method in NO_LD_METHODS and spec.ablation != "none":
        raise UserError("--ablation applies to rld and cld only (it removes terms of eqs. 9/11); "
                        "drop it or use --method cld")
    overrides = [f"{k}={v}" for k, v in METHOD_SETTINGS.get(spec.method, {}).items()] + list(spec.overrides)
    if spec.alpha is not None:
        overrides.append(f"loss.alpha={spec.alpha}")
    if spec.beta is not None:
        overrides.append(f"loss.beta={spec.beta}")
    settings = resolve_settings(spec.dataset, spec.scale, spec.preset, overrides)
    ld = spec.method not in NO_LD_METHODS
    config = {
        "dataset": settings.dataset,
        "method": spec.method,
        "preset": settings.preset,
        "seed": int(spec.seed),
        "alpha": float(settings.loss.alpha) if ld else None,
        "beta": float(settings.loss.beta) if ld else None,
        "ablation": spec.ablation,
        "scale": spec.scale,
        "synthetic": bool(spec.synthetic),
        "settings": settings.to_dict(),
    }
    return ResolvedRun(spec, settings, config, _hash_without(config, HASH_EXCLUDED),
                       _hash_without(config, HASH_EXCLUDED + PRETRAIN_HASH_EXCLUDED))


def build_config(spec: ExperimentSpec) -> dict[str, Any]:
    """Everything that decides the numbers of one experiment (the provenance ``config``)."""
    return resolve_run(spec).config


def _hash_without(config: dict[str, Any], excluded: tuple[str, ...]) -> str:
    c = copy.deepcopy(config)
    for path in excluded:
        *parents, last = path.split(".")
        node = c
        for k in parents:
            node = node.get(k, {})
        node.pop(last, None)
    return config_hash(c)


def load_data(run: ResolvedRun) -> PreparedDataset:
    s = run.settings
    prepared = ensure_prepared(s.spec, paths.raw_dir(run.spec.raw_dir), paths.data_dir(run.spec.data_dir),
                               synthetic=run.config["synthetic"])
    if prepared.kind != s.kind:
        raise UserError(f"prepared data of {s.dataset} is {prepared.kind!r} but its settings are "
                        f"for {s.kind!r} data; re-run `mulsupcon-ld prepare {s.dataset}`")
    return prepared


def build_moco(settings: RunSettings, n_labels: int, n_features: int | None) -> MoCo:
    """The MoCo of ``settings``, in the pretraining lane's modules (``settings.fast_lane``)."""
    encoder = build_encoder(settings.model, n_features, fast=settings.fast_lane)
    p = settings.pretrain
    return MoCo(encoder, n_labels, p.queue_size, p.momentum, settings.model.fc_input, settings.fast_lane)


def _place(model: torch.nn.Module, settings: RunSettings, device: torch.device) -> torch.nn.Module:
    model = model.to(device)
    if settings.model.backbone != "mlp" and settings.model.channels_last:
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
        if saved.get("pretrain_hash") != ctx.run.pre_hash:
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
    loss_fn = T.make_pretrain_loss(config["method"], s.loss, s.pretrain.temperature, config["ablation"])
    batches = make_batches(ctx.prepared, "train", s, "pretrain", ctx.seed, ctx.device)
    history = T.pretrain(moco, batches, s, loss_fn, seed=ctx.seed, device=ctx.device,
                         state_path=ctx.state("pretrain"), config_hash=ctx.run.pre_hash,
                         on_epoch_end=on_epoch_end)
    info = {"history": _clean(history), "wall_time_s": history["elapsed_s"], "iters_per_epoch": len(batches)}
    with atomic_path(path) as tmp:
        torch.save({"pretrain_hash": ctx.run.pre_hash, "config": config,
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
                        make_batches(ctx.prepared, "val", s, "eval", ctx.seed, ctx.device), s,
                        seed=ctx.seed, device=ctx.device, state_path=ctx.state("finetune"),
                        config_hash=ctx.run.full_hash, on_epoch_end=on_epoch_end,
                        loss_fn=_asl(s) if ctx.config["method"] == "asl" else None)
    return model, result


def _asl(s: RunSettings):
    """``--method asl``'s loss with the run's recipe (``settings.loss.asl``)."""
    return functools.partial(asl_loss, **dataclasses.asdict(s.loss.asl))


def _evaluate(ctx: _Context, model: torch.nn.Module, result: dict[str, Any]) -> dict[str, Any]:
    """Test scores of the selected model, the metrics under both protocols, the .npy files."""
    s = ctx.settings
    t_eval = time.monotonic()
    test_scores, test_labels, test_loss = T.predict(
        model, make_batches(ctx.prepared, "test", s, "eval", ctx.seed, ctx.device), ctx.device, s.precision)
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
        "result_hash": ctx.run.full_hash,
        "precision": ctx.precision.to_dict(),
        "arithmetic": ctx.arithmetic,
        "cell_key": cell_key(config, ctx.arithmetic, HASH_EXCLUDED),
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
def run_experiment(spec: ExperimentSpec | ResolvedRun, on_epoch_end: T.EpochCallback | None = None
                   ) -> Path | None:
    """Run ``spec.phases`` of one experiment; returns ``metrics.json`` (None after pretrain only).

    ``spec`` may be already resolved (:func:`resolve_run`; the CLI does, to set the thread count at
    the process edge). ``on_epoch_end(phase, epoch)`` is called after each training epoch, its
    checkpoint on disk if one was due (:class:`~mulsupcon_ld.train.CheckpointClock`).
    """
    run = spec if isinstance(spec, ResolvedRun) else resolve_run(spec)
    try:
        return _run(run, on_epoch_end)
    finally:
        release_image_loaders()


def _run(run: ResolvedRun, on_epoch_end: T.EpochCallback | None) -> Path | None:
    t_start = time.monotonic()
    out = Path(run.spec.out)
    metrics_path = out / METRICS_FILE
    # the CPU guard (before any download), the device, and precision=auto resolved before the hashes
    guard_image_run(run.settings, run.spec.device, torch.cuda.is_available(), run.config["synthetic"])
    device = resolve_device(run.spec.device)
    run, choice = _resolve_auto(run, device, out)
    if "finetune" in run.spec.phases and _already_done(metrics_path, run.full_hash):
        return metrics_path
    ctx = _open(run, out, device, choice)
    moco, pretrain_info = _pretrained(ctx, on_epoch_end)
    if "finetune" not in run.spec.phases:
        print(f"pretrained model: {out / PRETRAINED_FILE}", file=sys.stderr)
        return None
    model, result = _finetune(ctx, moco, on_epoch_end)
    del moco
    evaluation = _evaluate(ctx, model, result)
    write_json(metrics_path, _clean(_record(ctx, pretrain_info, result, evaluation)))
    _drop_state(ctx)
    print(f"{metrics_path}: mAP {evaluation['metrics']['paper']['mAP']:.4f}  (selected epoch "
          f"{result['best_epoch']}, {time.monotonic() - t_start:.0f}s)", file=sys.stderr)
    return metrics_path


def _resolve_auto(run: ResolvedRun, device: torch.device, out: Path) -> tuple[ResolvedRun, PrecisionChoice]:
    """``precision="auto"`` decided (:mod:`.precision`) and the run re-resolved with the precision it
    computes in, so that its config, hashes and cell key name fp32 or bf16, never "auto"."""
    choice = resolve_precision(run.settings, run.config["method"], device, out, build_moco)
    if choice.requested != choice.chosen:
        print(f"precision=auto: {choice.chosen} ({choice.reason})", file=sys.stderr)
    if run.settings.precision != choice.chosen:
        run = resolve_run(dataclasses.replace(run.spec, overrides=(*run.spec.overrides,
                                                                   f"precision={choice.chosen}")))
    return run, choice


def _open(run: ResolvedRun, out: Path, device: torch.device, choice: PrecisionChoice) -> _Context:
    """The data, and what the run computes with."""
    note = hotpath.bf16_cpu_note(run.settings.precision, device)
    if note:
        print(note, file=sys.stderr)
    prepared = load_data(run)
    return _Context(run, out, device, prepared, choice,
                    resolved_arithmetic(run.config["settings"], run.config["method"], run_facts()))


def _drop_state(ctx: _Context) -> None:
    """The finished run's checkpoints are no longer needed."""
    ctx.state("finetune").unlink(missing_ok=True)
    try:
        (ctx.out / "state").rmdir()
    except OSError:
        pass
