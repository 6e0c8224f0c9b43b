"""Pretraining (MulSupCon / RLD / CLD on MoCo) and BCE fine-tuning, with checkpoints and resume.

Both loops consume a *batch source*: an object with ``epoch(epoch) -> Iterator[batch]`` and
``__len__`` (iterations per epoch). Pretraining batches are ``(view1, view2, y)``, fine-tuning
and evaluation batches ``(x, y)``. :class:`mulsupcon_ld.augment.VectorBatches` is the vector
implementation; batches come from ``mulsupcon_ld.batches.make_batches`` (see
:mod:`mulsupcon_ld.experiment`).

Readings (see docs/method.md (Part 2)):

* An epoch is one pass over the training split unless ``iters_per_epoch`` is set.
* ``CosineAnnealingWarmRestarts`` steps once per epoch (``scheduler_step="epoch"``, as MulSupCon's
  code) or after every iteration with a fractional epoch (``"iter"``, the PyTorch docs' pattern
  ``scheduler.step(epoch + i / iters)``).
* Fine-tuning keeps the weights of the epoch with the lowest validation BCE (``select="val_loss"``,
  MulSupCon's ``eval_best`` checkpoint) or the highest validation mAP (``"val_mAP"``).
* ``compile`` (per phase): the networks of the hot loop — the query and key encoders in
  pretraining, the classifier in fine-tuning — run through ``torch.compile`` for the phase, compiled
  in place (``nn.Module.compile``): same module objects, same parameters, same ``state_dict`` keys,
  so checkpoints and resume do not depend on it (see :func:`compiled`).

Resume: every ``checkpoint_every`` epochs once ``checkpoint_seconds`` have passed since the last
one (:class:`CheckpointClock`; and always after the last epoch) the full training state — model
(with the MoCo queues, which are buffers), optimiser, scheduler, RNG states of torch / numpy /
python, completed epochs, history, best-validation state, elapsed time — is written atomically to
``state_path``. A loop started with an existing ``state_path`` continues after its last completed
epoch; on CPU the result equals an uninterrupted run exactly, because the batch order and masks of
an epoch depend only on ``(seed, epoch)`` and the global RNG (dropout) is restored.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import hotpath
from .atomic import atomic_path
from . import losses
from .augment import epoch_seed
from .errors import UserError
from .metrics import tracking_map
from .moco import MoCo, MoCoOutput
from .names import LD_METHODS
from .run_settings import CosineSchedule, LossSettings, OptimizerSettings, PlateauSchedule, RunSettings

# Called as on_epoch_end(phase, epoch) after each epoch (its checkpoint, if due, is on disk by then).
EpochCallback = Callable[[str, int], None]

# the smoothing of ignite's RunningAverage (MulSupCon codes/main.py l. 157), for pretrain.keep=best_train_loss
RUNNING_ALPHA = 0.98


class BatchSource(Protocol):
    def epoch(self, epoch: int) -> Iterable[tuple[torch.Tensor, ...]]: ...
    def __len__(self) -> int: ...


# ------------------------------------------------------------------------------------ RNG
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------ optim
def make_optimizer(params: Iterable[Any], cfg: OptimizerSettings, **extra: Any) -> torch.optim.Optimizer:
    """AdamW (the paper, Section 4) or Adam (MulSupCon ``codes/config/*_yeast.yaml``; its
    ``weight_decay`` is the L2 term added to the gradient, AdamW's is decoupled). ``params`` may be
    parameters or parameter groups (dicts with their own ``lr``); ``extra`` are implementation
    switches (e.g. ``fused``, see hotpath.py). ``cfg`` was checked when the settings were resolved."""
    cls = torch.optim.AdamW if cfg.name == "AdamW" else torch.optim.Adam
    return cls(params, lr=float(cfg.lr), weight_decay=float(cfg.weight_decay), **extra)


def finetune_param_groups(model: nn.Module, lr: float, backbone_lr_mult: float) -> list[dict[str, Any]]:
    """Two groups: the network without ``fc`` at ``lr * backbone_lr_mult``, ``fc`` at ``lr``
    (MulSupCon ``codes/models.py`` ``Simple.get_config_optim``: encoder at ``lr * lrp``, output layer
    at ``lr``). ``lr`` is also each group's ``initial_lr`` for the schedulers."""
    fc = set(id(p) for p in model.fc.parameters())
    rest = [p for p in model.parameters() if id(p) not in fc]
    return [{"params": rest, "lr": lr * float(backbone_lr_mult)},
            {"params": list(model.fc.parameters()), "lr": lr}]


def make_scheduler(opt: torch.optim.Optimizer, cfg: CosineSchedule | PlateauSchedule):
    """CosineAnnealingWarmRestarts (the paper) or ReduceLROnPlateau (MulSupCon ``train_yeast.yaml``;
    stepped once per epoch with the monitored loss, see :func:`_epoch_end_step`)."""
    if isinstance(cfg, CosineSchedule):
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=cfg.T_0, T_mult=cfg.T_mult, eta_min=float(cfg.eta_min))
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=float(cfg.factor), patience=cfg.patience, cooldown=cfg.cooldown,
        threshold=float(cfg.threshold), threshold_mode=cfg.threshold_mode, min_lr=float(cfg.min_lr))


def is_plateau(sched: Any) -> bool:
    return isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _epoch_end_step(sched: Any, mode: str, monitored: float) -> None:
    """End-of-epoch scheduler step: ReduceLROnPlateau with the monitored loss (fine-tuning: the
    validation BCE, MulSupCon ``codes/main.py`` l. 382-383; pretraining: the train loss, l. 170-171),
    the cosine schedule once per epoch in ``"epoch"`` mode (per iteration otherwise)."""
    if is_plateau(sched):
        sched.step(monitored)
    elif mode == "epoch":
        sched.step()


# ------------------------------------------------------------------------------------ progress
class EpochProgress:
    """One tqdm line over epochs (loss, ETA) on a terminal; else a plain stderr line every N epochs."""

    def __init__(self, desc: str, total: int, initial: int, log_every: int):
        self.desc, self.total, self.log_every = desc, total, max(1, log_every)
        self.start, self.first = time.monotonic(), initial
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="ep", dynamic_ncols=True,
                            file=sys.stderr)

    def update(self, epoch: int, **values: float) -> None:
        done = epoch + 1
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()}, refresh=False)
            self.bar.update(1)
            return
        if done % self.log_every == 0 or done == self.total:
            elapsed = time.monotonic() - self.start
            eta = elapsed / max(1, done - self.first) * (self.total - done)
            vals = " ".join(f"{k}={v:.4f}" for k, v in values.items())
            print(f"{self.desc}: epoch {done}/{self.total} {vals} elapsed={elapsed:.0f}s eta={eta:.0f}s",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------ checkpoints
class CheckpointClock:
    """When an epoch end writes the resumable checkpoint: every ``every`` epochs, once ``seconds`` have
    passed since the last write (or the phase's start), and always after the last epoch. Checkpoints
    never change the numbers (the RNG states are in them), so this trades only the work a killed job
    redoes (at most ``seconds`` plus ``every`` epochs) against the writes: writing Yeast's 7 MB state
    takes a sizeable fraction of one of its short pretraining epochs (docs/performance.md,
    "Checkpoints by time")."""

    def __init__(self, every: int, seconds: float):
        self.every, self.seconds = every, float(seconds)
        self.last = time.monotonic()

    def due(self, done: int, last: bool) -> bool:
        """Whether to write after ``done`` completed epochs (``last``: the phase ends here)."""
        now = time.monotonic()
        if last or (done % self.every == 0 and now - self.last >= self.seconds):
            self.last = now
            return True
        return False


def save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model``'s weights (the kept best epoch of either loop)."""
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def _checkpoint(path: Path, config_hash: str, phase: str, epoch: int, model: nn.Module, opt: torch.optim.Optimizer,
                sched: Any, history: dict[str, Any], best: dict[str, Any], elapsed_s: float) -> None:
    """The full training state after ``epoch`` epochs of ``phase`` (what :func:`_resume` restores)."""
    save_state(path, {
        "config_hash": config_hash, "phase": phase, "epoch": epoch,
        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "rng": get_rng_state(), "history": history, "best": best, "elapsed_s": elapsed_s,
    })


def _resume(state_path: Path, config_hash: str, model: nn.Module, opt: torch.optim.Optimizer,
            sched: Any, seed: int, stream: str) -> dict[str, Any] | None:
    """Restore model, optimiser, scheduler and RNGs from the phase's checkpoint, if there is one;
    otherwise seed the phase's RNG stream. Returns the checkpoint (None when starting fresh)."""
    state = load_state(state_path, config_hash)
    if state is None:
        seed_everything(epoch_seed(seed, stream, 0))
        return None
    model.load_state_dict(state["model"])
    try:
        opt.load_state_dict(state["optimizer"])
    except ValueError as exc:      # another parameter layout, e.g. written before the fused step
        raise UserError(f"checkpoint {state_path} holds optimiser state for another parameter layout ({exc}); "
                        "it was written by another version of the training step: delete it to start this "
                        "phase again") from exc
    sched.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state


def load_state(path: Path, config_hash: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists; UserError if it belongs to another configuration."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files cannot occur (atomic writes), but be clear anyway
        raise UserError(f"cannot read checkpoint {path} ({exc}); delete it to start this phase again") from exc
    if state.get("config_hash") != config_hash:
        raise UserError(f"checkpoint {path} was written by a different configuration; use another "
                        "--out directory, or delete its state/ folder to start again")
    return state


def _scheduler_step(sched, mode: str, epoch: int, i: int, iters: int) -> None:
    if mode == "iter" and not is_plateau(sched):
        sched.step(epoch + (i + 1) / iters)


def _to(batch: tuple[torch.Tensor, ...], device: torch.device) -> list[torch.Tensor]:
    return [t.to(device, non_blocking=True) for t in batch]


def autocast(device: torch.device, precision: str):
    """bf16 autocast for the network when ``precision == "bf16"`` (the losses compute in float32)."""
    if precision not in ("fp32", "bf16"):
        raise UserError(f"precision must be 'fp32' or 'bf16' here, got {precision!r} (a run resolves 'auto' "
                        "first: mulsupcon_ld.precision.resolve_precision; pass --set precision=fp32|bf16 or "
                        "resolve it before calling the training loop)")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# ------------------------------------------------------------------------------------ torch.compile
def compile_options(setting: bool | str | None) -> dict[str, Any] | None:
    """``torch.compile`` keyword arguments for a ``compile`` setting (checked when the settings were
    resolved): None (off) for false/null, ``{}`` for true, ``{"mode": m}`` for a mode string."""
    if setting is None or setting is False:
        return None
    return {} if setting is True else {"mode": setting}


@contextlib.contextmanager
def compiled(modules: Iterable[nn.Module], setting: bool | str | None) -> Iterator[None]:
    """Run ``modules`` through ``torch.compile`` inside the block, then restore them to eager.

    Each module is compiled in place with ``nn.Module.compile`` (its ``__call__`` goes through the
    compiled function; no wrapper is registered as a submodule), so callers that reach it as an
    attribute — ``MoCo.forward`` calling ``encoder_q`` / ``encoder_k`` — use the compiled code, and
    ``state_dict()`` keeps its keys (``torch.compile(module)`` would return an ``OptimizedModule``
    whose keys carry an ``_orig_mod.`` prefix). The compiled graphs read the parameters as inputs,
    so in-place updates — the optimiser step, the key encoder's momentum update, ``load_state_dict``
    — are seen by the next call. Recompilation happens on new input shapes (the last, smaller
    batch) and on train/eval or grad-mode switches.
    """
    options = compile_options(setting)
    modules = list(modules)
    if options is None:
        yield
        return
    if not hasattr(nn.Module, "compile"):  # pragma: no cover - torch < 2.2
        raise UserError("compile needs torch >= 2.2 (nn.Module.compile); set compile=false")
    for m in modules:
        m.compile(**options)
    try:
        yield
    finally:
        for m in modules:  # back to eager: what Module.compile set, and what deepcopy/pickle drop
            m._compiled_call_impl = None


# ------------------------------------------------------------------------------------ pretraining
LossParts = dict[str, torch.Tensor]


def make_pretrain_loss(method: str, loss_cfg: LossSettings, temperature: float, ablation: str = "none"
                       ) -> Callable[[MoCoOutput, torch.Tensor, MoCo], tuple[torch.Tensor, LossParts]]:
    """``loss(out, y, moco) -> (loss, parts)`` for ``method`` in mulsupcon / rld / cld; ``parts`` are the
    detached terms of the loss (``ld_loss(return_parts=True)``), logged per epoch by :func:`pretrain`."""
    if method == "mulsupcon":
        if ablation != "none":
            raise UserError("ablations apply to rld and cld only; drop --ablation or use --method cld")

        def loss_mulsupcon(out: MoCoOutput, y: torch.Tensor, moco: MoCo) -> tuple[torch.Tensor, LossParts]:
            loss = losses.mulsupcon_loss(out.q, out.k, y, out.labels, temperature=temperature, queue=out.queue)
            return loss, {"contrastive": loss.detach()}

        return loss_mulsupcon
    if method not in LD_METHODS:
        raise UserError(f"unknown method {method!r}; choose mulsupcon, rld or cld")

    def loss_ld(out: MoCoOutput, y: torch.Tensor, moco: MoCo) -> tuple[torch.Tensor, LossParts]:
        return losses.ld_loss(out.q, out.k, y, out.labels, out.dist, out.dist, moco.fc.weight, queue=out.queue,
                              variant=method, alpha=float(loss_cfg.alpha), beta=float(loss_cfg.beta),
                              sigma=float(loss_cfg.sigma), temperature=temperature, ablation=ablation,
                              options=loss_cfg.options, return_parts=True)

    return loss_ld


class EpochParts:
    """Per-epoch means of the loss terms (eq. 9/11 parts), summed on the device: no sync per step."""

    def __init__(self) -> None:
        self.sums: LossParts = {}
        self.count = 0

    def add(self, parts: LossParts) -> None:
        for name, value in parts.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.count += 1

    def means(self) -> dict[str, float]:
        return {name: float(v) / max(1, self.count) for name, v in self.sums.items()}


def pretrain(moco: MoCo, batches: BatchSource, settings: RunSettings, loss_fn, *, seed: int,
             device: torch.device, state_path: Path, config_hash: str,
             on_epoch_end: EpochCallback | None = None) -> dict[str, Any]:
    """Run (or resume) pretraining with ``settings.pretrain``; ``moco`` is trained in place.
    Returns the history.

    ``keep``: ``"last"`` leaves the last epoch's weights in ``moco``; ``"best_train_loss"``
    the weights at the end of the epoch with the lowest running train loss (MulSupCon
    ``codes/main.py`` l. 157 and 175-179: ignite ``RunningAverage`` — an exponential average of the
    iteration losses, α = 0.98 — scored at each epoch end, ``train_best`` checkpoint, which
    ``codes/utils.py`` l. 139-140 loads for fine-tuning). The running average is not reset
    between epochs (ignite's default ``RunningBatchWise`` usage).
    """
    cfg, precision, fast = settings.pretrain, settings.precision, settings.fast_lane
    if moco.fast_lane != fast:  # the lane is built into the model (experiment.build_moco)
        raise ValueError(f"the model was built for fast_lane={moco.fast_lane}, the settings say {fast}")
    params = moco.optimizer_parameters()
    opt = make_optimizer(params, cfg.optimizer, **hotpath.optimizer_kwargs(fast, params))
    sched = make_scheduler(opt, cfg.scheduler)
    epochs, mode, keep = cfg.epochs, cfg.scheduler_step, cfg.keep
    history: dict[str, Any] = {"loss": [], "lr": [], "running_loss": [], "parts": []}
    best: dict[str, Any] = {"epoch": 0, "running_loss": math.inf}
    state = _resume(state_path, config_hash, moco, opt, sched, seed, "pretrain-rng")
    start, elapsed = 0, 0.0
    if state is not None:
        start, history, elapsed = state["epoch"], state["history"], state["elapsed_s"]
        best = state.get("best", best)
    running = history["running_loss"][-1] if history["running_loss"] else None
    iters = len(batches)
    if iters < 1:
        raise UserError("the training split is too small for one pretraining batch; lower "
                        "--set pretrain.batch_size or use more data")
    progress = EpochProgress("pretrain", epochs, start, settings.log_every)
    clock = CheckpointClock(settings.checkpoint_every, settings.checkpoint_seconds)
    t0 = time.monotonic()
    with compiled([moco.encoder_q, moco.encoder_k], cfg.compile):
        for epoch in range(start, epochs):
            moco.train()
            total, count, parts = torch.zeros((), device=device), 0, EpochParts()
            for i, batch in enumerate(batches.epoch(epoch)):
                v1, v2, y = _to(batch, device)
                with autocast(device, precision):
                    out = moco(v1, v2, y)
                    loss, step_parts = loss_fn(out, out.labels, moco)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"pretraining loss is {loss.item()} at epoch {epoch + 1}, "
                                             f"iteration {i + 1}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _scheduler_step(sched, mode, epoch, i, iters)
                moco.enqueue(out.k, out.labels, out.dist)
                total += loss.detach()
                count += 1
                parts.add(step_parts)
                if keep == "best_train_loss":  # one sync per iteration, only when this reading is on
                    value = float(loss.detach())
                    running = value if running is None else RUNNING_ALPHA * running + (1 - RUNNING_ALPHA) * value
            history["lr"].append(opt.param_groups[0]["lr"])
            mean_loss = float(total) / max(1, count)
            _epoch_end_step(sched, mode, mean_loss)
            history["loss"].append(mean_loss)
            history["running_loss"].append(running)
            history["parts"].append(parts.means())
            if keep == "best_train_loss" and running < best["running_loss"]:
                best = {"epoch": epoch + 1, "running_loss": running, "model": cpu_state(moco)}
            progress.update(epoch, loss=mean_loss)
            if clock.due(epoch + 1, epoch + 1 == epochs):
                _checkpoint(state_path, config_hash, "pretrain", epoch + 1, moco, opt, sched, history, best,
                            elapsed + time.monotonic() - t0)
            if on_epoch_end is not None:
                on_epoch_end("pretrain", epoch)
    progress.close()
    if keep == "best_train_loss" and "model" in best:
        moco.load_state_dict(best["model"])
    history["kept_epoch"] = best["epoch"] if keep == "best_train_loss" else epochs
    history["elapsed_s"] = elapsed + time.monotonic() - t0
    return history


# ------------------------------------------------------------------------------------ fine-tuning
@torch.no_grad()
def predict(model: nn.Module, batches: BatchSource, device: torch.device, precision: str = "fp32"
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(scores, labels, mean BCE)`` over a split in its stored order; scores are sigmoid probabilities."""
    model.eval()
    scores, labels = [], []
    loss_sum, n = 0.0, 0
    for batch in batches.epoch(0):
        x, y = _to(batch, device)
        with autocast(device, precision):
            logits = model(x)
        logits = logits.float()
        loss_sum += float(F.binary_cross_entropy_with_logits(logits, y.float(), reduction="sum"))
        n += y.numel()
        scores.append(torch.sigmoid(logits).cpu())
        labels.append(y.cpu())
    s = torch.cat(scores).numpy().astype(np.float32)
    y = torch.cat(labels).numpy().astype(np.uint8)
    return s, y, loss_sum / max(1, n)


def finetune(model: nn.Module, train: BatchSource, val: BatchSource, settings: RunSettings, *, seed: int,
             device: torch.device, state_path: Path, config_hash: str,
             on_epoch_end: EpochCallback | None = None,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, Any]:
    """BCE fine-tuning of the whole network (``settings.finetune``) with model selection on ``val``.

    ``loss_fn(logits, targets)`` replaces the training BCE (``--method asl``); selection and the
    scheduler still watch the validation BCE, so the rule is the BCE control's.

    On return ``model`` holds the selected weights. The result has ``history``, ``best_epoch``
    (1-based), ``stopped_epoch`` (epochs run), ``val_scores`` / ``val_labels`` of the selected
    model and ``elapsed_s``.

    ``backbone_lr_mult`` (default 1): with another value everything but ``fc`` trains at that
    multiple of the learning rate (:func:`finetune_param_groups`). ``early_stop_patience`` (default
    None = off): stop once that many epochs have passed without a better selection score (ignite
    ``EarlyStopping`` as MulSupCon ``codes/main.py`` l. 448-453 uses it, on the validation BCE).
    """
    cfg, precision = settings.finetune, settings.precision
    mult = cfg.backbone_lr_mult
    params = (model.parameters() if mult is None or float(mult) == 1.0
              else finetune_param_groups(model, float(cfg.optimizer.lr), float(mult)))
    opt = make_optimizer(params, cfg.optimizer)
    sched = make_scheduler(opt, cfg.scheduler)
    epochs, mode, select = cfg.epochs, cfg.scheduler_step, cfg.select
    patience = cfg.early_stop_patience
    history: dict[str, Any] = {"train_loss": [], "val_loss": [], "val_mAP": [], "lr": []}
    best: dict[str, Any] = {"epoch": 0, "score": -math.inf}
    state = _resume(state_path, config_hash, model, opt, sched, seed, "finetune-rng")
    start, elapsed = 0, 0.0
    if state is not None:
        start, history, best, elapsed = state["epoch"], state["history"], state["best"], state["elapsed_s"]

    def stop_early(done: int) -> bool:  # ``done`` epochs completed
        return patience is not None and best["epoch"] > 0 and done - best["epoch"] >= int(patience)
    iters = len(train)
    if iters < 1:
        raise UserError("the training split is too small for one fine-tuning batch")
    progress = EpochProgress("finetune", epochs, start, settings.log_every)
    clock = CheckpointClock(settings.checkpoint_every, settings.checkpoint_seconds)
    t0 = time.monotonic()
    stopped = start
    with compiled([model], cfg.compile):
        for epoch in range(start, epochs):
            if stop_early(epoch):  # resumed after the run had already stopped
                break
            model.train()
            total, count = torch.zeros((), device=device), 0
            for i, batch in enumerate(train.epoch(epoch)):
                x, y = _to(batch, device)
                with autocast(device, precision):
                    logits = model(x)
                loss = (F.binary_cross_entropy_with_logits if loss_fn is None else loss_fn)(logits.float(), y.float())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _scheduler_step(sched, mode, epoch, i, iters)
                total += loss.detach()
                count += 1
            history["lr"].append(opt.param_groups[-1]["lr"])  # fc's group (the only one without a multiplier)
            val_scores, val_labels, val_loss = predict(model, val, device, precision)
            _epoch_end_step(sched, mode, val_loss)
            val_map = _map(val_scores, val_labels)
            history["train_loss"].append(float(total) / max(1, count))
            history["val_loss"].append(val_loss)
            history["val_mAP"].append(val_map)
            score = -val_loss if select == "val_loss" else val_map
            if score > best["score"] or best["epoch"] == 0:
                best = {"epoch": epoch + 1, "score": score, "model": cpu_state(model),
                        "val_scores": torch.from_numpy(val_scores), "val_labels": torch.from_numpy(val_labels)}
            progress.update(epoch, loss=history["train_loss"][-1], val_loss=val_loss, val_mAP=val_map)
            stopped = epoch + 1
            last = epoch + 1 == epochs or stop_early(epoch + 1)
            if clock.due(epoch + 1, last):
                _checkpoint(state_path, config_hash, "finetune", epoch + 1, model, opt, sched, history, best,
                            elapsed + time.monotonic() - t0)
            if on_epoch_end is not None:
                on_epoch_end("finetune", epoch)
            if last:
                break
    progress.close()
    model.load_state_dict(best["model"])
    return {"history": history, "best_epoch": best["epoch"], "select": select,
            "stopped_epoch": max(stopped, len(history["val_loss"])),
            "val_scores": best["val_scores"].numpy(), "val_labels": best["val_labels"].numpy(),
            "elapsed_s": elapsed + time.monotonic() - t0}


def _map(scores: np.ndarray, labels: np.ndarray) -> float:
    """Validation mAP (labels without positives count 0, as in the paper's metric)."""
    try:
        return tracking_map(scores, labels)
    except UserError:  # e.g. a validation split without any positive label
        return float("nan")
