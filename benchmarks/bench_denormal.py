"""A pretraining step late in training, with and without flushing subnormal floats, side by side.

    python benchmarks/bench_denormal.py --state OUT/state/pretrain.pt [--dataset delicious]
        [--method cld] [--data-dir data] [--rounds 3]

``--state`` is a checkpoint of a real run (``OUT/state/pretrain.pt`` while it runs, or
``OUT/pretrained.pt``): its model and queues are loaded, so the step sees the values training has
reached (a fresh model has no subnormals; they appear as the fc weights decay under β‖W‖²). Batches
are drawn from the prepared training split (two 50%-masked views). Rounds alternate
``torch.set_flush_denormal(False)`` / ``(True)``, one thread; printed per mode: the best step and
backward milliseconds, and the fraction of subnormal values in the fc weights. One JSON line each.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mulsupcon_ld import train as T
from mulsupcon_ld.data.prepared import load_prepared
from mulsupcon_ld.experiment import build_moco
from mulsupcon_ld.machine import cpu_facts
from mulsupcon_ld.run_settings import resolve_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", required=True)
    ap.add_argument("--dataset", default="delicious")
    ap.add_argument("--method", default="cld")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    s = resolve_settings(args.dataset, overrides=["precision=fp32"])
    x, y = load_prepared(args.dataset, args.data_dir).split("train")
    saved = torch.load(args.state, map_location="cpu", weights_only=True)
    moco = build_moco(s, y.shape[1], x.shape[1])
    moco.load_state_dict(saved["model"])
    moco.train()
    loss_fn = T.make_pretrain_loss(args.method, s.loss, s.pretrain.temperature)
    rng = np.random.default_rng(0)
    w = moco.fc.weight.detach()
    subnormal = float(((w != 0) & (w.abs() < torch.finfo(w.dtype).tiny)).float().mean())

    def step() -> tuple[float, float]:
        idx = rng.choice(len(x), s.pretrain.batch_size, replace=False)
        xb, yb = torch.from_numpy(x[idx]).float(), torch.from_numpy(y[idx]).float()
        t = time.perf_counter()
        out = moco(xb * (torch.rand_like(xb) >= 0.5), xb * (torch.rand_like(xb) >= 0.5), yb)
        loss, _ = loss_fn(out, out.labels, moco)
        tb = time.perf_counter()
        loss.backward()
        end = time.perf_counter()
        moco.zero_grad(set_to_none=True)
        return end - t, end - tb

    best = {False: [float("inf")] * 2, True: [float("inf")] * 2}
    for _ in range(args.rounds):
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            step()                                          # one untimed step after the switch
            for _ in range(args.steps):
                best[flush] = [min(a, b) for a, b in zip(best[flush], step())]
    torch.set_flush_denormal(False)
    for flush, (total, backward) in best.items():
        print(json.dumps({"bench": "denormal", "dataset": args.dataset, "method": args.method,
                          "state_epoch": saved.get("epoch"), "flush_denormal": flush,
                          "step_ms": round(total * 1e3, 1), "backward_ms": round(backward * 1e3, 1),
                          "fc_weight_subnormal_fraction": round(subnormal, 4), **cpu_facts()}), flush=True)


if __name__ == "__main__":
    main()
