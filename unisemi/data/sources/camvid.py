"""CamVid, the 11-class SegNet version (480x360).

Layout:
    <root>/{train,val,test}/<name>.png          RGB
    <root>/{train,val,test}annot/<name>.png     grey, values 0..10 classes, 11 void

Images and labels pair by file name (never by listing position). The `*.txt` lists in the
SegNet repository hold absolute `/SegNet/...` paths, so the folders are globbed instead.
Void (11) becomes 255. This is SegNet's class order, not MSeg's camvid-11 order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from unisemi.data.sources._common import (
    check_root, check_split, make_table, pair_by_key, read_mapped_pair, require_dir,
)

NAME = "camvid"
CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
           "pedestrian", "bicyclist")
SPLITS = ("train", "val", "test")
EXPECTED = {"train": 367, "val": 101, "test": 233}
VOID = 11

TABLE = make_table(NAME, {i: i for i in range(len(CLASSES))}, range(VOID + 1),
                   "0..10 for the classes and 11 for void")


def list_pairs(root, split: str) -> list[tuple[Path, Path]]:
    root = check_root(NAME, root, "train/, trainannot/, val/, valannot/, test/, testannot/")
    check_split(NAME, split, SPLITS)
    image_dir = require_dir(NAME, root / split, "RGB <name>.png images")
    label_dir = require_dir(NAME, root / f"{split}annot", "grey <name>.png labels")
    return pair_by_key(NAME, image_dir, label_dir, r"[^/]+", ".png", ".png")


def read_pair(image_path, label_path) -> tuple[np.ndarray, np.ndarray]:
    return read_mapped_pair(image_path, label_path, TABLE)
