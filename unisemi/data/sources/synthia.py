"""SYNTHIA-RAND-CITYSCAPES: 9400 synthetic frames, evaluated on 16 or 13 Cityscapes classes.

Layout:
    <root>/RGB/<7 digits>.png          RGB
    <root>/GT/LABELS/<7 digits>.png    16 bits per channel: class id in the first channel
                                       (R), instance id in the second

Pillow keeps only the high byte of 16-bit colour PNGs, which turns every class id below 256
into 0, so labels are decoded with pypng (the `data` extra). There is no official split:
`train` is every frame, as in UDA work.

`classes` picks the label space: 16 (the classes SYNTHIA shares with Cityscapes, numbered
0..15 in Cityscapes order), 13 (those minus wall, fence and pole, 0..12) or 19 (Cityscapes train
ids, three of which never occur). `CITYSCAPES_IDS[n][k]` is the Cityscapes train id of class k,
for putting the Cityscapes side of an adaptation run into the same space.
"""
from __future__ import annotations

import os
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from unisemi.data.sources import cityscapes
from unisemi.data.sources.errors import SourceError, UnreadableError
from unisemi.data.sources._common import (
    BAD_LINK, LabelTable, check_root, check_same_size, check_split, list_files, make_table, pair_up,
    read_rgb, require_dir,
)

NAME = "synthia"
SPLITS = ("train",)
EXPECTED = {"train": 9400}

# SYNTHIA class id -> Cityscapes train id. Ids 0 void, 13 parking-slot, 14 road-work and
# 22 lanemarking have no Cityscapes class.
_TO_CITYSCAPES = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11,
                  17: 12, 8: 13, 18: 14, 19: 15, 20: 16, 12: 17, 11: 18}
_KNOWN_IDS = range(23)  # 0..22

CITYSCAPES_IDS = {
    19: tuple(range(19)),
    16: (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18),  # no terrain, truck, train
    13: (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18),           # ... and no wall, fence, pole
}
CLASSES_BY_SUBSET = {n: tuple(cityscapes.CLASSES[i] for i in ids) for n, ids in CITYSCAPES_IDS.items()}
CLASSES = CLASSES_BY_SUBSET[16]


@lru_cache(maxsize=None)
def label_table(classes: int = 16) -> LabelTable:
    """SYNTHIA id -> index in the chosen subset (65536 entries: the ids are 16-bit values)."""
    if classes not in CITYSCAPES_IDS:
        raise SourceError(f"{NAME}: no {classes}-class subset (known: 16, 13, 19)")
    position = {train_id: k for k, train_id in enumerate(CITYSCAPES_IDS[classes])}
    mapping = {raw: position[t] for raw, t in _TO_CITYSCAPES.items() if t in position}
    return make_table(f"{NAME} ({classes} classes)", mapping, _KNOWN_IDS,
                      "SYNTHIA class ids 0..22 in the first channel", size=1 << 16)


def list_pairs(root, split: str) -> list[tuple[Path, Path]]:
    root = check_root(NAME, root, "RGB/ and GT/LABELS/")
    check_split(NAME, split, SPLITS)
    image_dir = require_dir(NAME, root / "RGB", "<7 digits>.png frames")
    label_dir = require_dir(NAME, root / "GT" / "LABELS", "16-bit <7 digits>.png labels")
    pattern = r"(?P<key>\d{7})\.png"
    return pair_up(NAME, list_files(NAME, image_dir, pattern), list_files(NAME, label_dir, pattern),
                   image_for=lambda k: image_dir / f"{k}.png",
                   label_for=lambda k: label_dir / f"{k}.png", where=image_dir)


def read_class_ids(path) -> np.ndarray:
    """The first channel of a SYNTHIA label PNG at full bit depth, (H, W) uint16."""
    try:
        import png
    except ImportError:
        raise SourceError(f"{NAME}: 16-bit labels need pypng (pip install 'unisemi[data]')") from None
    if os.path.islink(path) and not os.path.exists(path):
        raise UnreadableError(f"{path}: file is {BAD_LINK} (expected a 16-bit label PNG)")
    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = info["planes"]
        pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except FileNotFoundError:
        raise UnreadableError(f"{path}: file is missing") from None
    except (png.Error, zlib.error, OSError, ValueError, EOFError) as exc:
        raise UnreadableError(f"{path}: unreadable or truncated PNG ({exc})") from None
    if pixels.shape != (height, width * planes):
        raise UnreadableError(f"{path}: decoded {pixels.shape} values (expected {height} rows of "
                          f"{width}x{planes}); the file is truncated")
    return pixels.reshape(height, width, planes)[..., 0]


def read_pair(image_path, label_path, classes: int = 16) -> tuple[np.ndarray, np.ndarray]:
    image = read_rgb(image_path)
    label = label_table(classes).apply(read_class_ids(label_path), label_path)
    check_same_size(image, label, image_path, label_path)
    return image, label
