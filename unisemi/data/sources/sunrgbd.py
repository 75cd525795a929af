"""SUN RGB-D, 37 classes, in Chris Choy's reorganised layout (`sun_rgbd.tgz`), RGB only.

Layout:
    <root>/image/{train,test}/img-<6 digits>.jpg
    <root>/label37/{train,test}/<8 digits>.png      0 void, 1..37 classes
    <root>/split/val37.txt                          optional: 475 test images used as val

An image and its label share the number (img-000001.jpg <-> 00000001.png), not the file name.
There is no official val split; `val` reads `split/val37.txt` (rows `image depth label`, the
first and last tokens relative to the root), the subset of test that MSeg and others use.
Labels are shifted to 0..36 with 0 -> 255.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from unisemi.data.sources.errors import SourceError
from unisemi.data.sources._common import (
    check_root, check_same_size, check_split, list_files, make_table, pair_up, read_index_label,
    read_list, read_rgb, require_dir, require_file,
)

NAME = "sunrgbd"
CLASSES = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
           "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
           "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refrigerator",
           "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
           "night stand", "toilet", "sink", "lamp", "bathtub", "bag")
SPLITS = ("train", "test", "val")
EXPECTED = {"train": 5285, "test": 5050, "val": 475}

TABLE = make_table(NAME, {k: k - 1 for k in range(1, len(CLASSES) + 1)}, range(len(CLASSES) + 1),
                   "0 for void and 1..37 for the classes")


def list_pairs(root, split: str) -> list[tuple[Path, Path]]:
    root = check_root(NAME, root, "image/ and label37/")
    check_split(NAME, split, SPLITS)
    if split == "val":
        return _listed(root, root / "split" / "val37.txt")
    image_dir = require_dir(NAME, root / "image" / split, "img-<6 digits>.jpg images")
    label_dir = require_dir(NAME, root / "label37" / split, "<8 digits>.png labels")
    # Key on the integer so the two zero paddings meet; sort numerically (keys are zero-padded).
    images = {f"{int(k):08d}": p for k, p in
              list_files(NAME, image_dir, r"img-(?P<key>\d{6})\.jpg").items()}
    labels = list_files(NAME, label_dir, r"(?P<key>\d{8})\.png")
    return pair_up(NAME, images, labels,
                   image_for=lambda k: image_dir / f"img-{int(k):06d}.jpg",
                   label_for=lambda k: label_dir / f"{k}.png", where=image_dir)


def _listed(root: Path, list_path: Path) -> list[tuple[Path, Path]]:
    expect = "rows 'image/test/img-N.jpg depth/test/N.png label37/test/N.png'"
    pairs = []
    for number, row in enumerate(read_list(NAME, list_path, expect), start=1):
        if len(row) < 2:
            raise SourceError(f"{list_path}:{number}: row has {len(row)} field (expected {expect})")
        image = require_file(NAME, root / row[0], f"the image listed in {list_path}:{number}")
        label = require_file(NAME, root / row[-1], f"the label listed in {list_path}:{number}")
        pairs.append((image, label))
    if not pairs:
        raise SourceError(f"{NAME}: {list_path} lists no images (expected {expect})")
    return sorted(pairs, key=lambda pair: pair[0].relative_to(root).as_posix())


def read_pair(image_path, label_path) -> tuple[np.ndarray, np.ndarray]:
    image = read_rgb(image_path)
    label = TABLE.apply(read_index_label(label_path), label_path)
    check_same_size(image, label, image_path, label_path)
    return image, label
