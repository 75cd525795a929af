"""Batched, vectorised rasterisation of scenes (scene.py) into uint8 images and labels.

1. Coverage: per primitive and row, the covered x-interval follows from the primitive's row
   tables (B, N, H); a loop over primitive *slots* (not pixels) writes the slot index where the
   interval covers the pixel, so the last covering primitive wins (painter's order).
2. Appearance: each pixel gathers its primitive's parameters, computes texture coordinates in
   metres (planar, vertical plane, ground plane) and the textures (stripes, cell grids,
   value noise, shading) in one go.
3. Style: gain, colour cast, lighting gradient, shadows, saturation, blur, sensor noise.
Everything per image is drawn in scene.py or keyed by the image seed, so an image never depends
on the batch it is rendered in.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from unisemi.data.synthetic.scene import C, NF, STYLE

S = {name: i for i, name in enumerate(STYLE)}


def rasterise(P: torch.Tensor, H: int, W: int, A: float):
    """P (B, N, NF) -> slot index map (B, H, W) and row tables left edge, centre, half width."""
    B, N, _ = P.shape
    yr = (torch.arange(H, dtype=torch.float64) + 0.5) / H
    P = P.double()      # edges in float64: borderline pixels would flip with float32 rounding

    def g(name):
        return P[:, :, C[name], None]                # (B, N, 1) against rows (H,)

    y0, y1, ex = g("y0"), g("y1"), g("ex")
    inside = (yr >= y0) & (yr <= y1)
    t = ((yr - y0) / (y1 - y0).clamp_min(1e-6)).clamp(0, 1)
    e = ex.clamp_min(0.1)                             # superellipse profile (ex = 0: a box)
    prof = torch.where(ex > 0, (1 - (2 * t - 1).abs().pow(e)).clamp_min(0).pow(1 / e), 1.0)
    cx = g("cx0") + (g("cx1") - g("cx0")) * t
    hw = (g("hw0") + (g("hw1") - g("hw0")) * t) * prof
    L, R = cx - hw, cx + hw
    xr, yt, st, yb, sb = g("xr"), g("yt"), g("st"), g("yb"), g("sb")
    flat_t, flat_b = st.abs() < 1e-9, sb.abs() < 1e-9
    bt = xr + (yr - yt) / torch.where(flat_t, 1.0, st)   # y >= yt + st (x - xr)
    R = torch.where(st > 1e-9, torch.minimum(R, bt), R)
    L = torch.where(st < -1e-9, torch.maximum(L, bt), L)
    bb = xr + (yr - yb) / torch.where(flat_b, 1.0, sb)   # y <= yb + sb (x - xr)
    L = torch.where(sb > 1e-9, torch.maximum(L, bb), L)
    R = torch.where(sb < -1e-9, torch.minimum(R, bb), R)
    inside &= (~flat_t | (yr >= yt)) & (~flat_b | (yr <= yb))
    k = W / A                                         # pixel centres at (i + 0.5) / k
    lo = torch.ceil(L * k - 0.5).clamp_min(0)
    hi = torch.floor(R * k - 0.5).clamp_max(W - 1)
    inside &= lo <= hi
    idmap = paint(torch.where(inside, lo, -1.0), torch.where(inside, hi - lo, -1.0), H, W)
    return idmap, L.float(), cx.float(), hw.float()


def paint(lo: torch.Tensor, width: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Slot index of the last interval [lo, lo + width] covering each pixel; lo = -1: empty.
    Loops over slots, each restricted to the rows/columns that slot covers in any image."""
    B, N, _ = lo.shape
    valid = lo >= 0
    rows = valid.any(0)                               # (N, H)
    r0 = rows.float().argmax(1)
    r1 = H - rows.flip(1).float().argmax(1)
    c0 = torch.where(valid, lo, float(W)).amin((0, 2)).clamp(0, W - 1)
    c1 = torch.where(valid, lo + width, -1.0).amax((0, 2)) + 1
    meta = torch.stack([r0.float(), r1.float(), c0, c1, rows.any(1).float()], 1).long().tolist()
    if W <= 255:   # uint8: one wrap-around subtraction and one compare per pixel and slot
        lo8 = torch.where(valid, lo, 255.0).to(torch.uint8)
        w8 = torch.where(valid, width, 0.0).to(torch.uint8)
        xs = torch.arange(W, dtype=torch.uint8)
    else:
        lo8, w8 = lo.to(torch.int16), width.to(torch.int16)
        xs = torch.arange(W, dtype=torch.int16)
    idmap = torch.zeros(B, H, W, dtype=torch.int16)
    for n, (a, b, c, d, ok) in enumerate(meta):
        if not ok:
            continue
        off = xs[c:d] - lo8[:, n, a:b, None]
        cov = off <= w8[:, n, a:b, None]
        if W > 255:
            cov &= off >= 0
        idmap[:, a:b, c:d].masked_fill_(cov, n)
    return idmap.long()


def blur(img: torch.Tensor, amount: torch.Tensor, H: int) -> torch.Tensor:
    """Blend towards a box blur whose radius scales with H (same look at any size)."""
    r = max(1, round(H / 64))
    b = F.avg_pool2d(F.pad(img, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)
    return img + amount.view(-1, 1, 1, 1) * (b - img)


_TILE = {}


def noise_tile(H: int, W: int) -> torch.Tensor:
    """A fixed (4, 256 + H, 256 + W) field of uniforms (3 sensor channels + 1 texture grain);
    each image takes a window at offsets drawn from its own seed."""
    if (H, W) not in _TILE:
        base = torch.from_numpy(np.random.Generator(np.random.PCG64(20240611)).random(
            (4, 256, 256), dtype=np.float32))
        reps = (1, 1 + (H + 255) // 256, 1 + (W + 255) // 256)
        _TILE[(H, W)] = base.repeat(*reps)[:, :256 + H, :256 + W].contiguous()
    return _TILE[(H, W)]


def draw(P, style, coarse, fine, H, W, A, void_band=0.0):
    """P (B, N, NF), style (B, len(STYLE)) float64, coarse/fine noise grids (B, h, w)
    -> images uint8 (B, 3, H, W), labels uint8 (B, H, W)."""
    B, N, _ = P.shape
    idmap, L, cx, hw = rasterise(P, H, W, A)
    gi = idmap + (torch.arange(B) * N).view(B, 1, 1)  # row of the flattened (B * N, NF) table
    table = P.reshape(B * N, NF).t().contiguous()     # field-major (NF, B * N)
    q = table.gather(1, gi.reshape(1, -1).expand(NF, -1)).view(NF, B, H, W)
    hrow = torch.arange(H).view(1, H, 1)

    def row(tab):
        return tab.reshape(-1)[gi * H + hrow]

    y = ((torch.arange(H, dtype=torch.float32) + 0.5) / H).view(1, H, 1)
    x = ((torch.arange(W, dtype=torch.float32) + 0.5) * (A / W)).view(1, 1, W)
    sv = style.float()
    vx, hor, ch = (sv[:, S[k]].view(B, 1, 1) for k in ("vx", "hor", "ch"))
    mode, mp = q[C["mode"]], q[C["mp"]]
    top = q[C["yt"]] + q[C["st"]] * (x - q[C["xr"]])
    dx = x - vx
    dx = torch.where(dx.abs() < 1e-3, torch.full_like(dx, 1e-3), dx)
    Zv = (mp / dx).clamp(-1e3, 1e3)                   # depth on a vertical plane X = mp
    Zg = ((ch - mp) / (y - hor).clamp_min(1e-3)).clamp(-1e3, 1e3)   # depth on a ground plane
    ts = mp.clamp_min(1e-4)
    a = torch.where(mode == 0, (x - row(L)) / ts, torch.where(mode == 1, Zv - q[C["mq"]], dx * Zg))
    b = torch.where(mode == 0, (y - top) / ts, torch.where(mode == 1, (y - top) * Zv, Zg))
    ang = q[C["angle"]]
    stripe = torch.sin(2 * math.pi * q[C["freq"]] * (a * torch.cos(ang) + b * torch.sin(ang))
                       + q[C["phase"]])
    stripe = (2 * stripe).clamp(-1, 1) * 0.5 + 0.5
    fill = q[C["gfill"]] / 2
    cell = (torch.frac(a / q[C["gx"]]).abs() - 0.5).abs() < fill
    cell &= (torch.frac(b / q[C["gy"]]).abs() - 0.5).abs() < fill
    m = (q[C["stripe"]] * stripe + q[C["grid"]] * cell).clamp(0, 1)
    c1, c2 = q[C["r"]:C["b"] + 1], q[C["r2"]:C["b2"] + 1]
    rgb = (c1 + (c2 - c1) * m).transpose(0, 1)        # (B, 3, H, W)
    tile, seed = noise_tile(H, W), sv[:, S["seed"]].long().tolist()
    n = torch.stack([tile[:, (s >> 8) % 256:(s >> 8) % 256 + H, s % 256:s % 256 + W]
                     for s in seed])                  # (B, 4, H, W)
    up = lambda g: F.interpolate(g[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]  # noqa: E731
    fine_u, coarse_u = up(fine), up(coarse)
    tin = ((y - q[C["y0"]]) / (q[C["y1"]] - q[C["y0"]]).clamp_min(1e-6)).clamp(0, 1)
    u = ((x - row(cx)) / row(hw).clamp_min(1e-6)).clamp(-1, 1)
    lum = 1 + q[C["noise"]] * (1.2 * (fine_u - 0.5) + 0.8 * (n[:, 3] - 0.5))
    lum = lum * (1 - q[C["shade"]] * (tin - 0.5)) * (1 - q[C["round"]] * u * u)
    rgb = rgb * lum[:, None]
    # aerial perspective: blend towards the haze colour with depth (capped: sky, horizon)
    Zpix = torch.where(mode == 0, 1.0 / ts, torch.where(mode == 1, Zv, Zg)).abs().clamp_max(150)
    fog = 1 - torch.exp(-sv[:, S["haze"]].view(B, 1, 1) * Zpix)
    haze = sv[:, S["hr"]:S["hb"] + 1].view(B, 3, 1, 1)
    rgb = rgb + fog[:, None] * (haze - rgb)
    # photometric style of the image
    k = lambda name: sv[:, S[name]].view(B, 1, 1, 1)  # noqa: E731
    rgb = rgb * k("gain") * sv[:, S["cr"]:S["cb"] + 1].view(B, 3, 1, 1)
    rgb = rgb * (1 + k("grad_y") * (y - 0.5) + k("grad_x") * (x / A - 0.5))
    rgb = rgb * (1 - k("shadow") * coarse_u[:, None])
    grey = rgb.mean(1, keepdim=True)
    rgb = grey + k("sat") * (rgb - grey)
    rgb = blur(rgb, sv[:, S["blur"]], H)
    rgb = rgb + k("noise") * 3.4 * (n[:, :3] - 0.5)   # uniform noise with std ~ sigma
    images = (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    labels = q[C["cls"]].round().to(torch.uint8)
    if void_band > 0:
        labels = band(labels, max(1, round(void_band * H)))
    return images, labels


def band(labels: torch.Tensor, width: int) -> torch.Tensor:
    """VOC-style void band: 255 on every pixel within `width` of a label change."""
    H, W = labels.shape[-2:]
    lab = labels[:, None].float()
    kk = width + 1
    mx = F.max_pool2d(lab, kk, stride=1, padding=kk // 2)[..., :H, :W]
    mn = -F.max_pool2d(-lab, kk, stride=1, padding=kk // 2)[..., :H, :W]
    return torch.where((mx != mn)[:, 0], torch.full_like(labels, 255), labels)
