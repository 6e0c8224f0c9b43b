"""Pretraining throughput for Yeast per precision, data pipeline included, beside the machine's peak.

Prints one JSON line per measurement::

    python benchmarks/bench_pretrain.py [--raw-dir ../shared/data] [--data-dir ./data] [--iters 1000]
        [--rounds 5] [--lanes fp32-reference,fp32-fast,bf16-fast] [--peer /work/perf-peer/MulSupCon/codes]
        [--threads 1]

First a line naming the CPU (model, the instruction sets that decide the bf16 rate: AVX-512,
AVX512-BF16, AMX). For every lane (precision + ``pretrain.hotpath``): the machine's measured
matrix-product peak for that dtype (2048^3, same run), then :func:`mulsupcon_ld.train.pretrain` end to end (batches from
:class:`~mulsupcon_ld.augment.VectorBatches` with 50% masking of two views, MoCo forward, loss,
backward, AdamW, scheduler, enqueue, and the one checkpoint at the end) for batch 128 / queue 256
(the paper's Yeast setting) and batch 64 / queue 256 (MulSupCon's Yeast config), with achieved
GFLOP/s (FLOPs of one iteration counted by ``torch.utils.flop_counter``, matrix products only).
With ``--peer DIR`` (the ``codes/`` folder of a clone of williamzhangsjtu/MulSupCon) the
published code's pretraining iteration at its own Yeast setting (batch 64, queue 256, its
Dataset / RandomSampler / StandardScaler + mask transform in process, Adam, WeightedSupCon) is
timed in the same rounds, interleaved with ours, and the ratio printed. Then the paper-budget
Yeast estimate: 400 x 1000 pretraining iterations plus 100 fine-tuning epochs. Last, what
``precision=auto`` chooses on this machine for each measured (method, batch, queue), with the two
rates its own calibration measured (:func:`mulsupcon_ld.precision.decide`, as a run calls it).

The machine is shared: every time is the minimum over ``--rounds`` interleaved rounds of
``--iters`` iterations, and the 1-minute load average is printed beside the numbers. A round is
one epoch of the published Yeast config by default (1000 iterations, its ``iters_per_epoch``), so
what a round costs once (a fresh model and optimiser, the checkpoint at its end: about 20 ms)
weighs on an iteration as in that config's runs; with 100 it added ~0.2 ms (4%) to ours, while the
published iteration is timed without its model set-up or checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mulsupcon_ld import train as T
from mulsupcon_ld.augment import VectorBatches
from mulsupcon_ld.experiment import build_moco
from mulsupcon_ld.machine import cpu_description, cpu_facts, matmul_peak, native_bf16_cpu
from mulsupcon_ld.precision import calibrate, decide
from mulsupcon_ld.run_settings import resolve_settings

PAPER_PRETRAIN_ITERS = 400 * 1000   # the published code's "400 epochs" of 1000 iterations (Yeast)


def load_yeast(raw_dir: str | None, data_dir: str) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from mulsupcon_ld.data.prepare import ensure_prepared
        from mulsupcon_ld.data.prepared import load_prepared

        if raw_dir:
            prepared = ensure_prepared("yeast", Path(raw_dir), Path(data_dir))
        else:
            prepared = load_prepared("yeast", Path(data_dir))
        x, y = prepared.split("train")
        return x, y, "prepared yeast"
    except Exception as exc:  # noqa: BLE001 - any failure means: fall back to synthetic
        print(f"# no prepared yeast ({type(exc).__name__}: {exc}); using synthetic data of its shape",
              file=sys.stderr)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 103)).astype(np.float32)
    y = (rng.random((1200, 14)) < 0.3).astype(np.uint8)
    return x, y, "synthetic 1200x103x14"


def load() -> float:
    return round(os.getloadavg()[0], 2)


class OurStep:
    """``iters`` iterations of :func:`train.pretrain` for one (method, batch, queue, precision, lane)."""

    def __init__(self, x, y, method: str, batch: int, queue: int, precision: str, tmp: Path,
                 hotpath: str = "reference"):
        self.s = resolve_settings("yeast", overrides=[f"pretrain.batch_size={batch}", f"pretrain.queue_size={queue}",
                                                      f"pretrain.hotpath={hotpath}", f"precision={precision}"])
        self.loss_fn = T.make_pretrain_loss(method, self.s.loss, self.s.pretrain.temperature)
        self.x, self.y, self.batch, self.precision, self.tmp = x, y, batch, precision, tmp
        self.calls = 0

    def run(self, iters: int) -> float:
        """Seconds for ``iters`` iterations (one fresh model and optimiser, as a run's first epoch)."""
        s = replace(self.s, pretrain=replace(self.s.pretrain, epochs=1, iters_per_epoch=iters), log_every=10**9)
        torch.manual_seed(0)
        moco = build_moco(s, self.y.shape[1], self.x.shape[1])
        vb = VectorBatches(self.x, self.y, self.batch, mask=s.pretrain.mask, two_views=True,
                           iters_per_epoch=iters, seed=self.calls)
        self.calls += 1
        state = self.tmp / f"s{self.calls}.pt"
        t = time.perf_counter()
        T.pretrain(moco, vb, s, self.loss_fn, seed=0, device=torch.device("cpu"), state_path=state,
                   config_hash="bench")
        elapsed = time.perf_counter() - t
        state.unlink(missing_ok=True)
        return elapsed

    def flops(self) -> int:
        """FLOPs of one iteration (matrix products, forward + backward), counted by torch."""
        with FlopCounterMode(display=False) as fc:
            self.run(1)
        return int(fc.get_total_flops())


def peer_step(peer: Path, batch: int = 64, queue: int = 256) -> Callable[[int], float]:
    """The published pretraining iteration (codes/main.py ``Runner.pretrain._train``) on CPU."""
    sys.path.insert(0, str(peer))
    import dataloader as pdl  # noqa: E402  (the published code's modules, from --peer)
    import losses as plo
    import models as pmo
    import utils as put

    h5 = str(peer.parent / "data" / "yeast_official_train.hdf5")
    torch.manual_seed(0)
    transform, _ = put.get_transform(is_image=False, h5=h5, p=0.5)
    loader = pdl.create_dataloader(input_h5=h5, indices=put.parse_data(h5, seed=0), is_eval=False, seed=0,
                                   transform=transform, is_image=False, batch_size=batch, num_workers=0)
    model = pmo.PretrainModel(backbone="MLP", backbone_kwargs={"in_dim": 103}, n_class=14,
                              output_func=put.get_output_func("MulSupCon", False), cap_Q=queue,
                              momentum=0.999, out_dim=256, n_hidden=1)
    crit = plo.WeightedSupCon(temperature=0.1)
    opt = torch.optim.Adam(model.get_config_optim(4e-4, 1), lr=4e-4, weight_decay=1e-5)
    batches = iter(loader)

    def run(iters: int) -> float:
        t = time.perf_counter()
        for _ in range(iters):
            model.train()
            inputs, targets = next(batches)
            score, mask = model(inputs, targets)
            loss = crit(score, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
        return time.perf_counter() - t

    run(2 * queue // batch)   # until its queue is full (QueueFull), the loss uses the batch only
    return run


def finetune_epoch_s(x, y, precision: str, rounds: int) -> tuple[float, int]:
    """Seconds per fine-tuning epoch (train + validation pass) at Yeast's settings, best of ``rounds``."""
    from mulsupcon_ld.encoders import Classifier

    s = resolve_settings("yeast", overrides=[f"precision={precision}"])
    s = replace(s, finetune=replace(s.finetune, epochs=1), log_every=10**9)
    ft = s.finetune
    n_val = max(1, len(x) // 5)
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            torch.manual_seed(0)
            model = Classifier.from_pretrained(build_moco(s, y.shape[1], x.shape[1]))
            train = VectorBatches(x[n_val:], y[n_val:], ft.batch_size, mask=ft.mask, seed=r)
            val = VectorBatches(x[:n_val], y[:n_val], ft.eval_batch_size, shuffle=False)
            t = time.perf_counter()
            T.finetune(model, train, val, s, seed=0, device=torch.device("cpu"), state_path=Path(tmp) / f"f{r}.pt",
                       config_hash="bench")
            best = min(best, time.perf_counter() - t)
    return best, len(train)


def auto_choice(method: str, batch: int, queue: int) -> dict:
    """What ``precision=auto`` picks for this Yeast pretraining shape here, and its calibration's rates."""
    s = resolve_settings("yeast", overrides=[f"pretrain.batch_size={batch}", f"pretrain.queue_size={queue}",
                                             "precision=auto"])
    choice = decide("auto", "cpu", native_bf16_cpu(), lambda: calibrate(s, method, build_moco), cpu_description())
    return choice.to_dict()


def common_arguments(description: str) -> argparse.ArgumentParser:
    """The benchmark's data, rounds and peer options."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--raw-dir", default=None)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--peer", default=os.environ.get("MULSUPCON_PEER"),
                    help="codes/ folder of a clone of the published MulSupCon (env MULSUPCON_PEER)")
    return ap


def main() -> None:
    ap = common_arguments(__doc__.splitlines()[0])
    ap.add_argument("--methods", default="cld,rld,mulsupcon")
    ap.add_argument("--lanes", default="fp32-reference,fp32-fast,bf16-fast",
                    help="PRECISION-HOTPATH pairs (precision fp32|bf16, pretrain.hotpath reference|fast)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the jobs run)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y, source = load_yeast(args.raw_dir, args.data_dir)
    common = {"bench": "pretrain", "dataset": "yeast", "data": source, "n_train": int(x.shape[0]),
              "device": f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
              "torch": torch.__version__, "iters": args.iters, "rounds": args.rounds}

    def emit(**row):
        print(json.dumps({**common, **row, "load_1min": load()}), flush=True)

    emit(what="machine", **cpu_facts())
    peer = peer_step(Path(args.peer)) if args.peer else None
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for lane in args.lanes.split(","):
            precision, _, hotpath = lane.partition("-")
            hotpath = hotpath or "reference"
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            if precision not in peaks:
                peaks[precision] = matmul_peak(dtype)
                emit(what="matmul peak 2048^3", precision=precision, gflops=round(peaks[precision], 1))
            peak = peaks[precision]
            for batch, queue in ((128, 256), (64, 256)):
                methods = args.methods.split(",") if batch == 128 else ["mulsupcon"]
                for method in methods:
                    ours = OurStep(x, y, method, batch, queue, precision, Path(tmp), hotpath)
                    flops = ours.flops()
                    ours.run(10)                                         # warm-up
                    times, peer_times = [], []
                    for _ in range(args.rounds):
                        times.append(ours.run(args.iters) / args.iters)
                        if peer is not None and batch == 64:
                            peer_times.append(peer(args.iters) / args.iters)
                    ms = min(times) * 1e3
                    row = dict(what="pretrain iteration incl. data", precision=precision, hotpath=hotpath,
                               method=method,
                               batch=batch, queue=queue, ms_per_iter=round(ms, 3),
                               ms_per_iter_median=round(float(np.median(times)) * 1e3, 3),
                               mflop_per_iter=round(flops / 1e6, 1), gflops=round(flops / ms / 1e6, 1),
                               peak_gflops=round(peak, 1), fraction_of_peak=round(flops / ms / 1e6 / peak, 3))
                    if peer_times:
                        peer_ms = min(peer_times) * 1e3
                        row.update(published_ms_per_iter=round(peer_ms, 3),
                                   published_setting="batch 64, queue 256, its Dataset/RandomSampler/"
                                                     "transform in process, Adam, WeightedSupCon (MulSupCon)",
                                   speedup_vs_published=round(peer_ms / ms, 2))
                    emit(**row)
                    if batch == 128 and method == "cld":
                        ft_s, ft_iters = finetune_epoch_s(x, y, precision, min(3, args.rounds))
                        total = PAPER_PRETRAIN_ITERS * ms / 1e3 + 100 * ft_s
                        emit(what="paper-budget Yeast CLD estimate", precision=precision, hotpath=hotpath,
                             pretrain_iters=PAPER_PRETRAIN_ITERS, pretrain_ms_per_iter=round(ms, 3),
                             finetune_epochs=100, finetune_s_per_epoch=round(ft_s, 3),
                             finetune_iters_per_epoch=ft_iters, minutes=round(total / 60, 1))
    for batch, queue in ((128, 256), (64, 256)):
        for method in (args.methods.split(",") if batch == 128 else ["mulsupcon"]):
            emit(what="precision=auto choice", method=method, batch=batch, queue=queue,
                 **auto_choice(method, batch, queue))


if __name__ == "__main__":
    main()
