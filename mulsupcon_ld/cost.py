"""What a target costs before it runs: ``mulsupcon-ld cost TARGET…`` and the CPU-only guard.

Estimate = FLOPs of a run's iterations / the rate measured by the benchmarks on a named machine
(``cost_measurements.json`` beside this module, written by hand from ``benchmarks/`` output; it
names the machine, commit and load), per class of machine (:func:`cpu_rates`: the class of the machine
``cost`` runs on where it was measured, else the default class, said in the output). FLOPs per sample are counted from the network shapes:

* vector (MLP 256-512-256 + projection head 256-256 + fc): pretraining = query forward+backward
  (3x) + key forward (1x) + the similarity/loss products (4 K d); fine-tuning = 3x backbone + fc;
  the rate is the achieved GFLOP/s of Yeast's CLD pretraining iteration (data included), per
  precision and pretraining lane (``pretrain.hotpath``: reference or fast). Where
  ``vector_pretrain_ms_per_iter`` holds the dataset's own measured iteration for the lane (CLD at
  its paper batch and queue, queue full; ``benchmarks/bench_shapes.py``), pretraining is that time
  the iterations instead: the FLOP model counts the similarity products only and misses the label
  products of many-label shapes (far too low at Delicious'; docs/performance.md, "Measured
  iterations in the cost model").
* image (ResNet-50 at 224 px, 4.1 GMAC forward): on CUDA the measured end-to-end milliseconds per
  batch-128 iteration (one H100, loader included); on CPU the FLOPs over the measured fp32
  matrix-product peak (a lower bound: convolutions do not reach it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .machine import isa_class
from .run_settings import RunSettings
from .settings import BF16_VALIDATED, TABLE

MEASUREMENTS = Path(__file__).with_name("cost_measurements.json")
RESNET50_GFLOP = 2 * 4.1          # forward, one 224 px image (torchvision: 4.09 GMAC)
VAL_FRACTION = 0.2                # the train/validation carve of Table 1's training part
PAPER_SCALE_GUARD_HOURS = 1.0     # image runs estimated above this on CPU stop without an override


def measurements() -> dict[str, Any]:
    return json.loads(MEASUREMENTS.read_text())


def cpu_rates(m: dict[str, Any] | None = None, isa: str | None = None) -> tuple[dict[str, Any], bool]:
    """The CPU rates measured on this machine's class (:func:`machine.isa_class`, or ``isa``), else
    those of ``cpu_default``; and whether they are this class's own."""
    m = measurements() if m is None else m
    machines, isa = m["cpu_machines"], isa or isa_class()
    if isa in machines:
        return machines[isa], True
    return machines[m["cpu_default"]], False


def _candidate_precisions(precision: str, rates: dict[str, Any], dataset: str) -> tuple[str, ...]:
    """The precisions a vector run may compute in: ``auto`` takes the faster of fp32 and, where the
    measured machine computes bf16 natively and the dataset's bf16 is validated, bf16 (what its
    calibration would choose, rates aside)."""
    if precision != "auto":
        return (precision,)
    return ("fp32", "bf16") if rates.get("onednn_bf16") and dataset in BF16_VALIDATED else ("fp32",)


def _paper_shape(dataset: str) -> tuple[int, int]:
    """(batch, queue) of ``dataset``'s paper settings: the shape ``vector_pretrain_ms_per_iter`` was
    measured at (benchmarks/bench_shapes.py); another shape falls back to the FLOP model."""
    row = TABLE[dataset]
    return int(row["batch"]), int(row["queue"])


def _mlp_gflop(widths: list[int]) -> float:
    return 2 * sum(a * b for a, b in zip(widths, widths[1:])) / 1e9


@dataclass(frozen=True)
class RunCost:
    dataset: str
    kind: str
    pretrain_iters: int
    finetune_iters: int
    gflop: float
    hours: float
    device: str          # "cpu" | "cuda"


def run_cost(s: RunSettings, device: str, pretrain: bool = True, isa: str | None = None) -> RunCost:
    """Estimated wall time of one ``mulsupcon-ld run`` with settings ``s`` (preset, scale and
    overrides included) on ``device``; ``pretrain=False`` for the methods that only fine-tune
    (``names.NO_PRETRAIN_METHODS``: bce, asl). CPU rates of the class ``isa`` (default: this machine's)."""
    spec, pre, ft = s.spec, s.pretrain, s.finetune
    n_train = int(spec.expected.n_train * (1 - VAL_FRACTION))
    pre_iters = pre.epochs * (pre.iters_per_epoch or max(1, n_train // pre.batch_size)) if pretrain else 0
    ft_iters = ft.epochs * (ft.iters_per_epoch or math.ceil(n_train / ft.batch_size))
    m = measurements()
    if s.kind == "image":
        per_image = RESNET50_GFLOP
        gflop = pre_iters * pre.batch_size * 4 * per_image + ft_iters * ft.batch_size * 3 * per_image
        if device == "cuda":
            c = m["cuda"]
            ms_per_image = c["image_pretrain_ms_per_iter"] / c["image_batch"]
            seconds = (pre_iters * pre.batch_size * ms_per_image
                       + ft_iters * ft.batch_size * ms_per_image * 0.75) / 1e3
        else:
            seconds = gflop / cpu_rates(m, isa)[0]["matmul_peak_gflops"]["fp32"]
    else:
        backbone = [int(spec.n_features)] + list(s.model.hidden)
        rep, proj = backbone[-1], s.model.proj_dim
        enc = _mlp_gflop(backbone) + _mlp_gflop([rep, rep if rep < 2 * proj else rep // 2, proj])
        fc = _mlp_gflop([rep, spec.n_labels])
        loss = 4 * (pre.queue_size + pre.batch_size) * proj / 1e9   # label products are sparse
        pre_gflop = pre_iters * pre.batch_size * (3 * (enc + fc) + enc + loss)
        ft_gflop = ft_iters * ft.batch_size * 3 * (_mlp_gflop(backbone) + fc)
        gflop = pre_gflop + ft_gflop
        rates = cpu_rates(m, isa)[0]
        est = [_vector_seconds(rates, s, p, pre_iters, gflop, ft_gflop)
               for p in _candidate_precisions(s.precision, rates, s.dataset)]
        # like with like: a lane timed at the dataset's own shape beats the FLOP model of another
        seconds = min(sec for sec, shaped in est if shaped == max(shaped for _, shaped in est))
    return RunCost(s.dataset, s.kind, pre_iters, ft_iters, gflop, seconds / 3600, device)


def _vector_seconds(rates: dict[str, Any], s: RunSettings, precision: str, pre_iters: int, gflop: float,
                    ft_gflop: float) -> tuple[float, bool]:
    """Seconds of a vector run in ``precision`` at the measured ``rates`` (bf16 takes the fast lane),
    and whether its pretraining was timed at the dataset's own shape (else the FLOP model)."""
    fast = s.fast_lane or precision == "bf16"
    lane = f"{precision}-{'fast' if fast else 'reference'}"
    rate = rates["vector_pretrain_gflops"][lane]
    measured_ms = rates.get("vector_pretrain_ms_per_iter", {}).get(lane, {}).get(s.dataset)
    if measured_ms is not None and (s.pretrain.batch_size, s.pretrain.queue_size) == _paper_shape(s.dataset):
        return pre_iters * measured_ms / 1e3 + ft_gflop / rate, True      # the dataset's own iteration
    return gflop / rate, False


def guard_image_run(settings: RunSettings, device_arg: str | None, cuda_available: bool,
                    synthetic: bool) -> None:
    """Stop an image run at paper scale that would fall back to the CPU, before any download.

    The estimate is of ``settings`` as resolved (preset and ``--set`` values included). Passing
    ``--device cpu`` explicitly (or ``--scale smoke``, or ``--synthetic``) is the override.
    """
    if (settings.kind != "image" or settings.scale != "paper" or synthetic or cuda_available
            or device_arg is not None):
        return
    est = run_cost(settings, "cpu")
    if est.hours < PAPER_SCALE_GUARD_HOURS:
        return
    raise UserError(f"{settings.dataset} at paper scale needs a GPU: torch sees no CUDA device and "
                    f"this run is estimated at {est.hours:,.0f} CPU-hours ({est.pretrain_iters:,} "
                    f"pretraining iterations of ResNet-50; `mulsupcon-ld cost`). Pass --device cpu "
                    "to run it on the CPU anyway, or --scale smoke for a short run")
