"""PASCAL VOC 2012 with the SBD augmentation ("train_aug", 10582 images; val 1449).

Layout (`root` is VOCdevkit/ or VOC2012/ itself):
    VOC2012/JPEGImages/<id>.jpg
    VOC2012/SegmentationClass/<id>.png          official masks: palette PNG, index = class
    VOC2012/SegmentationClassAug/<id>.png       SBD-converted masks (grey), for train_aug
    VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt    one id per line
    VOC2012/ImageSets/Segmentation/train_aug.txt (or aug.txt)  optional

Masks hold 0 background, 1..20 classes and 255 on object borders (void). A palette PNG's pixel
values ARE the class indices: decoding it to colours would turn the classes into RGB triples.
So masks are read as stored; only a mask that someone already expanded to RGB is mapped back
through the VOC colour map.

train_aug = its list file if there is one, else every mask in SegmentationClassAug/ except the
val ids (that is how the 10582 are defined: VOC train + SBD train/val - VOC val). UniMatch ships
its aug masks under SegmentationClass/, which is used when SegmentationClassAug/ is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unisemi.data.labels import IGNORE_INDEX
from unisemi.data.sources.errors import LabelValueError, SourceError, UnpairedError
from unisemi.data.sources._common import (
    check_root, check_same_size, check_split, list_files, load_image, index_array, make_table,
    pair_up, read_list, read_rgb, require_dir,
)

NAME = "pascal_voc"
CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
           "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
           "sheep", "sofa", "train", "tvmonitor")
SPLITS = ("train", "val", "trainval", "train_aug")
EXPECTED = {"train": 1464, "val": 1449, "trainval": 2913, "train_aug": 10582}

TABLE = make_table(NAME, {i: i for i in range(len(CLASSES))}, [*range(len(CLASSES)), IGNORE_INDEX],
                   "0..20 for the classes and 255 for borders")
_AUG_LISTS = ("train_aug.txt", "aug.txt")  # the name people use, and the one mmseg's converter writes


def voc_colormap(n: int = 256) -> np.ndarray:
    """(n, 3) uint8: the VOC palette. Bits 0/1/2 of the index go to R/G/B, most significant first,
    three bits per round, so index 1 is (128, 0, 0) and 255 is (224, 224, 192)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        c, rgb = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        cmap[index] = rgb
    return cmap


def _voc2012(root: Path) -> Path:
    for candidate in (root / "VOC2012", root / "VOCdevkit" / "VOC2012", root):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise SourceError(f"{NAME}: no JPEGImages/ folder under {root} (expected {root}/VOC2012/JPEGImages "
                      f"or {root}/JPEGImages)")


def _ids(list_path: Path) -> list[str]:
    rows = read_list(NAME, list_path, "one image id per line, e.g. 2007_000032")
    return [row[0] for row in rows]


def _split_ids(voc: Path, split: str) -> tuple[list[str], Path]:
    """The ids of a split and the folder of its masks."""
    sets = voc / "ImageSets" / "Segmentation"
    if split != "train_aug":
        return _ids(sets / f"{split}.txt"), voc / "SegmentationClass"
    masks = voc / "SegmentationClassAug"
    if not masks.is_dir():
        masks = require_dir(NAME, voc / "SegmentationClass",
                            "SegmentationClassAug/ (or UniMatch's aug masks in SegmentationClass/)")
    for name in _AUG_LISTS:
        if (sets / name).is_file():
            return _ids(sets / name), masks
    val = set(_ids(sets / "val.txt"))
    return [k for k in list_files(NAME, masks, r"(?P<key>[^/]+)\.png") if k not in val], masks


def list_pairs(root, split: str) -> list[tuple[Path, Path]]:
    root = check_root(NAME, root, "VOC2012/ (JPEGImages/, SegmentationClass/, ImageSets/)")
    check_split(NAME, split, SPLITS)
    voc = _voc2012(root)
    ids, mask_dir = _split_ids(voc, split)
    require_dir(NAME, mask_dir, "<id>.png masks")
    image_dir = voc / "JPEGImages"
    # Only the listed ids count: JPEGImages/ also holds the detection-only images. lexists, not
    # is_file: a looping or dangling link is then reported as such when the pair is read.
    images = {k: image_dir / f"{k}.jpg" for k in ids if os.path.lexists(image_dir / f"{k}.jpg")}
    missing = [f"{NAME}: listed image {image_dir / f'{k}.jpg'} is missing (expected the image of "
               f"id {k} in the {split} list)" for k in ids if k not in images]
    labels = {k: mask_dir / f"{k}.png" for k in images if os.path.lexists(mask_dir / f"{k}.png")}
    if not missing:
        return pair_up(NAME, images, labels, image_for=lambda k: image_dir / f"{k}.jpg",
                       label_for=lambda k: mask_dir / f"{k}.png", where=image_dir)
    # Report the missing images first, but keep what pairs (and what else is unpaired) for data check.
    pairs, unpaired = [], []
    if images:
        try:
            pairs = pair_up(NAME, images, labels, lambda k: image_dir / f"{k}.jpg",
                            lambda k: mask_dir / f"{k}.png", image_dir)
        except UnpairedError as exc:
            pairs, unpaired = exc.pairs, exc.unpaired
    more = f"; {len(missing) - 1} more listed images are missing" if len(missing) > 1 else ""
    raise UnpairedError(missing[0] + more, pairs, missing + unpaired)


def read_label(path) -> np.ndarray:
    """Class indices (H, W) uint8 in 0..20 and 255, from a palette, grey or RGB-expanded mask."""
    im = load_image(path)
    if im.mode == "RGB":
        return _from_colours(np.asarray(im), path)
    return TABLE.apply(index_array(im, path), path)


def _from_colours(rgb: np.ndarray, path) -> np.ndarray:
    """Invert the VOC palette on an RGB mask (the 22 colours in use), vectorised by packing each
    colour into one integer and looking it up in the sorted codes."""
    indices = np.array([*range(len(CLASSES)), IGNORE_INDEX])
    cmap = voc_colormap()[indices].astype(np.int64)
    codes = (cmap[:, 0] << 16) | (cmap[:, 1] << 8) | cmap[:, 2]
    order = np.argsort(codes)
    codes, indices = codes[order], indices[order]
    pixels = rgb.astype(np.int64)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    pos = np.clip(np.searchsorted(codes, packed), 0, len(codes) - 1)
    bad = codes[pos] != packed
    if bad.any():
        colours = np.unique(rgb[bad].reshape(-1, 3), axis=0)[:5]
        shown = ", ".join(str(tuple(int(v) for v in c)) for c in colours)
        raise LabelValueError(f"{path}: RGB label colours {shown} are not VOC palette colours "
                              "(expected the palette of classes 0..20 and the border colour)",
                              [tuple(int(v) for v in c) for c in colours])
    return indices[pos].astype(np.uint8)


def read_pair(image_path, label_path) -> tuple[np.ndarray, np.ndarray]:
    image = read_rgb(image_path)
    label = read_label(label_path)
    check_same_size(image, label, image_path, label_path)
    return image, label


def image_labels(label, include_background: bool = False) -> np.ndarray:
    """bool (21,): which classes occur in a mapped mask (255 never counts).

    Background (index 0) is False unless `include_background`: nearly every VOC image has
    background, and image-level methods classify the 20 object classes."""
    label = np.asarray(label)
    present = np.bincount(label.ravel(), minlength=256)[:len(CLASSES)] > 0
    if not include_background:
        present[0] = False
    return present
