"""Preview grid: each row an image and its colour-coded label map, plus a legend (PIL only)."""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from unisemi.data.synthetic import IGNORE_INDEX, get_domain, render

CITYSCAPES_COLOURS = {
    "road": (128, 64, 128), "sidewalk": (244, 35, 232), "building": (70, 70, 70),
    "wall": (102, 102, 156), "fence": (190, 153, 153), "pole": (153, 153, 153),
    "traffic light": (250, 170, 30), "traffic sign": (220, 220, 0), "vegetation": (107, 142, 35),
    "terrain": (152, 251, 152), "sky": (70, 130, 180), "person": (220, 20, 60),
    "rider": (255, 0, 0), "car": (0, 0, 142), "truck": (0, 0, 70), "bus": (0, 60, 100),
    "train": (0, 80, 100), "motorcycle": (0, 0, 230), "bicycle": (119, 11, 32)}
CAMVID_COLOURS = (  # SegNet CamVid order (datasets.md)
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))


def voc_colour(i: int) -> tuple[int, int, int]:
    """PASCAL VOC colour map: the bits of the class id spread over the high bits of R, G, B."""
    r = g = b = 0
    for k in range(8):
        r |= ((i >> 0) & 1) << (7 - k)
        g |= ((i >> 1) & 1) << (7 - k)
        b |= ((i >> 2) & 1) << (7 - k)
        i >>= 3
    return r, g, b


def palette(domain: str) -> list[tuple[int, int, int]]:
    spec = get_domain(domain)
    if spec.stands_in_for == "PASCAL VOC":
        return [voc_colour(i) for i in range(spec.num_classes)]
    if spec.stands_in_for == "CamVid":
        return list(CAMVID_COLOURS)
    out = [CITYSCAPES_COLOURS.get(name) for name in spec.classes]   # shared names keep colours
    k = 0
    for i, c in enumerate(out):
        while c is None:                             # others: golden-ratio hues, deterministic,
            h = (k * 0.618034) % 1.0                 # skipping colours close to ones in use
            sat, val = (0.9, 0.5, 0.65)[k % 3], (0.95, 0.6, 0.8)[k % 3]
            rgb = tuple(int(255 * x) for x in colorsys.hsv_to_rgb(h, sat, val))
            k += 1
            if k > 5000 or all(sum(abs(a - b) for a, b in zip(rgb, o)) > 90 for o in out if o):
                c = rgb
        out[i] = c
    return out


def preview(domain: str, out: str, n: int = 8, seed: int = 0, split: str = "train",
            size: tuple[int, int] | None = None, scale: int | None = None) -> str:
    spec = get_domain(domain)
    images, labels = render(domain, split, list(range(n)), seed, size)
    H, W = images.shape[-2:]
    z = scale or max(1, 256 // H)
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:spec.num_classes] = palette(domain)
    lut[IGNORE_INDEX] = (255, 255, 255)          # void shown white
    pad, legend_w = 4, 190
    cw, rh = W * z, H * z
    rows_needed = (spec.num_classes + 1) * 14 + 24
    height = max(n * (rh + pad) + pad, rows_needed)
    canvas = Image.new("RGB", (2 * cw + 3 * pad + legend_w, height), (30, 30, 30))
    for k in range(n):
        img = Image.fromarray(images[k].permute(1, 2, 0).numpy()).resize((cw, rh), Image.NEAREST)
        lab = Image.fromarray(lut[labels[k].numpy()]).resize((cw, rh), Image.NEAREST)
        y = pad + k * (rh + pad)
        canvas.paste(img, (pad, y))
        canvas.paste(lab, (2 * pad + cw, y))
    draw = ImageDraw.Draw(canvas)
    x0 = 2 * cw + 3 * pad + 6
    draw.text((x0, 4), f"{domain} ({spec.stands_in_for}) {split} seed {seed}", fill=(255, 255, 255))
    entries = list(enumerate(spec.classes)) + [(IGNORE_INDEX, "void (255)")]
    for j, (i, name) in enumerate(entries):
        y = 22 + j * 14
        draw.rectangle((x0, y, x0 + 12, y + 10), fill=tuple(int(c) for c in lut[i]))
        draw.text((x0 + 18, y - 1), f"{i if i != IGNORE_INDEX else ''} {name}", fill=(230, 230, 230))
    canvas.save(out)
    return out
