"""Image augmentations: SimCLR views for pretraining, resize + centre crop for evaluation.

The paper (Section 4, Settings): "we will resize the images to 224×224 and employ the data
augmentation scheme from SimCLR (Chen et al., 2020)". SimCLR's scheme is a random resized crop,
a horizontal flip, colour distortion (colour jitter applied with probability 0.8, random
grayscale with probability 0.2) and, for ImageNet, a Gaussian blur. We use the jitter strengths
(brightness, contrast, saturation, hue) = (0.4, 0.4, 0.4, 0.1) of SupCon/MoCo v2 (SimCLR's
colour-distortion strength s = 0.5); the blur is off by default and can be switched on
(``blur=True``). Evaluation uses the usual resize-to-256 (shorter side) + centre crop 224, scaled
proportionally when ``px`` is not 224.

The transforms run in DataLoader workers on PIL images and return **uint8** CHW tensors; the
float conversion and ImageNet normalisation happen on the device (:func:`normalize_batch`), so a
batch crosses the PCIe bus at a quarter of the float32 size.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# SimCLR's RandomResizedCrop scale range (torchvision's default), aspect ratio (3/4, 4/3)
CROP_SCALE = (0.08, 1.0)
JITTER = (0.4, 0.4, 0.4, 0.1)
JITTER_P = 0.8
GRAYSCALE_P = 0.2


def eval_resize(px: int) -> int:
    """Shorter side before the centre crop: 256 for 224, scaled proportionally otherwise."""
    return max(int(px), int(round(px * 256 / 224)))


def simclr_transform(px: int = 224, *, scale: tuple[float, float] = CROP_SCALE,
                     jitter: tuple[float, float, float, float] = JITTER, jitter_p: float = JITTER_P,
                     grayscale_p: float = GRAYSCALE_P, blur: bool = False) -> v2.Compose:
    """One SimCLR view: PIL image (or uint8 tensor) → uint8 tensor ``[3, px, px]``.

    Randomness comes from torch's global RNG; :mod:`mulsupcon_ld.data.images` seeds it per
    sample so that views do not depend on the number of DataLoader workers.
    """
    ops: list = [
        v2.RandomResizedCrop(px, scale=scale, antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomApply([v2.ColorJitter(*jitter)], p=jitter_p),
        v2.RandomGrayscale(p=grayscale_p),
    ]
    if blur:
        # SimCLR: kernel 10% of the image side (odd), sigma in [0.1, 2.0], p = 0.5
        k = max(3, int(0.1 * px) // 2 * 2 + 1)
        ops.append(v2.RandomApply([v2.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5))
    ops.append(v2.PILToTensor())  # PIL → uint8 tensor; tensors pass through
    return v2.Compose(ops)


def eval_transform(px: int = 224) -> v2.Compose:
    """Deterministic evaluation view: shorter side → ``eval_resize(px)``, centre crop ``px``."""
    return v2.Compose([
        v2.Resize(eval_resize(px), antialias=True),
        v2.CenterCrop(px),
        v2.PILToTensor(),
    ])


def normalize_batch(x: torch.Tensor, device: torch.device | str | None = None,
                    channels_last: bool = False, dtype: torch.dtype = torch.float32,
                    max_value: float = 255.0) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` (CPU, ideally pinned) → normalised float on ``device``.

    ``max_value``: 255 for uint8 pixels, 1 for float views in [0, 1] (device-side augmentation).

    The copy is asynchronous when the source is pinned and the target is CUDA.
    """
    if device is not None:
        x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=dtype).view(1, 3, 1, 1) * max_value
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=dtype).view(1, 3, 1, 1) * max_value
    out = (x.to(dtype) - mean) / std
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def describe() -> dict:
    """The augmentation parameters, for ``metrics.json`` / provenance."""
    return {
        "pretrain": {"random_resized_crop_scale": list(CROP_SCALE), "hflip_p": 0.5,
                     "color_jitter": list(JITTER), "color_jitter_p": JITTER_P,
                     "grayscale_p": GRAYSCALE_P, "blur": False},
        "eval": {"resize": "shorter side px*256/224", "center_crop": "px"},
        "normalize": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "where": "device"},
    }
