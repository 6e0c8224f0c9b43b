"""SimCLR views on the device: batched, per-sample random parameters, no host sync per batch.

The CPU path (:func:`mulsupcon_ld.transforms.simclr_transform`, in DataLoader workers) crops,
flips and jitters each PIL image. On a GPU that loader cannot keep up with the compiled ResNet-50
step (issue 10; docs/performance.md, "SimCLR views on the device"). The device path splits the
work: workers only decode and resize the whole image to a fixed ``S × S`` uint8 tensor
(``precrop_size``, aspect not kept) and report its original ``(H, W)``; here, on the device, each
sample gets

1. a random resized crop, drawn exactly as ``v2.RandomResizedCrop.make_params`` draws it in the
   **original** image's pixel grid (scale ``CROP_SCALE``, log-uniform aspect in (3/4, 4/3), ten
   attempts, then the centre fallback), mapped onto the ``S × S`` grid and resampled to ``px`` by
   ``torchvision.ops.roi_align`` (bilinear, averaging several samples per output pixel when
   shrinking, i.e. antialiased);
2. a horizontal flip with p = 0.5;
3. with p = ``JITTER_P`` colour jitter: brightness, contrast, saturation, hue in a random order per
   sample, factors uniform in ``1 ± 0.4`` and hue in ``± 0.1`` (``transforms.JITTER``), the same
   formulas as ``torchvision.transforms.v2.functional.adjust_*`` (blend, clamp to [0, 1]);
4. grayscale with p = ``GRAYSCALE_P`` (ITU-R 601 luma, three channels).

Where it differs from the CPU path: the crop is resampled from the ``S × S`` pre-image rather
than the full-resolution one (less detail in small crops), and the colour ops run in float with
no uint8 rounding between them. The geometry and every random parameter follow the same
distribution (tests/test_device_augment.py checks it with scipy.stats against ``make_params``).

Parameters are drawn on a CPU :class:`torch.Generator` seeded per batch from the sampler's
per-sample seeds (:class:`mulsupcon_ld.data.images.SeededSampler`), so a batch's views depend on
the seed only, not on the device or the number of workers; only the small parameter tensors move
to the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align

from . import transforms as T

RATIO = (3.0 / 4.0, 4.0 / 3.0)   # v2.RandomResizedCrop's default aspect-ratio range (SimCLR)
CROP_ATTEMPTS = 10               # v2.RandomResizedCrop: ten tries before the centre fallback
HFLIP_P = 0.5
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)   # v2.functional.rgb_to_grayscale


def resolve_augment_on(choice: str, device: torch.device) -> str:
    """``"auto"`` → ``"device"`` on CUDA, ``"cpu"`` elsewhere; other choices pass through."""
    if choice == "auto":
        return "device" if torch.device(device).type == "cuda" else "cpu"
    return choice


def precrop_size(px: int, precrop: int | None = None) -> int:
    """Side of the fixed pre-crop image the workers hand over: ``precrop``, else ``px * 320 / 224``."""
    return int(precrop) if precrop else max(int(px), int(round(px * 320 / 224)))


@dataclass
class ViewParams:
    """Random parameters of one SimCLR view per sample (all tensors of length ``B``, on CPU).

    ``top, left, height, width``: crop box in the original image's pixels (v2.RandomResizedCrop);
    ``flip``, ``jitter``, ``gray``: bool; ``order``: ``[B, 4]`` permutation of (brightness,
    contrast, saturation, hue) as ``v2.ColorJitter``'s ``fn_idx``; ``factors``: ``[B, 4]``.
    """

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    order: torch.Tensor
    factors: torch.Tensor
    gray: torch.Tensor


def _uniform(n: tuple[int, ...], lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def sample_crops(hw: torch.Tensor, gen: torch.Generator,
                 scale: tuple[float, float] = T.CROP_SCALE) -> tuple[torch.Tensor, ...]:
    """``(top, left, height, width)`` per image of sizes ``hw`` ``[B, 2]``, as v2.RandomResizedCrop.

    All attempts are drawn at once; the first that fits is kept (the same distribution as
    torchvision's loop, which stops at it), else the centre crop with the ratio clamped.
    """
    H, W = hw[:, 0].double(), hw[:, 1].double()
    b = len(hw)
    target = (H * W)[:, None] * _uniform((b, CROP_ATTEMPTS), scale[0], scale[1], gen)
    ratio = torch.exp(_uniform((b, CROP_ATTEMPTS), math.log(RATIO[0]), math.log(RATIO[1]), gen))
    w = torch.round(torch.sqrt(target * ratio))
    h = torch.round(torch.sqrt(target / ratio))
    ok = (w > 0) & (w <= W[:, None]) & (h > 0) & (h <= H[:, None])
    first = ok.to(torch.int8).argmax(dim=1, keepdim=True)
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], ok.any(dim=1)
    u = torch.rand((b, 2), generator=gen, dtype=torch.float64)
    top = torch.floor(u[:, 0] * (H - h + 1))
    left = torch.floor(u[:, 1] * (W - w + 1))
    # fallback: whole image, aspect clamped into RATIO, centred
    in_ratio = W / H
    fw = torch.where(in_ratio < RATIO[0], W, torch.where(in_ratio > RATIO[1], torch.round(H * RATIO[1]), W))
    fh = torch.where(in_ratio < RATIO[0], torch.round(W / RATIO[0]), H)
    out = [torch.where(found, a, fb) for a, fb in
           ((top, torch.floor((H - fh) / 2)), (left, torch.floor((W - fw) / 2)), (h, fh), (w, fw))]
    return tuple(t.long() for t in out)


def sample_view(hw: torch.Tensor, gen: torch.Generator) -> ViewParams:
    """Parameters of one SimCLR view for each image of sizes ``hw`` ``[B, 2]`` (original pixels)."""
    b = len(hw)
    top, left, height, width = sample_crops(hw, gen)
    flip = torch.rand(b, generator=gen) < HFLIP_P
    jitter = torch.rand(b, generator=gen) < T.JITTER_P
    order = torch.argsort(torch.rand((b, 4), generator=gen), dim=1)   # a uniform random permutation
    bj, cj, sj, hj = T.JITTER
    factors = torch.stack([_uniform((b,), max(0.0, 1 - bj), 1 + bj, gen), _uniform((b,), max(0.0, 1 - cj), 1 + cj, gen),
                           _uniform((b,), max(0.0, 1 - sj), 1 + sj, gen), _uniform((b,), -hj, hj, gen)], dim=1).float()
    gray = torch.rand(b, generator=gen) < T.GRAYSCALE_P
    return ViewParams(top, left, height, width, flip, jitter, order, factors, gray)


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = f.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Per-sample ``v2.functional.adjust_brightness`` on float ``[B, 3, H, W]`` in [0, 1]."""
    return (x * f.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Per-sample ``adjust_contrast``: blend with the image's mean grey level."""
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), f)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Per-sample ``adjust_saturation``: blend with the grayscale image."""
    return _blend(x, _gray(x), f)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Per-sample ``adjust_hue``: rotate the HSV hue by ``f`` (in turns, |f| ≤ 0.5)."""
    maxc, argmax = x.max(dim=1)
    minc = x.min(dim=1).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    r, g, b = x.unbind(dim=1)
    h = torch.where(argmax == 0, (g - b) / safe, torch.where(argmax == 1, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    h = torch.remainder(h + f.view(-1, 1, 1), 1.0)
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    # HSV → RGB in closed form: channel n (5, 3, 1 for r, g, b) = v - v s clamp(min(k, 4 - k), 0, 1)
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h.unsqueeze(1), 6.0)
    amount = torch.minimum(k, 4.0 - k).clamp(0, 1)
    v = maxc.unsqueeze(1)
    return v - v * s.unsqueeze(1) * amount


_COLOUR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def colour(x: torch.Tensor, p: ViewParams) -> torch.Tensor:
    """Colour jitter (random order per sample, where ``p.jitter``) then grayscale (where ``p.gray``).

    Every op runs on the whole batch and ``torch.where`` keeps it for the samples whose step it
    is: 16 cheap elementwise passes, no data-dependent shapes and so no host sync.
    """
    dev = x.device
    order, factors = p.order.to(dev, non_blocking=True), p.factors.to(dev, non_blocking=True)
    jitter = p.jitter.to(dev, non_blocking=True).view(-1, 1, 1, 1)
    for step in range(4):
        out = x
        for op_id, op in enumerate(_COLOUR_OPS):
            sel = jitter & (order[:, step] == op_id).view(-1, 1, 1, 1)
            out = torch.where(sel, op(x, factors[:, op_id]), out)
        x = out
    gray = p.gray.to(dev, non_blocking=True).view(-1, 1, 1, 1)
    return torch.where(gray, _gray(x).expand_as(x), x)


def crop_flip(x: torch.Tensor, hw: torch.Tensor, p: ViewParams, px: int) -> torch.Tensor:
    """Crop boxes (original pixels) mapped onto the ``S × S`` batch ``x``, resized to ``px``, flipped."""
    b, _, s_h, s_w = x.shape
    hw = hw.double()
    sy, sx = s_h / hw[:, 0], s_w / hw[:, 1]
    boxes = torch.stack([torch.arange(b, dtype=torch.float64), p.left * sx, p.top * sy,
                         (p.left + p.width) * sx, (p.top + p.height) * sy], dim=1)
    boxes = boxes.to(device=x.device, dtype=x.dtype, non_blocking=True)
    out = roi_align(x, boxes, output_size=(px, px), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    flip = p.flip.to(x.device, non_blocking=True).view(-1, 1, 1, 1)
    return torch.where(flip, out.flip(-1), out)


def apply_view(x: torch.Tensor, hw: torch.Tensor, p: ViewParams, px: int) -> torch.Tensor:
    """uint8 ``[B, 3, S, S]`` (any device) → float ``[B, 3, px, px]`` in [0, 1]: one SimCLR view."""
    xf = x.float().div_(255.0)
    return colour(crop_flip(xf, hw, p, px), p)


def batch_generator(seeds: torch.Tensor) -> torch.Generator:
    """CPU generator for one batch, seeded from its first per-sample seed (SeededSampler draws
    them independently per epoch, so the batch seed depends only on the run seed and the epoch)."""
    g = torch.Generator()
    g.manual_seed(int(seeds[0]) & 0x7FFFFFFFFFFFFFFF)
    return g


def simclr_views(x: torch.Tensor, hw: torch.Tensor, seeds: torch.Tensor, px: int,
                 n_views: int) -> list[torch.Tensor]:
    """``n_views`` independent SimCLR views of the batch ``x`` (float in [0, 1], on ``x.device``)."""
    gen = batch_generator(seeds)
    hw = hw.cpu()
    return [apply_view(x, hw, sample_view(hw, gen), px) for _ in range(n_views)]
