"""Domains backed by a real dataset on disk: where its root is, which splits and classes it has,
the loader-side protocol of the papers, and the labelled / unlabelled split of its file list.

A config names a real dataset as a domain (`data.domains: [cityscapes]`, or `[city, camvid]` to
mix the embedded world with a real CamVid). Its root is `data.roots.<name>` if given, else
`$UNISEMI_DATA/<folder>`; the folder of each dataset is in `DATASETS` (README "Real datasets").

The protocol defaults are those of the DeepLabv2 semi-supervised lineage the papers follow
(../shared/notes/datasets.md, "Standard preprocessing"): Cityscapes and IDD resized to 512x1024
and cropped to 512x512, evaluated at 512x1024 with the logits upsampled to the full label;
VOC cropped to 321x321 and evaluated whole; the game and simulator sources at AdaptSegNet's
1280x720 and 1280x760. `data.resize`, `data.crop`, `data.scale` and `data.val_resize` override
them for every real domain of a config.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from unisemi.data import pipeline
from unisemi.data.resized_cache import ResizedCache, default_folder
from unisemi.data.splits import count_from_ratio, file_split, pairs_from_list, relative_key, split_hash
from unisemi.data.sources import get_source, synthia
from unisemi.data.sources._common import read_rgb
from unisemi.data.sources.errors import SourceError


@dataclass(frozen=True)
class Dataset:
    source: str              # module in unisemi.data.sources
    folder: str              # default root: $UNISEMI_DATA/<folder>
    train: str               # the split the training pool is drawn from
    val: str | None          # the split scored as validation (None: a source-only dataset)
    resize: tuple = ()
    crop: tuple = ()
    val_resize: tuple = ()
    classes: int = 0         # a class subset (SYNTHIA's 16 / 13; Cityscapes in that space)


_CITY = dict(resize=(512, 1024), crop=(512, 512), val_resize=(512, 1024))
DATASETS = {
    "cityscapes": Dataset("cityscapes", "cityscapes", "train", "val", **_CITY),
    "cityscapes16": Dataset("cityscapes", "cityscapes", "train", "val", classes=16, **_CITY),
    "cityscapes13": Dataset("cityscapes", "cityscapes", "train", "val", classes=13, **_CITY),
    "camvid": Dataset("camvid", "camvid", "train", "val"),
    "idd": Dataset("idd", "idd", "train", "val", **_CITY),
    "sunrgbd": Dataset("sunrgbd", "sunrgbd", "train", "test", resize=(480, 640), val_resize=(480, 640)),
    "pascal_voc": Dataset("pascal_voc", "pascal_voc", "train_aug", "val", crop=(321, 321)),
    "gta5": Dataset("gta5", "gta5", "train", None, resize=(720, 1280), crop=(512, 512)),
    "synthia": Dataset("synthia", "synthia", "train", None, resize=(760, 1280), crop=(512, 512), classes=16),
    "synthia13": Dataset("synthia", "synthia", "train", None, resize=(760, 1280), crop=(512, 512), classes=13),
}


def classes_of(name: str) -> tuple[str, ...]:
    ds = DATASETS[name]
    if ds.classes:
        return synthia.CLASSES_BY_SUBSET[ds.classes]
    return tuple(get_source(ds.source).CLASSES)


def root_of(data_cfg, name: str) -> Path:
    """The dataset's root: data.roots.<name>, else $UNISEMI_DATA/<folder>."""
    roots = dict(data_cfg.roots or {})
    if name in roots:
        return Path(roots[name]).expanduser()
    base = os.environ.get("UNISEMI_DATA")
    if not base:
        raise SourceError(f"{name}: no root for this dataset: set data.roots.{name}, or UNISEMI_DATA "
                          f"to a folder holding {DATASETS[name].folder}/ (README 'Real datasets')")
    return Path(base).expanduser() / DATASETS[name].folder


# Readers: module-level functions (picklable for worker processes under any start method).

def _read_labelled(source: str, classes: int, image_path, label_path):
    if source == "synthia":
        return synthia.read_pair(image_path, label_path, classes=classes or 16)
    image, label = get_source(source).read_pair(image_path, label_path)
    if classes:   # Cityscapes train ids -> the SYNTHIA subset; the rest is void
        label = _SUBSET_LUT[classes][label]
    return image, label


def read_sample(source: str, classes: int, image_path, label_path):
    """(image, label) of a pair, or (image, None) when the label must not be read (unlabelled)."""
    if label_path is None:
        return read_rgb(image_path), None
    return _read_labelled(source, classes, image_path, label_path)


def read_mask(source: str, classes: int, image_path, label_path) -> np.ndarray:
    """A pair's label map alone, mapped as in training; the image is decoded only by sources
    without a label reader of their own (its size is then checked against the label's)."""
    reader = getattr(get_source(source), "read_label", None)
    if reader is None or source == "synthia":
        return _read_labelled(source, classes, image_path, label_path)[1]
    label = reader(label_path)
    return _SUBSET_LUT[classes][label] if classes else label


# Image-level labels of a pool, by (dataset, its label files): every stage of a transfer run asks
# for them, and a pool of 10582 VOC masks takes a while to decode.
_POOL_CLASSES: dict = {}


def image_labels(dd: "RealDomain") -> torch.Tensor:
    """bool (N, C): the classes present in each pool pair's whole ground-truth mask (255 never
    counts), computed once per process by `dd.workers` DataLoader workers, in pool order."""
    key = (dd.name, tuple(str(label) for _, label in dd.train_pairs))
    if key not in _POOL_CLASSES:
        ds = DATASETS[dd.name]
        read = functools.partial(read_mask, ds.source, ds.classes)
        _POOL_CLASSES[key] = pipeline.pool_classes(dd.train_pairs, read, dd.num_classes, dd.workers)
    return _POOL_CLASSES[key]


def _subset_lut(ids) -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    lut[list(ids)] = np.arange(len(ids), dtype=np.uint8)
    return lut


_SUBSET_LUT = {n: _subset_lut(ids) for n, ids in synthia.CITYSCAPES_IDS.items() if n != 19}


def count_for(data_cfg, pool: int, name: str) -> int:
    """N labelled: ceil(fraction x pool) when a fraction is set (every published count is that:
    1/30 of 2975 = 100, 1/50 of 10582 = 212), else data.n_labelled."""
    if data_cfg.labelled_fraction > 0:
        n = count_from_ratio(pool, data_cfg.labelled_fraction)
    else:
        n = data_cfg.n_labelled
    if not 0 <= n <= pool:
        raise SourceError(f"data.n_labelled={n} for domain '{name}': expected 0..{pool} "
                          f"(the images of its {DATASETS[name].train} split)")
    return n


def labelled_positions(data_cfg, name: str, pairs: list, root: Path) -> tuple[list[int], str]:
    """Positions of the labelled pairs in the pool, and the split's id: the images of a published
    list (data.split_lists.<name>, a labeled.txt), else a seeded draw from the sorted file list."""
    keys = [relative_key(image, root) for image, _ in pairs]
    position = {k: i for i, k in enumerate(keys)}
    listed = dict(data_cfg.split_lists or {}).get(name)
    if listed:
        chosen = pairs_from_list(pairs, listed, root)
        return sorted(position[relative_key(image, root)] for image, _ in chosen), \
            f"{name}/list:{Path(listed).parent.name}/{Path(listed).name}"
    n = count_for(data_cfg, len(pairs), name)
    names, _ = file_split(keys, n, data_cfg.split_seed)
    return sorted(position[k] for k in names), f"{name}/n{n}/s{data_cfg.split_seed}"


@dataclass
class RealDomain:
    """A real dataset as a domain: its pool of train pairs, split into labelled and unlabelled,
    and its val pairs; the loop reads them through `stream` and `val_batches`."""
    name: str
    classes: tuple[str, ...]
    labelled: torch.Tensor
    unlabelled: torch.Tensor
    split_id: str
    split_hash: str
    root: Path
    train_pairs: list
    geometry: pipeline.Geometry
    val_resize: tuple
    workers: int
    prefetch: int
    val_images: int
    cache: ResizedCache | None = None
    val_split: str | None = None      # the split scored as val; None: the dataset's (DATASETS)
    _val: list | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def read(self):
        ds = DATASETS[self.name]
        return functools.partial(read_sample, ds.source, ds.classes)

    @property
    def val_pairs(self) -> list:
        """Listed on first use: a source-only domain (GTA5, SYNTHIA) never needs one."""
        if self._val is None:
            split = self.val_split or DATASETS[self.name].val
            if split is None:
                raise SourceError(f"{self.name} has no validation split: use it as a source domain, "
                                  f"not in data.domains")
            pairs = get_source(DATASETS[self.name].source).list_pairs(self.root, split)
            self._val = pairs[:self.val_images] if self.val_images else pairs
        return self._val

    @property
    def val(self) -> torch.Tensor:
        return torch.arange(len(self.val_pairs))

    def stream(self, kind: str, batch: int, seed: int, part: tuple[int, int], pin_memory: bool,
               replacements: dict | None = None):
        """The loop's labelled or unlabelled stream; `replacements` ({pool index: label file})
        are a method's generated labels, read in place of those images' ground truth."""
        labels = kind == "labelled"
        # A fully labelled dataset's unlabelled stream draws from the whole pool, labels unread
        # (the embedded world's rule in train.Batches; ASS at #City = all, docs/ass.md).
        pool = self.labelled if labels or not len(self.unlabelled) else self.unlabelled
        if len(pool) == 0:
            raise SourceError(f"{self.name}: no {kind} images to sample "
                              f"(data.n_labelled={len(self.labelled)} of {len(self.train_pairs)})")
        return self.pool_stream(pool, batch, seed, labels=labels, hflip=labels and self.geometry.hflip,
                                replacements=replacements, part=part, pin_memory=pin_memory)

    def pool_stream(self, pool: torch.Tensor, batch: int, seed: int, labels: bool = True,
                    classes: bool = False, replacements: dict | None = None, hflip: bool | None = None,
                    part: tuple[int, int] = (0, 1), pin_memory: bool = False):
        """A stream over any subset of the pool at the domain's geometry (a method's own fits):
        batches (x, [y], [image-level labels (B, C)]) as asked."""
        geo = self.geometry
        if hflip is not None and hflip != geo.hflip:
            geo = pipeline.Geometry(geo.resize, geo.scale, geo.crop, hflip=hflip)
        dataset = pipeline.PairStream(self.train_pairs, self.read, geo, seed, labels,
                                      classes=self.num_classes if classes else 0,
                                      replacements=replacements, cache=self.cache)
        return pipeline.Stream(dataset, pool, batch, part, self.workers, self.prefetch, pin_memory)

    def val_batches(self, shard: torch.Tensor):
        pairs = [self.val_pairs[i] for i in shard.tolist()]
        return pipeline.val_loader(pairs, self.read, self.val_resize, self.workers)


def _size(value, default) -> tuple:
    value = tuple(value or ())
    if value == (0, 0):
        return ()
    return value or tuple(default)


def sizes(data_cfg, ds: Dataset) -> tuple[tuple, tuple]:
    """(resize, crop) of a dataset's training samples: the config's overrides, else its protocol."""
    return _size(data_cfg.resize, ds.resize), _size(data_cfg.crop, ds.crop)


def training_size(data_cfg, name: str) -> tuple:
    """The (H, W) every training sample of a dataset has: its crop, else its resize; () if they vary."""
    resize, crop = sizes(data_cfg, DATASETS[name])
    return crop or resize


# data.sunrgbd_val -> the SUN RGB-D split scored as val. SUN RGB-D has no official val split;
# the universal paper (and MSeg) score the 475 images of Chris Choy's split/val37.txt, a subset
# of test, which the source reads as its `val` split.
SUNRGBD_VAL = {"test": "test", "val37": "val"}


def val_split_of(data_cfg, name: str) -> str | None:
    ds = DATASETS[name]
    if ds.source != "sunrgbd":
        return ds.val
    value = getattr(data_cfg, "sunrgbd_val", "test")
    if value not in SUNRGBD_VAL:
        raise SourceError(f"data.sunrgbd_val={value!r}: expected one of {', '.join(SUNRGBD_VAL)}")
    return SUNRGBD_VAL[value]


def load_real(data_cfg, name: str) -> RealDomain:
    ds = DATASETS[name]
    root = root_of(data_cfg, name)
    pairs = get_source(ds.source).list_pairs(root, ds.train)
    if not pairs:
        raise SourceError(f"{name}: no image/label pairs in the {ds.train} split under {root}")
    expected = getattr(get_source(ds.source), "EXPECTED", {}).get(ds.train)
    if data_cfg.check_counts and expected is not None and len(pairs) != expected:
        # A partial download trains without complaint and gives a table nobody can compare.
        raise SourceError(f"{name}: {len(pairs)} image/label pairs in the {ds.train} split under {root}, "
                          f"expected {expected} (python -m unisemi data check {ds.source} {root} lists what "
                          f"is missing; set data.check_counts=false to train on a subset on purpose)")
    chosen, split_id = labelled_positions(data_cfg, name, pairs, root)
    labelled = torch.tensor(chosen, dtype=torch.long)
    rest = torch.ones(len(pairs), dtype=torch.bool)
    rest[labelled] = False
    unlabelled = torch.nonzero(rest).flatten()
    digest = split_hash(relative_key(pairs[i][0], root) for i in chosen)
    resize, crop = sizes(data_cfg, ds)
    geometry = pipeline.Geometry(
        resize=resize, crop=crop,
        scale=tuple(data_cfg.scale) if data_cfg.scale else (1.0, 1.0), hflip=data_cfg.hflip)
    cache = None
    if data_cfg.cache_resized and resize:
        cache = ResizedCache(default_folder(), reader=f"{ds.source}/{ds.classes}", size=tuple(resize))
    return RealDomain(
        name=name, classes=classes_of(name), labelled=labelled, unlabelled=unlabelled,
        split_id=split_id, split_hash=digest, root=root,
        train_pairs=pairs, geometry=geometry, val_resize=_size(data_cfg.val_resize, ds.val_resize),
        workers=data_cfg.workers, prefetch=data_cfg.prefetch, val_images=data_cfg.val_images, cache=cache,
        val_split=val_split_of(data_cfg, name))
