"""Cityscapes, gtFine: `*_gtFine_labelIds.png` mapped to the 19 train ids on the fly.

Layout (either root form; the second is what unzipping the official archives in place gives):
    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
or  <root>/leftImg8bit_trainvaltest/leftImg8bit/...  and  <root>/gtFine_trainvaltest/gtFine/...

The id -> train id table comes from cityscapesscripts (the `data` extra) rather than a copy, so it
cannot drift from the official one. The test split's label files are placeholders (the test
labels are not public): listing them works, scoring on them means nothing.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from unisemi.data.sources.errors import SourceError
from unisemi.data.sources._common import (
    BAD_LINK, LabelTable, check_root, check_split, make_table, pair_by_key, read_mapped_pair, require_dir,
)

NAME = "cityscapes"
CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
           "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
           "bus", "train", "motorcycle", "bicycle")
SPLITS = ("train", "val", "test")
EXPECTED = {"train": 2975, "val": 500, "test": 1525}

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
_LAYOUT = "leftImg8bit/ and gtFine/ (or leftImg8bit_trainvaltest/ and gtFine_trainvaltest/)"


@lru_cache(maxsize=1)
def label_table() -> LabelTable:
    """labelId -> trainId from cityscapesscripts' label list (ids 0..33 known, the rest unknown).
    Shared with GTA5, whose labels use the same ids."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        raise SourceError("cityscapes: the label table needs cityscapesscripts "
                          "(pip install 'unisemi[data]')") from None
    known = [lab.id for lab in labels if 0 <= lab.id < 256]
    # trainId 255 is void and -1 (license plate, never drawn) is not a class: both stay 255.
    mapping = {lab.id: lab.trainId for lab in labels if 0 <= lab.id < 256 and 0 <= lab.trainId < 255}
    return make_table(NAME, mapping, known, f"Cityscapes label ids {min(known)}..{max(known)}")


def _folder(root: Path, name: str) -> Path:
    """`<root>/<name>` or the unzipped-archive form `<root>/<name>_trainvaltest/<name>`."""
    for candidate in (root / name, root / f"{name}_trainvaltest" / name):
        if candidate.is_dir():
            return candidate
        if candidate.is_symlink():
            raise SourceError(f"{NAME}: folder {candidate} is {BAD_LINK} (expected a folder)")
    raise SourceError(f"{NAME}: no {name}/ folder under {root} (expected {root / name} "
                      f"or {root / (name + '_trainvaltest') / name})")


def list_pairs(root, split: str) -> list[tuple[Path, Path]]:
    root = check_root(NAME, root, _LAYOUT)
    check_split(NAME, split, SPLITS)
    image_dir = require_dir(NAME, _folder(root, "leftImg8bit") / split,
                            f"<city>/<city>_<seq>_<frame>{IMAGE_SUFFIX} files")
    label_dir = require_dir(NAME, _folder(root, "gtFine") / split,
                            f"<city>/<city>_<seq>_<frame>{LABEL_SUFFIX} files")
    # key = "<city>/<city>_<seq>_<frame>"
    return pair_by_key(NAME, image_dir, label_dir, r"[^/]+/[^/]+", IMAGE_SUFFIX, LABEL_SUFFIX, recursive=True)


def read_pair(image_path, label_path) -> tuple[np.ndarray, np.ndarray]:
    return read_mapped_pair(image_path, label_path, label_table())
