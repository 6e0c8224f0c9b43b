"""Delicious' pretraining iteration, this tree against a baseline tree, side by side in one run.

    git worktree add --detach /tmp/base 056f8b2          # the tree before the speed-up (issue 16)
    python benchmarks/bench_delicious.py --baseline-tree /tmp/base [--methods cld,rld,mulsupcon]

For each method, rounds alternate baseline / ours (each in a fresh subprocess with that tree first on
``sys.path``, one thread), every round measuring the marginal milliseconds of an iteration with the
queue full exactly as ``bench_shapes.py`` does (paper batch 128, queue 4096, 500 features, 983 labels,
random data of Delicious' density); the ratio baseline / ours is reported per round and as the ratio
of medians. Beside each figure: GFLOP/s of the iteration's matrix products (this tree's products,
counted by ``torch.utils.flop_counter``, the same count for both trees, so it measures useful work)
and the measured fp32 matmul peak of the same process.

``--check`` also runs one loss + backward step on identical inputs (a queue filled with seeded data,
eval mode: no dropout draws) in both trees and prints the largest relative difference of the loss
and of every gradient (the issue's bar: 1e-5). One JSON line per result.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _child(tree: Path, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(HERE / "bench_delicious.py"), *args], env=env,
                         capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker_time(method: str, iters: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # each tree measures with its own bench_shapes.py (its own settings API); cwd is the tree
    sys.path[:0] = [str(Path.cwd() / "benchmarks"), str(HERE)]
    import bench_pretrain
    import bench_shapes
    import mulsupcon_ld

    torch.set_num_threads(1)
    row = bench_shapes.iteration_ms("delicious", "fp32-fast", method, iters)
    peak = bench_pretrain.matmul_peak(torch.float32)
    counts = []
    for k in (1, 2):       # iteration_ms runs fill + k + m k iterations (m: the tree's, row["iters"])
        with FlopCounterMode(display=False) as fc:
            bench_shapes.iteration_ms("delicious", "fp32-fast", method, k)
        counts.append(fc.get_total_flops())
    per_k = 1 + row["iters"][1] // row["iters"][0]     # the k = 2 call runs per_k iterations more
    return {"ms_per_iter": row["ms_per_iter"], "tree": str(Path(mulsupcon_ld.__file__).parent.parent),
            "fp32_peak_gflops": round(peak, 1), "flops_counted": int((counts[1] - counts[0]) / per_k)}


def worker_grads(method: str, path: str, dtype: str) -> dict:
    """Loss and gradients of one step on seeded inputs in ``dtype``, saved to ``path``."""
    import torch

    from mulsupcon_ld import train as T
    from mulsupcon_ld.experiment import build_moco

    torch.set_num_threads(1)
    try:                                   # the settings object (since issue 18) or the older dict
        from mulsupcon_ld.run_settings import resolve_settings
        s = resolve_settings("delicious", overrides=["precision=fp32"])
        loss_cfg, temperature = s.loss, s.pretrain.temperature
    except ImportError:                    # a baseline tree before issue 18 (e.g. 056f8b2): its own API
        from mulsupcon_ld.settings import get_settings
        s = get_settings("delicious")
        loss_cfg, temperature = s["loss"], s["pretrain"]["temperature"]
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    moco = build_moco(s, 983, 500).to(dt)
    moco.eval()                                   # no dropout draws, BN running statistics
    g = torch.Generator().manual_seed(1)
    for _ in range(32):                            # fill the 4096-slot queue with seeded data
        k = torch.nn.functional.normalize(torch.randn(128, moco.queue.shape[1], generator=g, dtype=dt), dim=1)
        y = (torch.rand(128, 983, generator=g) < 19 / 983).to(dt)
        dist = torch.softmax(torch.randn(128, 983, generator=g, dtype=dt) * 3, 1)
        moco.enqueue(k, y, dist)
    x1, x2 = torch.randn(128, 500, generator=g, dtype=dt), torch.randn(128, 500, generator=g, dtype=dt)
    y = (torch.rand(128, 983, generator=g) < 19 / 983).to(dt)
    loss_fn = T.make_pretrain_loss(method, loss_cfg, temperature)
    out = moco(x1, x2, y)
    loss, _ = loss_fn(out, y, moco)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in moco.named_parameters() if p.grad is not None}
    torch.save({"loss": loss.detach(), "grads": grads}, path)
    return {"saved": path}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-tree", type=Path)
    ap.add_argument("--methods", default="cld,rld,mulsupcon")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--worker", choices=("time", "grads"))
    ap.add_argument("--method", default="cld")
    ap.add_argument("--path")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    if args.worker == "time":
        print(json.dumps(worker_time(args.method, args.iters)))
        return
    if args.worker == "grads":
        print(json.dumps(worker_grads(args.method, args.path, args.dtype)))
        return
    if args.baseline_tree is None:
        sys.exit("error: --baseline-tree PATH is required (a checkout of the commit to compare with)")
    sys.path.insert(0, str(HERE))
    import bench_pretrain

    ours_tree = HERE.parent
    facts = bench_pretrain.cpu_facts()
    for method in args.methods.split(","):
        base, ours = [], []
        for _ in range(args.rounds):
            base.append(_child(args.baseline_tree, "--worker", "time", "--method", method, "--iters", str(args.iters)))
            ours.append(_child(ours_tree, "--worker", "time", "--method", method, "--iters", str(args.iters)))
        mb = statistics.median(r["ms_per_iter"] for r in base)
        mo = statistics.median(r["ms_per_iter"] for r in ours)
        flops = ours[0]["flops_counted"]
        peak = statistics.median([r["fp32_peak_gflops"] for r in base + ours])
        print(json.dumps({
            "bench": "delicious_side_by_side", "method": method, "batch": 128, "queue": 4096, "labels": 983,
            "baseline_tree": str(args.baseline_tree), "baseline_ms": [r["ms_per_iter"] for r in base],
            "ours_ms": [r["ms_per_iter"] for r in ours],
            "ratio_per_round": [round(b["ms_per_iter"] / o["ms_per_iter"], 2) for b, o in zip(base, ours)],
            "speedup_median": round(mb / mo, 2), "mflop_per_iter": round(flops / 1e6, 1),
            "baseline_gflops": round(flops / mb / 1e6, 1), "ours_gflops": round(flops / mo / 1e6, 1),
            "fp32_matmul_peak_gflops": peak, "ours_fraction_of_peak": round(flops / mo / 1e6 / peak, 3),
            **facts, "load_1min": round(os.getloadavg()[0], 2)}), flush=True)
        if args.check:
            import torch

            def rel(x, y):   # largest difference relative to the tensor's largest entry
                return float((x - y).abs().max() / y.abs().max().clamp_min(1e-300))

            for dtype in ("float32", "float64"):
                with tempfile.TemporaryDirectory() as tmp:
                    for tree, name in ((args.baseline_tree, "b"), (ours_tree, "o")):
                        _child(tree, "--worker", "grads", "--method", method, "--dtype", dtype,
                               "--path", f"{tmp}/{name}.pt")
                    b, o = torch.load(f"{tmp}/b.pt"), torch.load(f"{tmp}/o.pt")
                worst = {n: rel(o["grads"][n], g) for n, g in b["grads"].items()}
                print(json.dumps({"bench": "delicious_numerics", "method": method, "dtype": dtype,
                                  "loss_baseline": float(b["loss"]), "loss_ours": float(o["loss"]),
                                  "loss_rel_diff": rel(o["loss"], b["loss"]),
                                  "max_grad_rel_diff": max(worst.values()), "n_grads": len(worst),
                                  "same_grad_names": sorted(o["grads"]) == sorted(b["grads"])}), flush=True)


if __name__ == "__main__":
    main()
