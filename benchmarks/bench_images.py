"""Image pretraining throughput: ResNet-50 MoCo step (fp32 eager vs bf16 + channels_last ± compile)
and the image data loader alone.

One JSON line per measurement on stdout (flushed as soon as it exists)::

    {"mode": "fp32-eager", "batch": 128, "px": 224, "images_per_s": …, "ms_per_iter": …, "device": …}

``images_per_s`` counts *samples* per second of a MoCo pretraining step (Section 4 of the paper:
ResNet-50, batch 128, 224 px): both views of every sample are processed — query encoder forward +
backward on view 1, key encoder forward (no grad) on view 2, a 4096-entry queue of negatives,
AdamW step and momentum update. Inputs are random tensors already on the device, so the model
rows measure compute only; the ``loader`` row measures ``data.images.make_batches`` alone on a
synthetic prepared store (JPEGs with a 256 px shorter side, two SimCLR views per sample, uint8 →
device → normalised float), i.e. whether the loader can keep the model rows fed.

Usage::

    python benchmarks/bench_images.py --device cpu --batch 8 --px 64 --iters 3 --warmup 1   # quick CPU check
    python benchmarks/bench_images.py                                                         # GPU defaults

Defaults on CUDA: batch 128, 224 px, 20 timed iterations after 5 warm-up ones, torch.compile on
(``--compile off`` to skip), a ``--max-seconds`` budget (default 200) after which remaining
measurements are skipped with a ``{"mode": …, "skipped": …}`` line.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

T_START = time.monotonic()

try:  # run from a checkout without `pip install -e .`
    import mulsupcon_ld  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_encoder(proj_dim: int = 256) -> nn.Module:
    """ResNet-50 (torchvision, random init, fc removed) + the project's projection head."""
    try:
        from mulsupcon_ld.encoders import Encoder, build_backbone

        return Encoder(build_backbone("resnet50"), proj_dim, 1, 0.1)
    except Exception:  # pragma: no cover - standalone fallback
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        net.fc = nn.Identity()

        class Enc(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = net
                self.head = nn.Sequential(nn.Linear(2048, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
                                          nn.Dropout(0.1), nn.Linear(1024, proj_dim))

            def forward(self, x):
                h = self.backbone(x)
                return h, self.head(h)

        return Enc()


class MoCoStep:
    """One pretraining step: q = enc_q(v1) (grad), k = enc_k(v2) (no grad), InfoNCE vs a queue."""

    def __init__(self, device: torch.device, bf16: bool, channels_last: bool, compile_: bool,
                 queue: int = 4096, n_labels: int = 20, momentum: float = 0.999, tau: float = 0.1):
        self.device, self.bf16, self.cl = device, bf16, channels_last
        enc_q = build_encoder().to(device)
        enc_k = copy.deepcopy(enc_q)
        for p in enc_k.parameters():
            p.requires_grad_(False)
        if channels_last:
            enc_q = enc_q.to(memory_format=torch.channels_last)
            enc_k = enc_k.to(memory_format=torch.channels_last)
        self.enc_q, self.enc_k = enc_q, enc_k
        self.fc = nn.Linear(2048, n_labels).to(device)
        self.fq = torch.compile(enc_q) if compile_ else enc_q
        self.fk = torch.compile(enc_k) if compile_ else enc_k
        params = list(enc_q.parameters()) + list(self.fc.parameters())
        self.opt = torch.optim.AdamW(params, lr=4e-5, weight_decay=1e-4,
                                     fused=device.type == "cuda")
        self.queue = F.normalize(torch.randn(queue, 256, device=device), dim=1)
        self.q_params = [p for p in enc_q.parameters()]
        self.k_params = [p for p in enc_k.parameters()]
        self.m, self.tau = momentum, tau

    def __call__(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        if self.cl:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        with torch.no_grad():
            torch._foreach_lerp_(self.k_params, self.q_params, 1.0 - self.m)   # momentum update
            with ctx:
                _, pk = self.fk(v2)
            k = F.normalize(pk.float(), dim=1)
        with ctx:
            h, pq = self.fq(v1)
            dist = torch.softmax(self.fc(h).float(), dim=1)
        q = F.normalize(pq.float(), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.T], dim=1) / self.tau
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device)) + 0.0 * dist.sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.queue = torch.cat([k.detach(), self.queue[: -len(k)]])
        return loss.detach()


def time_model(mode: str, args, device: torch.device, bf16: bool, cl: bool, compile_: bool) -> dict:
    torch.manual_seed(0)
    step = MoCoStep(device, bf16, cl, compile_)
    g = torch.Generator(device=device).manual_seed(0)
    v1 = torch.randn(args.batch, 3, args.px, args.px, device=device, generator=g)
    v2 = torch.randn(args.batch, 3, args.px, args.px, device=device, generator=g)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.monotonic()
    for _ in range(args.warmup):
        loss = step(v1, v2)
    sync(device)
    warm_s = time.monotonic() - t0
    t0 = time.monotonic()
    for _ in range(args.iters):
        loss = step(v1, v2)
    sync(device)
    dt = time.monotonic() - t0
    row = {"mode": mode, "batch": args.batch, "px": args.px, "images_per_s": round(args.batch * args.iters / dt, 2),
           "ms_per_iter": round(1000 * dt / args.iters, 2), "iters": args.iters, "warmup": args.warmup,
           "warmup_s": round(warm_s, 2), "bf16_autocast": bf16, "channels_last": cl, "compile": compile_,
           "loss_finite": bool(torch.isfinite(loss).item())}
    if device.type == "cuda":
        row["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def synthetic_photo(rng: np.random.Generator, h: int = 256, w: int = 340) -> np.ndarray:
    """A smooth random image (low-frequency colour field + mild noise) that JPEG-compresses like a
    photo (~20–30 KB at 256×340), unlike pure noise."""
    coarse = rng.integers(0, 256, (5, 7, 3)).astype(np.float32)
    t = torch.from_numpy(coarse).permute(2, 0, 1)[None]
    big = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    big += rng.normal(0, 6, big.shape)
    return np.clip(big, 0, 255).astype(np.uint8)


@contextlib.contextmanager
def loader_batches(args, device: torch.device, augment_on: str):
    """Pretraining batches of ``data.images.image_epoch`` over a synthetic JPEG store, and facts
    about the store; ``augment_on``: ``cpu`` (views in workers) or ``device`` (views on ``device``)."""
    from mulsupcon_ld.data.image_prepare import write_image_dataset
    from mulsupcon_ld.data.images import clear_loader_cache, default_num_workers, image_epoch as make_batches
    from mulsupcon_ld.run_settings import resolve_settings

    workers = default_num_workers(device) if args.workers is None else args.workers
    n_img = max(args.batch * (args.loader_iters + args.warmup), args.batch * 2)
    n_unique = min(n_img, args.loader_unique)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        t0 = time.monotonic()
        pool = [synthetic_photo(rng) for _ in range(n_unique)]
        imgs = [pool[i % n_unique] for i in range(n_img)]
        y = rng.integers(0, 2, (n_img, 20)).astype(np.uint8)
        meta = write_image_dataset(tmp, "bench", [f"l{i}" for i in range(20)],
                                   {"train": (imgs, y), "val": (imgs[:1], y[:1]), "test": (imgs[:1], y[:1])},
                                   synthetic=False)
        info = {"num_workers": workers, "store_images": n_img, "store_write_s": round(time.monotonic() - t0, 2),
                "jpeg_bytes_per_image": int(os.path.getsize(Path(tmp) / "images.bin") / n_img),
                "stored_size": [256, 340], "meta_short_side": meta["image_store"]["short_side"],
                "augment_on": augment_on}
        s = resolve_settings("pascal", overrides=[
            f"pretrain.batch_size={args.batch}", f"data.image_size={args.px}", f"data.num_workers={workers}",
            f"data.augment_on={augment_on}", f"model.channels_last={str(device.type == 'cuda').lower()}"])
        batches = make_batches(tmp, "train", s, "pretrain", seed=0, device=device)
        try:
            yield iter(batches), info
        finally:
            del batches
            clear_loader_cache()


def time_loader(args, device: torch.device, augment_on: str = "cpu", step=None) -> dict:
    """Loader alone (``step`` None) or loader feeding ``step`` (end to end), in samples/s."""
    with loader_batches(args, device, augment_on) as (it, info):
        t0 = time.monotonic()
        for _ in range(args.warmup):          # includes worker start-up (and compilation)
            v1, v2, _ = next(it)
            if step is not None:
                step(v1, v2)
        sync(device)
        warm_s = time.monotonic() - t0
        t0 = time.monotonic()
        n = 0
        for _ in range(args.loader_iters):
            v1, v2, yy = next(it)
            if step is not None:
                step(v1, v2)
            n += v1.shape[0]
        sync(device)
        dt = time.monotonic() - t0
    return {"batch": args.batch, "px": args.px, "images_per_s": round(n / dt, 2),
            "views_per_s": round(2 * n / dt, 2), "ms_per_iter": round(1000 * dt / args.loader_iters, 2),
            "iters": args.loader_iters, "warmup": args.warmup, "warmup_s": round(warm_s, 2), **info}


def time_e2e(args, device: torch.device, augment_on: str, compile_: bool) -> dict:
    """End to end: the loader (views on ``augment_on``) feeding the bf16 + channels_last step."""
    torch.manual_seed(0)
    step = MoCoStep(device, True, device.type == "cuda", compile_)
    row = time_loader(args, device, augment_on, step)
    del step
    return {**row, "bf16_autocast": True, "compile": compile_}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--batch", type=int, default=None, help="default 128 on CUDA, 8 on CPU")
    ap.add_argument("--px", type=int, default=None, help="crop size; default 224 on CUDA, 64 on CPU")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations; default 20 on CUDA, 3 on CPU")
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations; default 5 on CUDA, 1 on CPU")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="also time bf16 + channels_last + torch.compile (auto: on for CUDA)")
    ap.add_argument("--modes", default="fp32-eager,bf16-cl-eager,bf16-cl-compile,loader",
                    help="comma-separated subset of fp32-eager, bf16-cl-eager, bf16-cl-compile, loader, "
                         "loader-device (views made on the device), e2e-cpu, e2e-device (loader feeding "
                         "the bf16 + channels_last step, compiled when --compile is on; ratio_to_model "
                         "divides by the model-only row of the same run)")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: data.images default)")
    ap.add_argument("--loader-iters", type=int, default=None, help="timed loader batches (default: --iters)")
    ap.add_argument("--loader-unique", type=int, default=512, help="distinct images encoded for the loader store")
    ap.add_argument("--max-seconds", type=float, default=200.0,
                    help="skip the remaining measurements once this much time has passed")
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    args.batch = args.batch or (128 if gpu else 8)
    args.px = args.px or (224 if gpu else 64)
    args.iters = args.iters or (20 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    args.loader_iters = args.loader_iters or args.iters
    compile_on = args.compile == "on" or (args.compile == "auto" and gpu)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if gpu:
        torch.backends.cudnn.benchmark = True
    desc = (f"cuda ({torch.cuda.get_device_name(device)})" if gpu
            else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)")
    common = {"device": desc, "torch": torch.__version__}
    emit({"mode": "info", **common, "python": platform.python_version(), "cpus": os.cpu_count(),
          "cudnn_tf32": torch.backends.cudnn.allow_tf32 if gpu else None,
          "matmul_tf32": torch.backends.cuda.matmul.allow_tf32 if gpu else None})
    plan = {"fp32-eager": (False, False, False), "bf16-cl-eager": (True, True, False),
            "bf16-cl-compile": (True, True, True)}
    status = 0
    model_rate: dict[str, float] = {}
    for mode in modes:
        elapsed = time.monotonic() - T_START
        if elapsed > args.max_seconds:
            emit({"mode": mode, "skipped": f"time budget {args.max_seconds}s used ({elapsed:.0f}s)", **common})
            continue
        if mode == "bf16-cl-compile" and not compile_on:
            emit({"mode": mode, "skipped": "--compile off (auto: off on CPU)", **common})
            continue
        try:
            if mode in ("loader", "loader-device"):
                row = {"mode": mode, **time_loader(args, device, "device" if mode == "loader-device" else "cpu")}
            elif mode in ("e2e-cpu", "e2e-device"):
                row = {"mode": mode, **time_e2e(args, device, mode.split("-")[1], compile_on)}
                ref = model_rate.get("bf16-cl-compile" if compile_on else "bf16-cl-eager")
                row["ratio_to_model"] = round(row["images_per_s"] / ref, 3) if ref else None
            elif mode in plan:
                row = time_model(mode, args, device, *plan[mode])
                model_rate[mode] = row["images_per_s"]
            else:
                emit({"mode": mode, "skipped": "unknown mode", **common})
                continue
        except Exception as exc:  # report and go on: one failing mode must not hide the others
            emit({"mode": mode, "error": f"{type(exc).__name__}: {exc}"[:500], **common})
            status = 1
            continue
        emit({**row, **common, "elapsed_s": round(time.monotonic() - T_START, 1)})
    return status


if __name__ == "__main__":
    sys.exit(main())
