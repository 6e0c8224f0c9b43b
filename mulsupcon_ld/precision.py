"""``precision="auto"``, when asked for (the default is fp32 on every machine, so that one command
computes alike everywhere): bf16 autocast where this CPU computes bf16 natively *and* a short
calibration in the same process shows the run's own pretraining iteration faster in bf16; fp32 otherwise.

Why measured, not fixed: on the project's machines bf16 ranges from much slower than fp32 (AMD Zen 3,
emulated) to much faster on the matrix products alone (Intel AMX), and on the small MLPs the products
are a minority of the step: on the AMX machine Yeast's step is *slower* in bf16 (the casts) while
Delicious' 983-label loss is product-bound. So the choice is per machine *and* shape
(docs/performance.md, "bf16 measured per machine and shape").

Rules (:func:`decide`, tested with faked capabilities):

* ``fp32`` / ``bf16`` asked explicitly: taken as asked.
* CUDA keeps its own rule: ``auto`` is fp32 there (this project has not validated bf16 on GPU against
  fp32; ``precision=bf16`` asks for it).
* CPU without native bf16 (oneDNN's check: AVX512-BF16 or AMX): fp32, without measuring.
* A dataset without a bf16 validation (not in :data:`~mulsupcon_ld.settings.BF16_VALIDATED`): fp32,
  without measuring (bf16 computes other numbers; it is used only where validation showed them
  equivalent).
* CPU with native bf16: :func:`calibrate` times the run's pretraining iteration (its batch, its queue
  filled, random data of the dataset's shape) in fp32 (the run's lane) and bf16 (the fast lane),
  :data:`CALIBRATION_ROUNDS` alternating rounds, the median of each; bf16 only if at least
  :data:`AUTO_MARGIN` times faster, so that timing noise near a tie keeps fp32.

Why CPU time and a median: on an oversubscribed machine (Yeast, batch 64, on the Intel AMX machine
with two training runs on its two cores), wall-clock time and the best of 3 rounds spread Yeast's
bf16/fp32 rate ratio widely over repeated calls, choosing bf16 by accident; this process's CPU time
(with one torch thread the products run on the calling thread, so time spent waiting for a core is
not counted) and the median of 5 rounds chose fp32 every time (docs/performance.md, "Calibration in
CPU time, median of rounds").

The choice and both rates go into ``metrics.json`` (``precision``) and into ``OUT/precision.json``
at the first decision, which a resumed or later phase of the same run reuses: one run never mixes
precisions. The run is then resolved again with the precision chosen (``experiment._resolve_auto``), so
its config, hashes and cell key name fp32 or bf16, never auto; ``--set precision=fp32|bf16`` pins it.

The calibration is a noticeable share of a short paper-budget run (docs/performance.md, "Calibration
cache"), and a cell of Table 2 runs ten seeds of one shape: so its two rates are kept
(:func:`cached_calibration`, ``~/.cache/mulsupcon_ld/calibrations.json`` or
``$MULSUPCON_CALIBRATION_CACHE``, ``off`` for none) under the CPU model, the torch version, the code's commit,
the thread count, the method and every setting (:func:`calibration_key`), and a later run with the same key
reuses them — which also makes runs of one shape on one CPU model choose alike, where two calibrations near
the margin could differ. A tree with uncommitted changes is not cached (its speed may have changed).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import __version__, train as T
from .atomic import write_json
from .augment import VectorBatches
from .machine import cpu_description, native_bf16_cpu
from .names import NO_PRETRAIN_METHODS
from .paths import calibration_cache_file
from .provenance import git_commit
from .run_settings import RunSettings
from .settings import BF16_VALIDATED

#: bf16 must be at least this much faster than fp32 in the calibration to be chosen. 1.2, not 1.1:
#: on a loaded machine Yeast's calibration (bf16 not faster when quiet) read above 1.1, while Scene's
#: (bf16 really faster) stayed above 1.2 (docs/performance.md, "The bf16 margin (AUTO_MARGIN)")
AUTO_MARGIN = 1.2
#: the calibration's timed iterations per call (marginal cost of an iteration: calls of k and 3k)
CALIBRATION_ITERS = 8
#: alternating fp32/bf16 rounds; the median of each lane decides
CALIBRATION_ROUNDS = 5
PRECISION_FILE = "precision.json"

MocoFactory = Callable[[RunSettings, int, int], Any]


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``precision`` a run asked for, what it computes in, and why (``metrics.json``)."""

    requested: str
    chosen: str
    reason: str
    native_bf16: bool | None = None
    fp32_ms_per_iter: float | None = None
    bf16_ms_per_iter: float | None = None
    cpu: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(requested: str, device_type: str, native_bf16: bool,
           measure: Callable[[], tuple[float, float]] | None, cpu: str | None = None,
           validated: bool = True) -> PrecisionChoice:
    """The precision of one run (rules: module docstring); ``measure()`` → (fp32 ms, bf16 ms) per
    iteration is called only on a CPU with native bf16 for a bf16-``validated`` dataset (None:
    nothing to measure, fp32)."""
    if requested in ("fp32", "bf16"):
        return PrecisionChoice(requested, requested, "asked for")
    if requested != "auto":
        raise ValueError(f"precision must be fp32, bf16 or auto, got {requested!r}")
    if device_type == "cuda":
        return PrecisionChoice("auto", "fp32", "CUDA: auto is fp32 (bf16 on GPU not validated here; "
                                               "precision=bf16 asks for it)")
    if not native_bf16:
        return PrecisionChoice("auto", "fp32", "no native bf16 on this CPU (oneDNN: no AVX512-BF16/AMX)",
                               native_bf16=False, cpu=cpu)
    if not validated:
        return PrecisionChoice("auto", "fp32", "bf16 not validated for this dataset (settings.BF16_VALIDATED)",
                               native_bf16=True, cpu=cpu)
    if measure is None:
        return PrecisionChoice("auto", "fp32", "nothing to calibrate (image model on CPU)", native_bf16=True, cpu=cpu)
    fp32_ms, bf16_ms = measure()
    faster = bf16_ms * AUTO_MARGIN <= fp32_ms
    reason = (f"calibrated: bf16 {fp32_ms / bf16_ms:.2f}x fp32's rate "
              f"({'>=' if faster else '<'} the {AUTO_MARGIN}x margin)")
    return PrecisionChoice("auto", "bf16" if faster else "fp32", reason, True, round(fp32_ms, 3),
                           round(bf16_ms, 3), cpu)


class IterationTimer:
    """Marginal milliseconds of one pretraining iteration (:func:`train.pretrain`, data included) with
    ``settings`` (its precision, lane, batch and queue) on random data of the dataset's shape
    (features ~ N(0, 1), labels at Table 1's labels per sample). The queue is filled once, untimed;
    :meth:`ms` times calls of ``iters`` and ``3 x iters`` iterations and divides their difference by
    ``2 x iters``, so the per-call optimiser set-up and checkpoint drop out. With one torch thread the
    clock is this process's CPU time (:func:`time.process_time`: other processes sharing the core do
    not count), with more it is wall time (idle worker threads would count as CPU time)."""

    def __init__(self, settings: RunSettings, method: str, build: MocoFactory, data_seed: int = 0):
        spec, pre = settings.spec, settings.pretrain
        rng = np.random.default_rng(data_seed)
        n = 4 * pre.batch_size
        self.x = rng.normal(size=(n, spec.n_features)).astype(np.float32)
        density = float(spec.expected.mean_labels_train) / spec.n_labels
        self.y = (rng.random((n, spec.n_labels)) < density).astype(np.uint8)
        self.settings, self.seed = settings, data_seed
        self.loss_fn = T.make_pretrain_loss(method, settings.loss, pre.temperature)
        torch.manual_seed(data_seed)
        self.moco = build(settings, spec.n_labels, spec.n_features)
        self._call(-(-pre.queue_size // pre.batch_size) + 2)

    def _call(self, k: int) -> float:
        pre = self.settings.pretrain
        vb = VectorBatches(self.x, self.y, pre.batch_size, mask=pre.mask, two_views=True, iters_per_epoch=k,
                           seed=self.seed)
        cfg = replace(self.settings, pretrain=replace(pre, epochs=1, iters_per_epoch=k), log_every=10**9)
        clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
        with tempfile.TemporaryDirectory() as tmp:
            t = clock()
            T.pretrain(self.moco, vb, cfg, self.loss_fn, seed=self.seed, device=torch.device("cpu"),
                       state_path=Path(tmp) / "s.pt", config_hash="calibration")
            return clock() - t

    def ms(self, iters: int) -> float:
        short = self._call(iters)
        return (self._call(3 * iters) - short) / (2 * iters) * 1e3


def calibrate(settings: RunSettings, method: str, build: MocoFactory, iters: int = CALIBRATION_ITERS,
              rounds: int = CALIBRATION_ROUNDS) -> tuple[float, float]:
    """(fp32 ms, bf16 ms) of this run's pretraining iteration, ``rounds`` alternating rounds, the
    median of each (a noisy round moves a median less than a minimum). fp32 keeps the run's lane;
    bf16 takes the fast lane (``RunSettings.fast_lane``). Methods that only fine-tune (bce, asl) are
    timed on MulSupCon's iteration: the same MLP, the lightest loss. The global RNG states are left
    as they were."""
    method = "mulsupcon" if method in NO_PRETRAIN_METHODS else method
    with torch.random.fork_rng(devices=[]):
        timers = {p: IterationTimer(replace(settings, precision=p), method, build) for p in ("fp32", "bf16")}
        times: dict[str, list[float]] = {p: [] for p in timers}
        for _ in range(rounds):
            for p, timer in timers.items():
                times[p].append(timer.ms(iters))
    return float(np.median(times["fp32"])), float(np.median(times["bf16"]))


def calibration_key(settings: RunSettings, method: str) -> str | None:
    """What a calibration's rates depend on, hashed: the CPU model and class, torch, the code's commit,
    the thread count, the method and every setting; ``None`` for a tree with uncommitted changes."""
    code = git_commit()
    if code.endswith("+dirty"):
        return None
    if code == "unknown":
        code = f"version {__version__}"
    facts = {"cpu": cpu_description(), "torch": torch.__version__, "code": code,
             "threads": torch.get_num_threads(), "method": method, "settings": settings.to_dict()}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cached_calibration(settings: RunSettings, method: str, build: MocoFactory
                       ) -> tuple[float, float, str | None]:
    """``(fp32 ms, bf16 ms, when)``: :func:`calibrate`'s rates, from the calibration cache when a run
    with the same :func:`calibration_key` measured them (``when``: that time, UTC), else measured now
    and kept (``when`` None)."""
    path, key = calibration_cache_file(), calibration_key(settings, method)
    kept = _read_cache(path) if path is not None and key is not None else {}
    if key in kept:
        entry = kept[key]
        return float(entry["fp32_ms"]), float(entry["bf16_ms"]), str(entry["measured"])
    fp32_ms, bf16_ms = calibrate(settings, method, build)
    if path is not None and key is not None:
        kept = _read_cache(path)          # again: another run may have added to it meanwhile
        kept[key] = {"fp32_ms": fp32_ms, "bf16_ms": bf16_ms, "cpu": cpu_description(), "dataset": settings.dataset,
                     "method": method, "measured": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            write_json(path, kept)
        except OSError as exc:           # a read-only home must not stop the run: it measures each time
            print(f"warning: cannot keep the precision calibration in {path} ({exc.strerror or exc}); "
                  f"set $MULSUPCON_CALIBRATION_CACHE to a writable file, or to off", file=sys.stderr)
    return fp32_ms, bf16_ms, None


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):        # none yet, or unreadable: measure (and start it afresh)
        return {}
    return kept if isinstance(kept, dict) else {}


def resolve_precision(settings: RunSettings, method: str, device: torch.device, out: Path,
                      build: MocoFactory) -> PrecisionChoice:
    """The run's :class:`PrecisionChoice`: ``OUT/precision.json`` when an earlier phase or attempt of
    this run decided it (same requested value), else :func:`decide` now, written there."""
    path = Path(out) / PRECISION_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("requested") == settings.precision:
            return PrecisionChoice(**saved)
    cached: list[str | None] = [None]

    def measure() -> tuple[float, float]:
        fp32_ms, bf16_ms, cached[0] = cached_calibration(settings, method, build)
        return fp32_ms, bf16_ms

    choice = decide(settings.precision, device.type, device.type == "cpu" and native_bf16_cpu(),
                    measure if settings.kind == "vector" else None,
                    cpu_description() if device.type == "cpu" else None, settings.dataset in BF16_VALIDATED)
    if cached[0] is not None:
        choice = replace(choice, reason=f"{choice.reason}; calibrated by an earlier run of this shape on this "
                                        f"CPU model ({cached[0]}, cache {calibration_cache_file()})")
    if settings.precision == "auto":
        write_json(path, choice.to_dict())
    return choice
