"""IDD (India Driving Dataset, segmentation Part I), level-3 ids: 26 classes.

Layout:
    <root>/leftImg8bit/{train,val}/<drive>/<id>_leftImg8bit.png
    <root>/gtFine/{train,val}/<drive>/<id>_gtFine_labellevel3Ids.png

The label PNGs are not shipped: AutoNUE's `preperation/createLabels.py --id-type level3Id`
renders them from the polygon JSON (note the lower-case `l` in `labellevel3Ids`, which is what
the tool writes and the official evaluator reads). Their values are already the train ids,
0..25, with 255 for void. The test split has no labels and so no pairs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from unisemi.data.sources._common import (
    check_root, check_split, make_table, pair_by_key, read_mapped_pair, require_dir,
)
from unisemi.data.labels import IGNORE_INDEX

NAME = "idd"
CLASSES = ("road", "drivable fallback", "sidewalk", "non-drivable fallback", "person", "rider",
           "motorcycle", "bicycle", "autorickshaw", "car", "truck", "bus", "vehicle fallback",
           "curb", "wall", "fence", "guard rail", "billboard", "traffic sign", "traffic light",
           "pole", "obs-str-bar-fallback", "building", "bridge", "vegetation", "sky")
SPLITS = ("train", "val")
EXPECTED = {"train": 6993, "val": 981}

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labellevel3Ids.png"

TABLE = make_table(NAME, {i: i for i in range(len(CLASSES))},
                   [*range(len(CLASSES)), IGNORE_INDEX], "level-3 ids 0..25 and 255 for void")


def list_pairs(root, split: str) -> list[tuple[Path, Path]]:
    root = check_root(NAME, root, "leftImg8bit/ and gtFine/")
    check_split(NAME, split, SPLITS)
    image_dir = require_dir(NAME, root / "leftImg8bit" / split, f"<drive>/<id>{IMAGE_SUFFIX} files")
    label_dir = require_dir(NAME, root / "gtFine" / split,
                            f"<drive>/<id>{LABEL_SUFFIX} files (render them with AutoNUE's "
                            "createLabels.py --id-type level3Id)")
    return pair_by_key(NAME, image_dir, label_dir, r"[^/]+/[^/]+", IMAGE_SUFFIX, LABEL_SUFFIX, recursive=True)


def read_pair(image_path, label_path) -> tuple[np.ndarray, np.ndarray]:
    return read_mapped_pair(image_path, label_path, TABLE)
