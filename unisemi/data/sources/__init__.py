"""Real datasets on disk: one small module per dataset, all with the same three-part surface.

Each module exposes
- ``list_pairs(root, split) -> list[(image_path, label_path)]``, sorted by the image's path
  relative to the split folder (plain code-point order), so the same tree gives the same list on
  any machine or file system;
- ``read_pair(image_path, label_path) -> (uint8 (H, W, 3), uint8 (H, W))`` with the label
  already in the paper's train ids and 255 for void;
- ``CLASSES`` (names in train-id order), ``SPLITS`` and ``EXPECTED`` (image counts per split of
  the full dataset; a fixture tree is smaller, the data checker compares against these).

Bad input raises ``SourceError`` with one line naming the file and what was expected, rather
than an exception from deep inside an image decoder. Its subclasses (errors.py) say which kind
of fault it is, so that ``data check`` (unisemi/data/check.py) can group them.
"""
from __future__ import annotations


from unisemi.data.sources import camvid, cityscapes, gta5, idd, pascal_voc, sunrgbd, synthia
from unisemi.data.sources.errors import SourceError

SOURCES = {
    "cityscapes": cityscapes,
    "camvid": camvid,
    "idd": idd,
    "sunrgbd": sunrgbd,
    "pascal_voc": pascal_voc,
    "gta5": gta5,
    "synthia": synthia,
}


def get_source(name: str):
    """The module of a dataset by name; an unknown name lists the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise SourceError(f"unknown dataset '{name}' (known: {', '.join(sorted(SOURCES))})") from None
