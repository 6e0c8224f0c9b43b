"""Pretraining iteration of every vector dataset's shape, with its queue full, per lane.

Prints one JSON line per (dataset, lane)::

    python benchmarks/bench_shapes.py [--datasets yeast,scene,bookmarks,delicious,mediamill]
        [--lanes fp32-fast,fp32-reference] [--iters 20] [--threads 1]

Data: random features and labels of the dataset's shape (n_features, n_labels, about its labels
per sample from Table 1), so nothing needs downloading; the time of an iteration does not depend
on the values. The model, batch and queue sizes are the dataset's paper settings. The queue is
filled first (ceil(queue / batch) + 2 iterations, untimed), then two calls of
:func:`mulsupcon_ld.train.pretrain` of ``--iters`` and ``3 x --iters`` iterations are timed and the
difference divided by ``2 x --iters`` (:class:`mulsupcon_ld.precision.IterationTimer`, which
``precision=auto`` calibrates with): the marginal cost of an iteration, without the per-call
optimiser set-up and checkpoint (which a 400-epoch run pays per epoch; see ``per_call_ms``). The numbers go into
``mulsupcon_ld/cost_measurements.json`` (``vector_pretrain_ms_per_iter``), where ``mulsupcon-ld
cost`` takes them instead of the FLOP model: the FLOP model counts the similarity products only
and misses the label products of many-label shapes (Delicious: 2.7x too low).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from mulsupcon_ld.experiment import build_moco
from mulsupcon_ld.machine import cpu_facts
from mulsupcon_ld.precision import IterationTimer
from mulsupcon_ld.run_settings import resolve_settings


def iteration_ms(dataset: str, lane: str, method: str, iters: int) -> dict:
    precision, _, hotpath = lane.partition("-")
    s = resolve_settings(dataset, overrides=[f"pretrain.hotpath={hotpath}", f"precision={precision}"])
    spec = s.spec
    timer = IterationTimer(s, method, build_moco)
    t = time.perf_counter()
    ms = timer.ms(iters)
    return {"bench": "shapes", "dataset": s.dataset, "lane": lane, "method": method, "batch": s.pretrain.batch_size,
            "queue": s.pretrain.queue_size, "queue_filled": int(timer.moco.queue_count), "n_features": spec.n_features,
            "n_labels": spec.n_labels, "ms_per_iter": round(ms, 2),
            "per_call_ms": round(((time.perf_counter() - t) * 1e3 - 4 * iters * ms) / 2, 1), "iters": [iters, 3 * iters],
            "threads": torch.get_num_threads(), "torch": torch.__version__, "load_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="yeast,scene,bookmarks,delicious,mediamill")
    ap.add_argument("--lanes", default="fp32-fast,fp32-reference")
    ap.add_argument("--method", default="cld")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    facts = cpu_facts()
    for dataset in args.datasets.split(","):
        for lane in args.lanes.split(","):
            print(json.dumps({**iteration_ms(dataset, lane, args.method, args.iters), **facts}), flush=True)


if __name__ == "__main__":
    main()
