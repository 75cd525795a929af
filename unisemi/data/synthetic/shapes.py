"""The pretraining world: random textured shapes on textured backgrounds (the ImageNet stand-in).

Each image is a Voronoi partition into 1-4 textured background regions with 2-8 textured shapes
painted over it (sizes log-uniform over a decade, rotated, stretched, occluding each other).
Deliberately disjoint from the evaluation domains: no scene layout, no perspective, no street or
room classes, colours drawn uniformly. What it asks of an encoder is what transfers to any
segmentation task: tell textures apart whatever their colour, orientation and scale (local
statistics); name a shape from its whole outline even where it is occluded, rotated and stretched
(context, a receptive field that sees the object); and find region boundaries (edges). Every
image is drawn in batched tensor ops from one torch.Generator, so a batch is a pure function of
the generator state and nothing is stored on disk.

    x, y = draw_batch(16, 64, 64, torch.Generator().manual_seed(0))
    # x float (16, 3, 64, 64) in [0, 1]; y["shape"], y["texture"] int64, y["edge"] float
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GENERATOR_VERSION = "1"     # bump whenever draw_batch's output changes (it is in the cache key)
SHAPES = ("background", "ellipse", "rectangle", "triangle", "hexagon", "star", "ring", "cross",
          "crescent")
TEXTURES = ("flat", "stripes", "checker", "dots", "blotches", "grain", "gradient", "grid")
MAX_SHAPES = 8
BACKGROUND_REGIONS = 4


def _u(g: torch.Generator, *shape, lo=0.0, hi=1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def _star(phi: torch.Tensor) -> torch.Tensor:
    # Five points: the radius falls linearly from a tip (1) to the notch between two tips (0).
    a = 2 * math.pi / 5
    return 1 - (torch.remainder(phi + math.pi / 2, a) - a / 2).abs() / (a / 2)


def _shape(cat: int, u: torch.Tensor, v: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """Coverage of shape category `cat` in the shapes' unit frames (u, v): bool (n, H, W).
    `extra` in [0, 1) varies the ring's hole, the cross's arms and the crescent's bite."""
    name = SHAPES[cat]
    if name == "rectangle":
        return (u.abs() <= 0.9) & (v.abs() <= 0.9)
    if name == "cross":
        arm = 0.25 + 0.15 * extra
        return ((u.abs() <= arm) & (v.abs() <= 1)) | ((v.abs() <= arm) & (u.abs() <= 1))
    r = torch.sqrt(u * u + v * v)
    if name == "ellipse":
        return r <= 1
    if name == "ring":
        return (r <= 1) & (r >= 0.45 + 0.2 * extra)
    if name == "crescent":
        return (r <= 1) & ((u - 0.45 - 0.2 * extra) ** 2 + v * v > 0.5625)
    phi = torch.atan2(v, u)
    if name == "star":
        return r <= 0.4 + 0.6 * _star(phi)
    n = 3 if name == "triangle" else 6       # regular polygons with circumradius 1
    a = 2 * math.pi / n
    return r * torch.cos(torch.remainder(phi, a) - a / 2) <= math.cos(math.pi / n)


def _texture(fam: int, xr: torch.Tensor, yr: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Pattern in [0, 1] of texture family `fam` over rotated pixel coordinates (n, H, W);
    scale, phase and density are drawn per image, so only the family is the class."""
    n, H, W = xr.shape

    def per_image(lo, hi):
        return _u(g, n, 1, 1, lo=lo, hi=hi)

    name = TEXTURES[fam]
    if name == "flat":
        return torch.zeros_like(xr)
    if name == "stripes":
        period = torch.exp(per_image(math.log(3.0), math.log(14.0)))
        return 0.5 + 0.5 * torch.sin(2 * math.pi * xr / period + per_image(0, 2 * math.pi))
    if name == "blotches":
        low = torch.rand(n, 1, 5, 5, generator=g)
        low = F.interpolate(low, size=(H, W), mode="bicubic", align_corners=False)[:, 0]
        return ((low - 0.5) * 4 + 0.5).clamp(0, 1)          # contrasty patches, not a haze
    if name == "grain":
        fine = torch.rand(n, 1, H // 2, W // 2, generator=g)
        return F.interpolate(fine, size=(H, W), mode="nearest")[:, 0]
    if name == "gradient":
        lo, hi = xr.amin((1, 2), keepdim=True), xr.amax((1, 2), keepdim=True)
        return (xr - lo) / (hi - lo).clamp_min(1)
    cell = torch.exp(per_image(math.log(3.0), math.log(10.0)))
    if name == "checker":
        return torch.remainder(torch.floor(xr / cell) + torch.floor(yr / cell), 2)
    if name == "dots":
        fx, fy = torch.remainder(xr / cell, 1) - 0.5, torch.remainder(yr / cell, 1) - 0.5
        return (fx * fx + fy * fy <= per_image(0.04, 0.16)).float()
    line = per_image(0.8, 1.6)                               # grid: thin lines, wide cells
    return ((torch.remainder(xr, 2 * cell) < line) | (torch.remainder(yr, 2 * cell) < line)).float()


def _by_group(ids: torch.Tensor, groups: int, fn, out: torch.Tensor) -> torch.Tensor:
    """out[i] = fn(group, rows) for the rows whose id is that group: each image computes only its
    own shape or texture, not all of them."""
    for k in range(groups):
        rows = (ids == k).nonzero().flatten()
        if len(rows):
            out[rows] = fn(k, rows)
    return out


def draw_batch(batch: int, H: int, W: int, g: torch.Generator):
    """Images float (B, 3, H, W) in [0, 1] and dense targets: shape category (0 = background),
    texture family, and edge (1 where a 4-neighbour belongs to another layer)."""
    B = batch
    ys = torch.arange(H, dtype=torch.float32).view(1, H, 1).expand(B, H, W) + 0.5
    xs = torch.arange(W, dtype=torch.float32).view(1, 1, W).expand(B, H, W) + 0.5
    count = torch.randint(2, MAX_SHAPES + 1, (B,), generator=g)   # shapes in each image
    image = torch.empty(B, 3, H, W)
    tex_lab = torch.empty(B, H, W, dtype=torch.long)
    # The background is a Voronoi partition into 1-4 differently textured regions, so that not
    # every boundary is an object outline and large regions must be told apart by texture alone.
    seeds = torch.rand(B, BACKGROUND_REGIONS, 2, generator=g) * torch.tensor([W, H])
    present = torch.arange(BACKGROUND_REGIONS) < torch.randint(
        1, BACKGROUND_REGIONS + 1, (B, 1), generator=g)
    d2 = ((xs[..., None] - seeds[:, None, None, :, 0]) ** 2
          + (ys[..., None] - seeds[:, None, None, :, 1]) ** 2)
    layer = torch.where(present[:, None, None], d2, float("inf")).argmin(-1).to(torch.uint8)
    shape_lab = torch.zeros(B, H, W, dtype=torch.long)
    side = float(min(H, W))
    for k in range(BACKGROUND_REGIONS + MAX_SHAPES):   # painter's order: later layers on top
        shape_k = k - BACKGROUND_REGIONS + 1           # >= 1 for shapes
        active = (shape_k <= count).nonzero().flatten() if shape_k >= 1 else torch.arange(B)
        n = len(active)
        if n == 0:
            break
        x, y = xs[:n], ys[:n]
        angle = _u(g, n, 1, 1, hi=math.pi)
        xr = x * torch.cos(angle) + y * torch.sin(angle)          # texture frame, pixels
        yr = -x * torch.sin(angle) + y * torch.cos(angle)
        fam = torch.randint(len(TEXTURES), (n,), generator=g)
        pat = _by_group(fam, len(TEXTURES), lambda f, r: _texture(f, xr[r], yr[r], g),
                        torch.empty(n, H, W))
        c1 = torch.rand(n, 3, 1, 1, generator=g)
        # The second colour differs enough from the first that every texture is visible.
        sign = torch.randint(0, 2, (n, 3, 1, 1), generator=g) * 2 - 1
        c2 = (c1 + sign * _u(g, n, 3, 1, 1, lo=0.3, hi=0.8)).clamp(0, 1)
        c2 = torch.where((c2 - c1).abs().sum(1, keepdim=True) < 0.3, 1 - c1, c2)
        colour = c1 + (c2 - c1) * pat[:, None]
        if shape_k < 1:
            cover = layer == k
            image = torch.where(cover[:, None], colour, image)
            tex_lab = torch.where(cover, fam.view(B, 1, 1), tex_lab)
            continue
        cat = torch.randint(1, len(SHAPES), (n,), generator=g)
        # Sizes log-uniform over a decade: objects from a few pixels to most of the image.
        size = torch.exp(_u(g, n, lo=math.log(0.07), hi=math.log(0.5))) * side
        aspect = torch.exp(_u(g, n, lo=-0.45, hi=0.45))
        sx, sy = (size * aspect).view(n, 1, 1), (size / aspect).view(n, 1, 1)
        cx, cy = (_u(g, n) * W).view(n, 1, 1), (_u(g, n) * H).view(n, 1, 1)
        th = _u(g, n, hi=2 * math.pi).view(n, 1, 1)
        dx, dy = x - cx, y - cy
        u = (dx * torch.cos(th) + dy * torch.sin(th)) / sx
        v = (-dx * torch.sin(th) + dy * torch.cos(th)) / sy
        extra = _u(g, n, 1, 1)
        cover = _by_group(cat, len(SHAPES), lambda c, r: _shape(c, u[r], v[r], extra[r]),
                          torch.zeros(n, H, W, dtype=torch.bool))
        image[active] = torch.where(cover[:, None], colour, image[active])
        shape_lab[active] = torch.where(cover, cat.view(n, 1, 1), shape_lab[active])
        tex_lab[active] = torch.where(cover, fam.view(n, 1, 1), tex_lab[active])
        layer[active] = torch.where(cover, torch.full_like(cover, k, dtype=torch.uint8), layer[active])

    edge = torch.zeros(B, H, W, dtype=torch.bool)
    dv = layer[:, 1:] != layer[:, :-1]
    dh = layer[:, :, 1:] != layer[:, :, :-1]
    edge[:, 1:] |= dv
    edge[:, :-1] |= dv
    edge[:, :, 1:] |= dh
    edge[:, :, :-1] |= dh
    return _photometric(image, g), {"shape": shape_lab, "texture": tex_lab, "edge": edge.float()}


def _photometric(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Lighting gradient, gain, contrast, colour cast, optional blur and sensor noise: the same
    nuisances a camera adds, so no target can be read off raw pixel values."""
    B, _, H, W = x.shape
    gy = torch.linspace(-1, 1, H).view(1, 1, H, 1) * _u(g, B, 1, 1, 1, lo=-0.25, hi=0.25)
    gx = torch.linspace(-1, 1, W).view(1, 1, 1, W) * _u(g, B, 1, 1, 1, lo=-0.25, hi=0.25)
    x = x * (1 + gy + gx)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * _u(g, B, 1, 1, 1, lo=0.6, hi=1.3) + mean * _u(g, B, 1, 1, 1, lo=0.7, hi=1.2)
    x = x * _u(g, B, 3, 1, 1, lo=0.85, hi=1.15)
    blur = torch.rand(B, generator=g) < 0.3
    soft = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where(blur.view(B, 1, 1, 1), soft, x)
    x = x + torch.randn(x.shape, generator=g) * _u(g, B, 1, 1, 1, hi=0.05)
    return x.clamp(0, 1)
