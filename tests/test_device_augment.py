"""Device-side SimCLR augmentation (mulsupcon_ld/device_augment.py) against the CPU path.

The distribution tests draw many parameter sets from both samplers: the CPU path's own
``v2.RandomResizedCrop.make_params`` / ``v2.ColorJitter.make_params`` and the probabilities read
out of :func:`transforms.simclr_transform`, against :func:`device_augment.sample_view`. Everything
is seeded, so the p-values are fixed numbers; each test also shows it can fail (a changed
parameter is rejected).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mulsupcon_ld import device_augment as DA
from mulsupcon_ld import transforms as T
from mulsupcon_ld.data import images as I
from mulsupcon_ld.run_settings import resolve_settings

N = 4000
ALPHA = 1e-3        # fixed seeds: a pass is a fixed p-value above this, not luck per run
SIZES = [(375, 500), (500, 333), (100, 400)]   # landscape, portrait, and one that often falls back


def cpu_crops(h: int, w: int, n: int, seed: int = 0, scale=T.CROP_SCALE) -> np.ndarray:
    """``[n, 4]`` (top, left, height, width) from the CPU path's own RandomResizedCrop sampler."""
    torch.manual_seed(seed)
    t = v2.RandomResizedCrop(224, scale=scale, antialias=True)
    img = torch.empty(3, h, w, dtype=torch.uint8)
    return np.array([[p["top"], p["left"], p["height"], p["width"]] for p in (t.make_params([img]) for _ in range(n))])


def device_crops(h: int, w: int, n: int, seed: int = 1, scale=T.CROP_SCALE) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    hw = torch.tensor([[h, w]] * n)
    return torch.stack(DA.sample_crops(hw, gen, scale), dim=1).numpy()


def crop_pvalues(a: np.ndarray, b: np.ndarray, h: int, w: int) -> dict[str, float]:
    """KS p-values on crop scale, aspect ratio and (relative) offsets."""
    def feats(c):
        top, left, ch, cw = c.T.astype(float)
        return {"scale": ch * cw / (h * w), "aspect": cw / ch,
                "top": (top + 0.5) / (h - ch + 1), "left": (left + 0.5) / (w - cw + 1)}
    fa, fb = feats(a), feats(b)
    return {k: stats.ks_2samp(fa[k], fb[k]).pvalue for k in fa}


@pytest.mark.parametrize("h,w", SIZES)
def test_crop_distribution_matches_cpu_sampler(h, w):
    p = crop_pvalues(cpu_crops(h, w, N), device_crops(h, w, N), h, w)
    assert min(p.values()) > ALPHA, p
    assert (device_crops(h, w, 50)[:, 2:] <= [h, w]).all()


def test_crop_test_has_power():
    h, w = SIZES[0]
    p = crop_pvalues(cpu_crops(h, w, N), device_crops(h, w, N, scale=(0.15, 1.0)), h, w)
    assert p["scale"] < 1e-6


def test_fallback_is_the_centre_crop():
    # impossible targets for every attempt: an image 1 px high → torchvision's centre fallback
    gen = torch.Generator().manual_seed(0)
    top, left, h, w = (t.item() for t in DA.sample_crops(torch.tensor([[1, 1000]]), gen))
    assert (top, h, w) == (0, 1, 1) and left == (1000 - 1) // 2


def device_views(n: int, seed: int = 3) -> DA.ViewParams:
    return DA.sample_view(torch.tensor([[375, 500]] * n), torch.Generator().manual_seed(seed))


def cpu_jitter_params(n: int, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    cj = v2.ColorJitter(*T.JITTER)
    ps = [cj.make_params([torch.zeros(3, 4, 4)]) for _ in range(n)]
    factors = np.array([[p["brightness_factor"], p["contrast_factor"], p["saturation_factor"], p["hue_factor"]]
                        for p in ps])
    return factors, np.array([p["fn_idx"].tolist() for p in ps])


def jitter_pvalues(dev: DA.ViewParams, factors: np.ndarray, orders: np.ndarray) -> dict[str, float]:
    names = ("brightness", "contrast", "saturation", "hue")
    p = {n: stats.ks_2samp(factors[:, i], dev.factors[:, i].numpy()).pvalue for i, n in enumerate(names)}
    perms = {q: k for k, q in enumerate(itertools.permutations(range(4)))}
    counts = np.zeros((2, 24))
    for row, o in enumerate((orders, dev.order.numpy())):
        for q in map(tuple, o):
            counts[row, perms[q]] += 1
    p["order"] = stats.chi2_contingency(counts).pvalue
    return p


def test_jitter_factors_and_order_match_cpu_sampler():
    factors, orders = cpu_jitter_params(N)
    p = jitter_pvalues(device_views(N), factors, orders)
    assert min(p.values()) > ALPHA, p
    assert stats.ks_2samp(factors[:, 0] * 0.9, device_views(N).factors[:, 0].numpy()).pvalue < 1e-6  # power


def cpu_rates() -> dict[str, float]:
    """flip / jitter / grayscale probabilities, read from the CPU pipeline's transform objects."""
    ops = T.simclr_transform(224).transforms
    kinds = {type(o): o for o in ops}
    return {"flip": kinds[v2.RandomHorizontalFlip].p, "jitter": kinds[v2.RandomApply].p,
            "gray": kinds[v2.RandomGrayscale].p}


def rate_pvalues(dev: DA.ViewParams, rates: dict[str, float]) -> dict[str, float]:
    return {k: stats.binomtest(int(getattr(dev, k).sum()), len(dev.flip), rates[k]).pvalue for k in rates}


def test_flip_jitter_gray_rates_match_cpu_path():
    dev = device_views(N)
    rates = cpu_rates()
    assert rates == {"flip": 0.5, "jitter": T.JITTER_P, "gray": T.GRAYSCALE_P}
    p = rate_pvalues(dev, rates)
    assert min(p.values()) > ALPHA, p
    assert rate_pvalues(dev, {"gray": 0.25})["gray"] < 1e-6            # power: a 5-point change is seen


@pytest.mark.parametrize("op,ref,f", [(DA.adjust_brightness, F.adjust_brightness, 1.3),
                                      (DA.adjust_contrast, F.adjust_contrast, 0.7),
                                      (DA.adjust_saturation, F.adjust_saturation, 1.4),
                                      (DA.adjust_hue, F.adjust_hue, 0.08),
                                      (DA.adjust_hue, F.adjust_hue, -0.1)])
def test_colour_ops_equal_torchvision(op, ref, f):
    x = torch.rand(3, 3, 17, 13, generator=torch.Generator().manual_seed(0))
    want = torch.stack([ref(i, f) for i in x])
    torch.testing.assert_close(op(x, torch.full((3,), f)), want, atol=2e-6, rtol=0)


def test_whole_image_crop_without_colour_is_a_resize():
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    hw = torch.tensor([[64, 64]] * 2)
    p = DA.sample_view(hw, torch.Generator().manual_seed(0))
    p.top[:], p.left[:], p.height[:], p.width[:] = 0, 0, 64, 64
    p.flip[:] = torch.tensor([False, True])
    p.jitter[:], p.gray[:] = False, False
    out = DA.apply_view(x, hw, p, 64)
    torch.testing.assert_close(out[0], x[0].float() / 255, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], x[1].flip(-1).float() / 255, atol=1e-5, rtol=0)


def test_views_shape_dtype_range_and_determinism():
    x = torch.randint(0, 256, (6, 3, 80, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    hw = torch.tensor([[120, 160]] * 6)
    seeds = torch.tensor([11, 12, 13, 14, 15, 16])
    a = DA.simclr_views(x, hw, seeds, 56, 2)
    b = DA.simclr_views(x, hw, seeds, 56, 2)
    c = DA.simclr_views(x, hw, seeds + 1, 56, 2)
    assert [v.shape for v in a] == [(6, 3, 56, 56)] * 2 and a[0].dtype == torch.float32
    assert all(0 <= v.min() and v.max() <= 1 for v in a)
    assert all(torch.equal(u, v) for u, v in zip(a, b))                   # same seed → same batch
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], c[0])    # two views; other seed differs


def test_augment_on_switch():
    assert DA.resolve_augment_on("auto", torch.device("cpu")) == "cpu"
    assert DA.resolve_augment_on("auto", torch.device("cuda")) == "device"
    assert DA.resolve_augment_on("device", torch.device("cpu")) == "device"
    assert resolve_settings("pascal", "smoke").data.augment_on == "auto"
    with pytest.raises(Exception, match="augment_on"):
        resolve_settings("pascal", "smoke", overrides=["data.augment_on=gpu"])


def test_image_epoch_device_path_on_cpu(tmp_path):
    from mulsupcon_ld.data.prepare import prepare_synthetic

    prepared = prepare_synthetic("pascal", tmp_path)
    s = resolve_settings("pascal", "smoke", overrides=[
        "pretrain.batch_size=8", "finetune.batch_size=8", "data.image_size=null", "data.num_workers=0",
        "data.augment_on=device"])
    run = lambda seed: list(itertools.islice(I.image_epoch(prepared, "train", s, "pretrain", seed, "cpu"), 2))
    a, b = run(0), run(0)
    v1, v2_, y = a[0]
    assert v1.shape == v2_.shape == (8, 3, 32, 32) and v1.dtype == torch.float32 and y.shape == (8, 20)
    assert not torch.equal(v1, v2_)
    assert all(torch.equal(u, v) for ba, bb in zip(a, b) for u, v in zip(ba, bb))
    # normalised like the CPU path: pixel values within ImageNet-normalised [0, 1]
    lo = min((0 - m) / sd for m, sd in zip(T.IMAGENET_MEAN, T.IMAGENET_STD))
    hi = max((1 - m) / sd for m, sd in zip(T.IMAGENET_MEAN, T.IMAGENET_STD))
    assert lo - 1e-4 <= v1.min() and v1.max() <= hi + 1e-4
    x, _ = next(iter(I.image_epoch(prepared, "val", s, "eval", 0, "cpu")))
    assert x.shape[1:] == (3, 32, 32)                                      # eval stays on the CPU path
    I.clear_loader_cache()
