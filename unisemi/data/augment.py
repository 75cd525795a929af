"""Batched image/label augmentations (the contrastive paper's Table 1), as tensor ops.

Every op draws one set of parameters per sample from torch's global RNG (CPU), so a run is
reproducible and a checkpoint's RNG state resumes it exactly; there is no Python loop over samples
or pixels. Images are float in [0, 1], (B, 3, H, W); label maps are long (B, H, W) with
IGNORE_INDEX for void; `maps` are extra per-pixel float maps (e.g. teacher confidence) that follow
the labels through geometric ops and ClassMix.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from unisemi.losses import IGNORE_INDEX


@dataclasses.dataclass(frozen=True)
class AugmentSet:
    flip: float
    scale_prob: float
    scale_range: tuple
    jitter_prob: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    blur_prob: float
    classmix_prob: float


# Table 1 of the contrastive paper.
WEAK = AugmentSet(0.5, 0.5, (0.75, 1.75), 0.2, 0.15, 0.15, 0.075, 0.05, 0.0, 0.2)
STRONG = AugmentSet(0.5, 0.8, (0.75, 1.75), 0.8, 0.3, 0.3, 0.15, 0.1, 0.2, 0.8)
BLUR_SIGMA = (0.1, 2.0)


def _coin(n: int, p: float, device) -> torch.Tensor:
    return (torch.rand(n) < p).to(device)


def _uniform(n: int, lo: float, hi: float, device) -> torch.Tensor:
    return (lo + (hi - lo) * torch.rand(n)).to(device)


def flip(x, y, maps=(), p: float = 0.5):
    f = _coin(x.shape[0], p, x.device)
    x = torch.where(f.view(-1, 1, 1, 1), x.flip(-1), x)
    y = torch.where(f.view(-1, 1, 1), y.flip(-1), y)
    maps = tuple(torch.where(f.view(-1, 1, 1), m.flip(-1), m) for m in maps)
    return x, y, maps


def scale_crop(x, y, maps=(), p: float = 0.5, scale_range=(0.75, 1.75)):
    """Resize by s ~ U(range) with probability p, then crop (s > 1) or pad (s < 1) back to H x W
    at a random position; padding is black in the image, IGNORE in labels and 0 in maps."""
    b, device = x.shape[0], x.device
    s = torch.where(_coin(b, p, device), _uniform(b, *scale_range, device), torch.ones(b, device=device))
    room = (1.0 - 1.0 / s).abs()
    tx = (2 * torch.rand(b).to(device) - 1) * room
    ty = (2 * torch.rand(b).to(device) - 1) * room
    theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = 1.0 / s, 1.0 / s
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="nearest", align_corners=False)[:, 0] > 0.5
    y = F.grid_sample(y[:, None].to(x.dtype), grid, mode="nearest", align_corners=False)[:, 0].round().long()
    y = torch.where(inside, y, torch.full_like(y, IGNORE_INDEX))
    maps = tuple(F.grid_sample(m[:, None], grid, mode="nearest", align_corners=False)[:, 0] * inside
                 for m in maps)
    return x, y, maps


def _gray(x):
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def color_jitter(x, p: float, brightness: float, contrast: float, saturation: float, hue: float):
    """Brightness, contrast, saturation and hue shifts with per-sample factors, applied with prob p."""
    b, device = x.shape[0], x.device
    on = _coin(b, p, device).view(-1, 1, 1, 1)
    v = lambda r: _uniform(b, 1 - r, 1 + r, device).view(-1, 1, 1, 1)  # noqa: E731
    out = (x * v(brightness)).clamp(0, 1)
    mean = _gray(out).mean((2, 3), keepdim=True)
    out = (mean + (out - mean) * v(contrast)).clamp(0, 1)
    g = _gray(out)
    out = (g + (out - g) * v(saturation)).clamp(0, 1)
    out = rotate_hue(out, _uniform(b, -hue, hue, device) * 2 * math.pi)
    return torch.where(on, out, x)


def rotate_hue(x, angle):
    """Rotate hue by `angle` radians per sample: a rotation about the grey axis in YIQ space."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=x.dtype, device=x.device)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    rot = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(to_yiq) @ rot @ to_yiq                                   # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", m, x).clamp(0, 1)


def gaussian_blur(x, p: float, sigma_range=BLUR_SIGMA):
    """Separable Gaussian blur with a per-sample sigma ~ U(range), applied with prob p."""
    b, c, h, w = x.shape
    device = x.device
    sigma = _uniform(b, *sigma_range, device).to(x.dtype)
    radius = min(int(math.ceil(3 * sigma_range[1])), (min(h, w) - 1) // 2)
    t = torch.arange(-radius, radius + 1, device=device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)                       # (B*C, K)
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c)
    on = _coin(b, p, device).view(-1, 1, 1, 1)
    return torch.where(on, flat.reshape(b, c, h, w), x)


def classmix_mask(y: torch.Tensor, num_classes: int, background: int | None = None) -> torch.Tensor:
    """Per image, floor(n/2) + 1 of the n candidate classes of its labels, drawn without
    replacement; returns the (B, H, W) mask of those classes' pixels.

    The candidates are the classes present, void dropped unless it is all the image holds, and
    `background` (VOC's class 0) dropped unless nothing else but void is left. The paper (and
    ClassMix) say "half of the classes"; the count and the drops are the release's
    (trainSSL.py:280-295: unique labels, ignore and VOC background removed only while another
    class remains, np.random.choice of floor(n/2) + 1). Void is bin `num_classes` here, so an
    all-void image picks its void pixels, as the release's would.
    """
    b = y.shape[0]
    void = num_classes                                       # the spare bin
    bins = torch.where(y == IGNORE_INDEX, torch.full_like(y, void), y).view(b, -1)
    cand = torch.zeros(b, num_classes + 1, dtype=torch.bool, device=y.device)
    cand.scatter_(1, bins, True)
    # Drop void, then background, while another candidate remains (tensor ops, no host sync).
    cand[:, void] &= cand[:, :void].sum(1) == 0
    if background is not None:
        others = cand[:, :void].sum(1) - cand[:, background].to(torch.long)
        cand[:, background] &= others == 0
    n = cand.sum(1)                                         # >= 1: every image has a candidate
    score = torch.rand(b, num_classes + 1).to(y.device).masked_fill(~cand, 2.0)   # absent sort last
    rank = score.argsort(1).argsort(1)
    picked = cand & (rank < (n // 2 + 1).view(-1, 1))
    return picked.gather(1, bins).view_as(y)


def class_mix(x, y, maps=(), p: float = 0.5, num_classes: int | None = None, background: int | None = None):
    """ClassMix: image i receives the pixels of about half the classes of image (i+1) mod B
    (`classmix_mask`), with labels and maps mixed the same way; applied to each image with
    probability p. `background`: a class that is picked only when the image holds no other."""
    if x.shape[0] < 2:
        return x, y, maps
    src = lambda t: t.roll(-1, 0)  # noqa: E731  (image i+1 is i's source)
    c = num_classes if num_classes is not None else int(y[y != IGNORE_INDEX].max().item()) + 1
    mask = classmix_mask(src(y), c, background) & _coin(x.shape[0], p, x.device).view(-1, 1, 1)
    x = torch.where(mask[:, None], src(x), x)
    y = torch.where(mask, src(y), y)
    maps = tuple(torch.where(mask, src(m), m) for m in maps)
    return x, y, maps


def augment(x, y, maps=(), aug: AugmentSet = WEAK, num_classes: int = 0, classmix: bool = True,
            background: int | None = None):
    """The whole pipeline of one AugmentSet: flip, scale/crop, ClassMix, colour jitter, blur.
    `background`: the label space's background class, if any (see `classmix_mask`)."""
    x, y, maps = flip(x, y, maps, aug.flip)
    x, y, maps = scale_crop(x, y, maps, aug.scale_prob, aug.scale_range)
    if classmix and aug.classmix_prob > 0:
        x, y, maps = class_mix(x, y, maps, aug.classmix_prob, num_classes, background)
    x = color_jitter(x, aug.jitter_prob, aug.brightness, aug.contrast, aug.saturation, aug.hue)
    if aug.blur_prob > 0:
        x = gaussian_blur(x, aug.blur_prob)
    return x, y, maps
