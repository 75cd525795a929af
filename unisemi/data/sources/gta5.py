"""GTA5 ("Playing for Data"): synthetic frames labelled with Cityscapes label ids.

Layout:
    <root>/images/<5 digits>.png     RGB, 1914x1052 (not all frames; sizes are checked per pair)
    <root>/labels/<5 digits>.png     palette PNG whose indices are Cityscapes label ids 0..33
or, as some semi-supervised code expects, images/{train,val}/ and labels/{train,val}/.

UDA work trains on all 24966 frames, so `train` is the whole flat folder. Other files in
labels/ (such as DAFormer's `<n>_labelTrainIds.png`) are not labels of this layout and are
skipped. The ids map to the 19 train ids through the same cityscapesscripts table as Cityscapes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from unisemi.data.sources.errors import SourceError
from unisemi.data.sources._common import (
    check_root, check_split, pair_by_key, read_mapped_pair, require_dir,
)
from unisemi.data.sources import cityscapes

NAME = "gta5"
CLASSES = cityscapes.CLASSES
SPLITS = ("train", "val")
EXPECTED = {"train": 24966}


def _split_dirs(root: Path, split: str) -> tuple[Path, Path]:
    images = require_dir(NAME, root / "images", "<5 digits>.png frames")
    labels = require_dir(NAME, root / "labels", "<5 digits>.png labels")
    if (images / split).is_dir() or (images / "train").is_dir():
        return (require_dir(NAME, images / split, "<5 digits>.png frames"),
                require_dir(NAME, labels / split, "<5 digits>.png labels"))
    if split != "train":
        raise SourceError(f"{NAME}: the flat layout under {root} has only the train split "
                          f"(expected {images / split} for a '{split}' split)")
    return images, labels


def list_pairs(root, split: str) -> list[tuple[Path, Path]]:
    root = check_root(NAME, root, "images/ and labels/")
    check_split(NAME, split, SPLITS)
    image_dir, label_dir = _split_dirs(root, split)
    return pair_by_key(NAME, image_dir, label_dir, r"\d{5}", ".png", ".png")


def read_pair(image_path, label_path) -> tuple[np.ndarray, np.ndarray]:
    return read_mapped_pair(image_path, label_path, cityscapes.label_table())
