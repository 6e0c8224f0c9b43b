"""Forward+backward time of the vectorised losses against their literal per-anchor form (Algorithm 1).

Not part of the test suite. Prints one JSON line per measurement:
``{"loss", "B", "K", "C", "ms", "literal_ms", "speedup", ...}`` (ms = median wall time of one
forward+backward; extra fields: d, labels/sample, repetitions, threads, device, and for MulSupCon
``expanded_ms``: the per-(anchor, label) expansion that MulSupCon's published code uses,
re-written here from its description, timed like ``ms``).

The literal form is tests/oracle_losses.py (put on sys.path here); it is slow, so it is timed with
fewer repetitions. Shapes (Section 4 / Table 1): Bookmarks (B=256, K=8192, C=208, 2.03 labels per
sample), Delicious (B=128, K=4096, C=983, 19.07), Yeast (B=128, K=256, C=14, 4.23); d = 256 (the
projection size of MulSupCon's reference configs). Labels are Bernoulli with Zipf-like label
frequencies (exponent 1) scaled to the mean labels/sample, so frequent labels make ANY sets denser
than uniform labels would.

    python benchmarks/bench_loss.py [--shapes bookmarks,delicious,yeast] [--losses mulsupcon,rld,cld]
                                    [--reps 10] [--literal-reps 2] [--device cpu] [--no-literal]
                                    [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from mulsupcon_ld.losses import ld_loss, mulsupcon_loss  # noqa: E402
from oracle_losses import literal_ld_loss, literal_mulsupcon_loss  # noqa: E402

SHAPES = {
    "bookmarks": dict(B=256, K=8192, C=208, L=2.03),
    "delicious": dict(B=128, K=4096, C=983, L=19.07),
    "yeast": dict(B=128, K=256, C=14, L=4.23),
    # the shape of the reference timing of MulSupCon's published code (~40 ms on 2 cores)
    "bookmarks-b128": dict(B=128, K=8192, C=208, L=2.03),
}
D_EMB = 256


def make_labels(n: int, C: int, mean_labels: float, g: torch.Generator) -> torch.Tensor:
    freq = 1.0 / torch.arange(1, C + 1, dtype=torch.float64)
    freq = freq[torch.randperm(C, generator=g)]
    p = (freq * mean_labels / freq.sum()).clamp(max=0.95)
    for _ in range(20):    # rescale after clipping so the mean stays at mean_labels
        p = (p * mean_labels / p.sum()).clamp(max=0.95)
    return (torch.rand(n, C, generator=g, dtype=torch.float64) < p).float()


def make_inputs(B, K, C, L, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    yq = make_labels(B, C, L, g)
    yk = torch.cat([yq, make_labels(K - B, C, L, g)])
    q_raw = torch.randn(B, D_EMB, generator=g)
    keys = F.normalize(torch.randn(K, D_EMB, generator=g), dim=1)
    logits = torch.randn(B, C, generator=g)
    queue_dist = torch.softmax(torch.randn(K - B, C, generator=g), dim=1)
    w = torch.randn(C, 512, generator=g) * 0.05
    to = dict(device=device)
    return dict(q_raw=q_raw.to(**to), keys=keys.to(**to), yq=yq.to(**to), yk=yk.to(**to),
                logits=logits.to(**to), queue_dist=queue_dist.to(**to), w=w.to(**to))


def expanded_mulsupcon(query, keys, query_labels, key_labels, temperature=0.1):
    """MulSupCon as its published implementation organises it (our code, from its description):
    one row per (anchor, label) pair, a [pairs, K] positive mask from the label's key column,
    mean -log softmax over the positives, averaged over all pairs (= eq. 4's 1/sum_i |y_i|)."""
    rows, labels = query_labels.nonzero(as_tuple=True)
    logp = torch.log_softmax(query @ keys.t() / temperature, dim=1)[rows]
    mask = key_labels[:, labels].t()
    return (-(logp * mask).sum(1) / mask.sum(1)).sum() / rows.numel()


def published_mulsupcon(peer: str):
    """The published MulSupCon loss itself (``--peer``: the ``codes/`` folder of a clone of
    williamzhangsjtu/MulSupCon): ``utils.get_output_func("MulSupCon")`` (models.py computes the
    scores as q @ keys^T) then ``losses.WeightedSupCon``, imported from that folder, not copied."""
    sys.path.insert(0, peer)
    import losses as peer_losses  # noqa: E402
    import utils as peer_utils

    output_func = peer_utils.get_output_func("MulSupCon", with_weight=False)

    def loss(query, keys, query_labels, key_labels, temperature=0.1):
        score, ref = output_func(query_labels, key_labels, query @ keys.t())
        return peer_losses.WeightedSupCon(temperature)(score, ref)

    return loss


def step(fn, inp, loss):
    q_raw = inp["q_raw"].detach().requires_grad_(True)
    logits = inp["logits"].detach().requires_grad_(True)
    w = inp["w"].detach().requires_grad_(True)
    query = F.normalize(q_raw, dim=1)
    if loss == "mulsupcon":
        out = fn(query, inp["keys"], inp["yq"], inp["yk"], temperature=0.1)
    else:
        qd = torch.softmax(logits, dim=1)
        kd = torch.cat([qd, inp["queue_dist"]])
        out = fn(query, inp["keys"], inp["yq"], inp["yk"], qd, kd, w, variant=loss, alpha=0.01,
                 beta=0.01, sigma=0.01, temperature=0.1)
    out.backward()
    return out


def timed(fn, inp, loss, reps, device, warmup=1):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    for _ in range(warmup):
        step(fn, inp, loss)
    sync()
    times = []
    value = None
    for _ in range(reps):
        t0 = time.perf_counter()
        value = step(fn, inp, loss)
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), float(value.detach())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="bookmarks,delicious,yeast")
    ap.add_argument("--losses", default="mulsupcon,rld,cld")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--literal-reps", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-literal", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--peer", default=os.environ.get("MULSUPCON_PEER"),
                    help="codes/ folder of a clone of the published MulSupCon: time its loss beside ours")
    args = ap.parse_args(argv)
    published = published_mulsupcon(args.peer) if args.peer else None
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fast = {"mulsupcon": mulsupcon_loss, "rld": ld_loss, "cld": ld_loss}
    slow = {"mulsupcon": literal_mulsupcon_loss, "rld": literal_ld_loss, "cld": literal_ld_loss}
    for shape in args.shapes.split(","):
        cfg = SHAPES[shape]
        inp = make_inputs(cfg["B"], cfg["K"], cfg["C"], cfg["L"], device)
        for loss in args.losses.split(","):
            ms, value = timed(fast[loss], inp, loss, args.reps, device)
            row = {"loss": loss, "B": cfg["B"], "K": cfg["K"], "C": cfg["C"], "ms": round(ms, 2)}
            if loss == "mulsupcon":     # the other yardstick: the per-label expansion
                exp_ms, _ = timed(expanded_mulsupcon, inp, loss, args.reps, device)
                row["expanded_ms"] = round(exp_ms, 2)
                if published is not None:   # interleaved min-of-3 medians: the machine is shared
                    pub, ours = [], []
                    for _ in range(3):
                        pub.append(timed(published, inp, loss, args.reps, device)[0])
                        ours.append(timed(fast[loss], inp, loss, args.reps, device)[0])
                    row.update(ms=round(min(ours), 2), published_ms=round(min(pub), 2),
                               speedup_vs_published=round(min(pub) / min(ours), 2))
                    ms = min(ours)
            if not args.no_literal:
                lit_ms, lit_value = timed(slow[loss], inp, loss, args.literal_reps, device, warmup=0)
                row.update(literal_ms=round(lit_ms, 1), speedup=round(lit_ms / ms, 1),
                           rel_diff=abs(value - lit_value) / max(abs(lit_value), 1e-12))
            else:
                row.update(literal_ms=None, speedup=None)
            row.update(shape=shape, d=D_EMB, labels_per_sample=round(float(inp["yq"].sum(1).mean()), 2),
                       reps=args.reps, literal_reps=0 if args.no_literal else args.literal_reps,
                       threads=torch.get_num_threads(), device=str(device))
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
