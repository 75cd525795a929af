"""Tiny trees in the real on-disk layouts of the seven datasets, for the source tests.

Every builder writes under a given root with the datasets' exact folder nesting, file names and
suffixes, and returns what it wrote so tests can compare against hand-computed values. Images
are a few pixels and differ in size between files (real IDD, VOC and SUN RGB-D vary). `order`
reverses the creation order, to show the listings do not depend on it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Label values each fixture draws (raw, before mapping), chosen to hit classes, void and the ends
# of each table.
CITYSCAPES_IDS = (0, 7, 8, 11, 24, 26, 33)
CAMVID_IDS = (0, 3, 5, 10, 11)
IDD_IDS = (0, 4, 12, 25, 255)
SUN_IDS = (0, 1, 2, 36, 37)
VOC_IDS = (0, 1, 15, 20)
SYNTHIA_IDS = (0, 1, 3, 5, 8, 13, 16, 21, 22)


def stripes(h: int, w: int, values) -> np.ndarray:
    """(h, w) uint16 with each value in its own column band, so every value appears."""
    values = np.asarray(values, dtype=np.uint16)
    cols = np.arange(w) * len(values) // w
    return np.broadcast_to(values[cols], (h, w)).copy()


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_rgb(path: Path, w: int, h: int, seed: int = 0) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(_mkparent(path))  # .jpg or .png by suffix
    return rgb


def write_grey(path: Path, label: np.ndarray) -> None:
    Image.fromarray(label.astype(np.uint8), "L").save(_mkparent(path))


def write_palette(path: Path, label: np.ndarray, palette: np.ndarray) -> None:
    im = Image.fromarray(label.astype(np.uint8), "P")
    im.putpalette(palette.astype(np.uint8).ravel().tolist())
    im.save(_mkparent(path))


def write_rgb16(path: Path, red: np.ndarray, green: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (SYNTHIA's label format), through pypng: Pillow cannot."""
    import png
    h, w = red.shape
    pixels = np.stack([red, green, np.zeros_like(red)], axis=-1).astype(np.uint16)
    with open(_mkparent(path), "wb") as f:
        png.Writer(w, h, bitdepth=16, greyscale=False).write(f, pixels.reshape(h, w * 3).tolist())


def _ordered(items, order: str):
    return list(reversed(items)) if order == "reversed" else list(items)


# ----------------------------------------------------------------------------------------------

CITYSCAPES_FRAMES = {  # split -> (city, seq, frame, W, H)
    "train": [("aachen", 0, 19, 16, 8), ("aachen", 1, 19, 12, 6), ("bochum", 0, 313, 20, 10)],
    "val": [("frankfurt", 0, 294, 16, 8)],
}


def cityscapes_tree(root: Path, form: str = "plain", order: str = "forward") -> dict:
    """`plain`: <root>/leftImg8bit, <root>/gtFine. `zip`: the *_trainvaltest/ wrappers."""
    images = root / ("leftImg8bit_trainvaltest/leftImg8bit" if form == "zip" else "leftImg8bit")
    labels = root / ("gtFine_trainvaltest/gtFine" if form == "zip" else "gtFine")
    written = {}
    for split, frames in CITYSCAPES_FRAMES.items():
        for i, (city, seq, frame, w, h) in enumerate(_ordered(frames, order)):
            stem = f"{city}_{seq:06d}_{frame:06d}"
            raw = stripes(h, w, CITYSCAPES_IDS)
            write_rgb(images / split / city / f"{stem}_leftImg8bit.png", w, h, seed=i)
            write_grey(labels / split / city / f"{stem}_gtFine_labelIds.png", raw)
            # The files that sit next to labelIds in gtFine and must not be taken for it.
            (labels / split / city / f"{stem}_gtFine_polygons.json").write_text(
                f'{{"imgHeight": {h}, "imgWidth": {w}, "objects": []}}')
            write_grey(labels / split / city / f"{stem}_gtFine_color.png", raw)
            written[f"{split}/{city}/{stem}"] = raw
    return {"images": images, "labels": labels, "raw": written}


CAMVID_NAMES = {"train": ["0001TP_006690", "0006R0_f00930", "Seq05VD_f00000"],
                "val": ["0016E5_07959"], "test": ["0001TP_008550"]}


def camvid_tree(root: Path, order: str = "forward") -> dict:
    written = {}
    for split, names in CAMVID_NAMES.items():
        for i, name in enumerate(_ordered(names, order)):
            w, h = 12 + 2 * i, 9 + i
            raw = stripes(h, w, CAMVID_IDS)
            write_rgb(root / split / f"{name}.png", w, h, seed=i)
            write_grey(root / f"{split}annot" / f"{name}.png", raw)
            written[f"{split}/{name}"] = raw
    return {"raw": written}


IDD_FRAMES = {"train": [("0", "005506"), ("0", "005507"), ("119", "000123")],
              "val": [("3", "000042")]}


def idd_tree(root: Path, order: str = "forward") -> dict:
    written = {}
    for split, frames in IDD_FRAMES.items():
        for i, (drive, img_id) in enumerate(_ordered(frames, order)):
            w, h = 16 + 4 * i, 9 + i
            raw = stripes(h, w, IDD_IDS)
            write_rgb(root / "leftImg8bit" / split / drive / f"{img_id}_leftImg8bit.png", w, h, seed=i)
            gt = root / "gtFine" / split / drive
            write_grey(gt / f"{img_id}_gtFine_labellevel3Ids.png", raw)
            (gt / f"{img_id}_gtFine_polygons.json").write_text(
                f'{{"imgHeight": {h}, "imgWidth": {w}, "objects": []}}')
            written[f"{split}/{drive}/{img_id}"] = raw
    # IDD test ships images only.
    write_rgb(root / "leftImg8bit" / "test" / "7" / "000001_leftImg8bit.png", 16, 9)
    return {"raw": written}


SUN_NUMBERS = {"train": [1, 2, 10], "test": [1, 25, 26]}
SUN_VAL = [1, 25]  # split/val37.txt: a subset of test


def sunrgbd_tree(root: Path, order: str = "forward") -> dict:
    written = {}
    for split, numbers in SUN_NUMBERS.items():
        lines = []
        for i, n in enumerate(_ordered(numbers, order)):
            w, h = (10, 8) if i % 2 else (14, 10)  # two sensors, two sizes
            raw = stripes(h, w, SUN_IDS)
            write_rgb(root / "image" / split / f"img-{n:06d}.jpg", w, h, seed=i)
            write_grey(root / "label37" / split / f"{n:08d}.png", raw)
            write_grey(root / "depth" / split / f"{n:08d}.png", raw)
            lines.append(f"image/{split}/img-{n:06d}.jpg depth/{split}/{n:08d}.png "
                         f"label37/{split}/{n:08d}.png")
            written[f"{split}/{n:08d}"] = raw
        (root / f"{split}37.txt").write_text("\n".join(lines))
    (root / "split").mkdir(exist_ok=True)
    (root / "split" / "val37.txt").write_text("\n".join(
        f"image/test/img-{n:06d}.jpg depth/test/{n:08d}.png label37/test/{n:08d}.png"
        for n in SUN_VAL))
    return {"raw": written}


VOC_SPLITS = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}
VOC_SBD_ONLY = ["2008_000002", "2008_000003"]  # in SegmentationClassAug only


def voc_mask(h: int, w: int) -> np.ndarray:
    """Classes in bands with a 255 border around each band and the image, as VOC draws them."""
    mask = stripes(h, w, VOC_IDS).astype(np.uint8)
    edges = np.zeros_like(mask, dtype=bool)
    edges[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edges[[0, -1], :] = True
    edges[:, 0] = True
    mask[edges] = 255
    return mask


def voc_tree(root: Path, order: str = "forward", aug_list: bool = False) -> dict:
    """`root` plays VOCdevkit/: writes <root>/VOC2012/... (the source also takes VOC2012/ itself)."""
    from unisemi.data.sources.pascal_voc import voc_colormap
    voc = root / "VOC2012"
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    masks = {}
    all_ids = [*VOC_SPLITS["train"], *VOC_SPLITS["val"], *VOC_SBD_ONLY]
    for i, img_id in enumerate(_ordered(all_ids, order)):
        w, h = (15, 11) if i % 2 else (11, 15)  # landscape and portrait, like 500x375 / 375x500
        write_rgb(voc / "JPEGImages" / f"{img_id}.jpg", w, h, seed=i)
        mask = voc_mask(h, w)
        if img_id not in VOC_SBD_ONLY:
            write_palette(voc / "SegmentationClass" / f"{img_id}.png", mask, voc_colormap())
        write_grey(voc / "SegmentationClassAug" / f"{img_id}.png", mask)
        masks[img_id] = mask
    write_rgb(voc / "JPEGImages" / "2007_000027.jpg", 9, 7)  # a detection-only image: no mask
    for split, ids in VOC_SPLITS.items():
        (sets / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (sets / "trainval.txt").write_text("\n".join(sorted(VOC_SPLITS["train"] + VOC_SPLITS["val"])))
    if aug_list:
        (sets / "aug.txt").write_text("\n".join([*VOC_SPLITS["train"], *VOC_SBD_ONLY]))
    return {"voc": voc, "masks": masks}


GTA5_NUMBERS = [1, 2, 24966]


def gta5_tree(root: Path, order: str = "forward") -> dict:
    from unisemi.data.sources.pascal_voc import voc_colormap  # any palette: indices are the ids
    written = {}
    for i, n in enumerate(_ordered(GTA5_NUMBERS, order)):
        w, h = 19 + i, 10 + i
        raw = stripes(h, w, CITYSCAPES_IDS)
        write_rgb(root / "images" / f"{n:05d}.png", w, h, seed=i)
        write_palette(root / "labels" / f"{n:05d}.png", raw, voc_colormap())
        write_grey(root / "labels" / f"{n:05d}_labelTrainIds.png", raw)  # DAFormer's by-product
        written[f"{n:05d}"] = raw
    return {"raw": written}


SYNTHIA_NUMBERS = [0, 1, 9399]


def synthia_tree(root: Path, order: str = "forward") -> dict:
    written = {}
    for i, n in enumerate(_ordered(SYNTHIA_NUMBERS, order)):
        w, h = 18 + i, 8 + i
        ids = stripes(h, w, SYNTHIA_IDS)
        write_rgb(root / "RGB" / f"{n:07d}.png", w, h, seed=i)
        write_rgb16(root / "GT" / "LABELS" / f"{n:07d}.png", ids, 1000 + ids)
        write_rgb(root / "GT" / "COLOR" / f"{n:07d}.png", w, h, seed=i)
        written[f"{n:07d}"] = ids
    return {"raw": written}


BUILDERS = {"cityscapes": cityscapes_tree, "camvid": camvid_tree, "idd": idd_tree,
            "sunrgbd": sunrgbd_tree, "pascal_voc": voc_tree, "gta5": gta5_tree,
            "synthia": synthia_tree}
