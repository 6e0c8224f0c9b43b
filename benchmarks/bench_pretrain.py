"""Pretraining throughput for the Yeast configuration, data pipeline included.

Prints one JSON line per measurement::

    python benchmarks/bench_pretrain.py [--raw-dir ../shared/data] [--data-dir ./data] [--iters 300]

Measures :func:`mulsupcon_ld.train.pretrain` end to end (batches from
:class:`~mulsupcon_ld.augment.VectorBatches` with 50% masking of two views, MoCo forward, the loss,
backward, AdamW, scheduler, enqueue) for batch 128 / queue 256 (the paper's Yeast setting) and
batch 64 / queue 256 (MulSupCon's Yeast config), for each method; plus the data pipeline alone.
Uses the prepared Yeast under ``--data-dir`` (preparing it from ``--raw-dir`` if given), else a
synthetic matrix of Yeast's shape (1200 × 103, 14 labels). Peak memory is the process's maximum
resident set size (``resource.getrusage``), which covers torch's allocations (tracemalloc does not).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mulsupcon_ld import train as T
from mulsupcon_ld.augment import VectorBatches
from mulsupcon_ld.experiment import build_moco
from mulsupcon_ld.settings import get_settings


def load_yeast(raw_dir: str | None, data_dir: str) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from mulsupcon_ld import data

        if raw_dir:
            prepared = data.ensure_prepared("yeast", Path(raw_dir), Path(data_dir))
        else:
            prepared = data.load_prepared("yeast", Path(data_dir))
        x, y = prepared.split("train")
        return x, y, "prepared yeast"
    except Exception as exc:  # noqa: BLE001 - any failure means: fall back to synthetic
        print(f"# no prepared yeast ({type(exc).__name__}: {exc}); using synthetic data of its shape",
              file=sys.stderr)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 103)).astype(np.float32)
    y = (rng.random((1200, 14)) < 0.3).astype(np.uint8)
    return x, y, "synthetic 1200x103x14"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_data(x, y, batch: int, iters: int) -> float:
    vb = VectorBatches(x, y, batch, mask=0.5, two_views=True, iters_per_epoch=iters, seed=0)
    for _ in vb.epoch(0):
        pass
    t = time.perf_counter()
    for _ in vb.epoch(1):
        pass
    return (time.perf_counter() - t) / iters * 1e3


def bench_pretrain(x, y, method: str, batch: int, queue: int, iters: int) -> dict:
    s = get_settings("yeast", overrides=[f"pretrain.batch_size={batch}", f"pretrain.queue_size={queue}"])
    p = dict(s["pretrain"], epochs=1, iters_per_epoch=iters)
    loss_fn = T.make_pretrain_loss(method, s["loss"], p["temperature"])
    dev = torch.device("cpu")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(2):  # the first repetition is a warm-up
            torch.manual_seed(0)
            moco = build_moco(s, y.shape[1], x.shape[1])
            vb = VectorBatches(x, y, batch, mask=p["mask"], two_views=True, iters_per_epoch=iters, seed=rep)
            t = time.perf_counter()
            T.pretrain(moco, vb, p, loss_fn, seed=rep, device=dev, state_path=Path(tmp) / f"{rep}.pt",
                       config_hash="bench", log_every=10**9)
            results.append(time.perf_counter() - t)
    elapsed = results[-1]
    return {"iters": iters, "iters_per_s": round(iters / elapsed, 1), "ms_per_iter": round(elapsed / iters * 1e3, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw-dir", default=None)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--methods", default="mulsupcon,rld,cld")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, source = load_yeast(args.raw_dir, args.data_dir)
    common = {"bench": "pretrain", "dataset": "yeast", "data": source, "n_train": int(x.shape[0]),
              "device": f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)", "torch": torch.__version__}
    for batch, queue in ((128, 256), (64, 256)):
        print(json.dumps({**common, "what": "data pipeline only (2 masked views)", "batch": batch,
                          "ms_per_batch": round(bench_data(x, y, batch, args.iters), 3)}), flush=True)
        for method in args.methods.split(","):
            r = bench_pretrain(x, y, method, batch, queue, args.iters)
            print(json.dumps({**common, "what": "pretrain iteration incl. data", "method": method, "batch": batch,
                              "queue": queue, **r, "peak_rss_mb": round(peak_rss_mb(), 1)}), flush=True)


if __name__ == "__main__":
    main()
