"""The streaming input pipeline of the real datasets: worker processes decode and crop, the loop
only receives fixed-size uint8 batches.

Exact resume with workers and prefetch needs a sampler whose future does not depend on what was
prefetched. So nothing here carries a running random state: the order of epoch e is a permutation
seeded by (seed, e), and the geometry of the k-th sample of a stream is drawn from a generator
seeded by (seed, k). A stream's whole state is the number of batches the loop has consumed, and a
resumed run rebuilds its loader at that batch. Ranks draw the global batch of W x B samples and take
their slice, as the embedded world's `Batches` does, so W ranks see what one process with the
global batch would.

Memory is bounded by configuration, never by the dataset: the dataset objects hold file paths, and
at most workers x prefetch batches are decoded ahead of the loop, plus `prefetch` more that a
thread of the loop's process has already received (`ahead.py`). Pairs a protocol resizes are kept
on disk at that size after their first read (`resized_cache.py`), never in memory.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from unisemi.data.ahead import Ahead
from unisemi.data.labels import IGNORE_INDEX
from unisemi.data.resized_cache import ResizedCache
from unisemi.data.sources.errors import SourceError


@dataclass(frozen=True)
class Geometry:
    """What a worker does to a training pair before batching (a paper's loader-side protocol)."""
    resize: tuple = ()          # (H, W) every pair is first resized to; () keeps the file's size
    scale: tuple = (1.0, 1.0)   # random rescale factor range after the resize
    crop: tuple = ()            # (H, W) random crop, padded with 0 / ignore where the image is smaller
    hflip: bool = False         # left-right flip with probability 1/2


def _resize(image: np.ndarray, label: np.ndarray | None, size: tuple):
    h, w = size
    if image.shape[:2] == (h, w):
        return image, label
    image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    return image, (_resize_label(label, size) if label is not None else None)


def _resize_label(label: np.ndarray, size: tuple) -> np.ndarray:
    if label.shape == tuple(size):
        return label
    return np.asarray(Image.fromarray(label).resize((size[1], size[0]), Image.NEAREST))


def _pad_to(image: np.ndarray, label: np.ndarray | None, size: tuple):
    h, w = image.shape[:2]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph == 0 and pw == 0:
        return image, label
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
    if label is not None:
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
    return image, label


def _resize_crop(image: np.ndarray, label: np.ndarray | None, size: tuple, window: tuple):
    """`_resize(..., size)` followed by the crop `window` = (top, left, h, w), the image resampled
    for the window only: Pillow's `box` keeps the whole resize's filter taps and sample positions,
    so the pixels are within 2 grey levels of float rounding (often equal) at the cost of the
    window. The label is resized whole: a nearest-neighbour map is cheap, and at a sample position
    exactly between two source pixels the windowed one can pick the other neighbour."""
    top, left, ch, cw = window
    sy, sx = image.shape[0] / size[0], image.shape[1] / size[1]
    box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
    image = np.asarray(Image.fromarray(image).resize((cw, ch), Image.BILINEAR, box=box))
    if label is not None:
        label = np.asarray(Image.fromarray(label).resize((size[1], size[0]), Image.NEAREST))
        label = label[top:top + ch, left:left + cw]
    return image, label


def apply_geometry(image: np.ndarray, label: np.ndarray | None, geo: Geometry, rng: np.random.Generator):
    """uint8 (H, W, 3) and (H, W) -> the augmented pair; `rng` makes every draw.

    In order: resize, random rescale, random crop (padding what is smaller), flip. The resize is
    of the whole pair, so a pair that is already at `geo.resize` (the resized cache's) gives the
    same pixels. A random rescale and the crop are one windowed resample when nothing needs
    padding (`_resize_crop`)."""
    lo, hi = geo.scale
    size = tuple(geo.resize) or image.shape[:2]
    image, label = _resize(image, label, size)
    if (lo, hi) != (1.0, 1.0):
        s = rng.uniform(lo, hi)
        size = (max(1, round(size[0] * s)), max(1, round(size[1] * s)))
    if geo.crop:
        ch, cw = geo.crop
        if size[0] >= ch and size[1] >= cw:
            top = int(rng.integers(0, size[0] - ch + 1))
            left = int(rng.integers(0, size[1] - cw + 1))
            if tuple(image.shape[:2]) == tuple(size):
                image = image[top:top + ch, left:left + cw]
                label = label[top:top + ch, left:left + cw] if label is not None else None
            else:
                image, label = _resize_crop(image, label, size, (top, left, ch, cw))
        else:
            image, label = _pad_to(*_resize(image, label, size), geo.crop)
            h, w = image.shape[:2]
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            image = image[top:top + ch, left:left + cw]
            if label is not None:
                label = label[top:top + ch, left:left + cw]
    else:
        image, label = _resize(image, label, size)
    if geo.hflip and rng.random() < 0.5:
        image = image[:, ::-1]
        label = label[:, ::-1] if label is not None else None
    return image, label


def _tensor(a: np.ndarray) -> torch.Tensor:
    # decoders hand out read-only arrays; torch wants writable, contiguous memory
    return torch.from_numpy(np.require(a, requirements=["C", "W"]))


def class_presence(label: np.ndarray, num_classes: int) -> np.ndarray:
    """bool (C,): which train ids 0..C-1 occur in a mapped label map; void (255) never counts."""
    return np.bincount(label.ravel(), minlength=256)[:num_classes] > 0


def read_label_file(path, size: tuple) -> np.ndarray:
    """A method's generated label map: an 8-bit grey PNG of its image's size (H, W), as stored."""
    try:
        with Image.open(path) as im:
            mode, label = im.mode, np.asarray(im)
    except (OSError, SyntaxError, ValueError) as exc:
        raise SourceError(f"{path}: unreadable generated label map ({exc.__class__.__name__}: {exc}); "
                          f"rebuild the stage that wrote it") from None
    if mode != "L":
        raise SourceError(f"{path}: generated label map of mode {mode} (expected an 8-bit grey PNG)")
    if label.shape != tuple(size):
        raise SourceError(f"{path}: generated label map is {label.shape[1]}x{label.shape[0]}, its image "
                          f"{size[1]}x{size[0]} (expected the image's native size)")
    return label


class PairStream(torch.utils.data.Dataset):
    """Training samples of one stream: item (k, i) is pool pair i as the stream's k-th sample.

    An item is (image, [label], [image-level labels], path). `classes` > 0 adds the bool (C,)
    classes present in the whole ground-truth mask, taken before the geometry so that a crop
    never drops a class. `replacements` maps pool indices to label files a method generated
    (8-bit PNGs at the image's size): for those images the file is the label, its ground truth
    is not even read, and the same geometry as the image's is applied to it. `cache` (a
    `ResizedCache` at the geometry's resize) keeps pairs at that size on disk after their first
    read; the samples are the same with or without it."""

    def __init__(self, pairs: Sequence, read: Callable, geometry: Geometry, seed: int, labels: bool,
                 classes: int = 0, replacements: dict | None = None, cache: ResizedCache | None = None):
        self.pairs, self.read, self.geometry = pairs, read, geometry
        self.seed, self.labels, self.classes = seed, labels, classes
        self.replacements = dict(replacements or {})
        if cache is not None and tuple(cache.size) != tuple(geometry.resize):
            raise ValueError(f"resized cache at {cache.size}, geometry resizes to {geometry.resize}")
        # image-level labels come from the whole mask at its own size, which the cache does not keep
        self.cache = cache if geometry.resize and not classes else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key):
        k, i = key
        image_path, label_path = self.pairs[i]
        generated = self.replacements.get(i) if self.labels else None
        truth = self.classes > 0 or (self.labels and generated is None)
        try:
            if self.cache is None:
                image, label = self.read(image_path, label_path if truth else None)
            else:
                image, label = self._resized(image_path, label_path if truth else None)
            present = class_presence(label, self.classes) if self.classes else None
            if generated is not None:
                label = self._generated_label(generated, image_path, image)
            elif not self.labels:
                label = None
        except SourceError as e:
            return e           # re-raised in the loop by `collate`, as one line naming the file
        rng = np.random.default_rng([self.seed, k])
        image, label = apply_geometry(image, label, self.geometry, rng)
        out = [_tensor(image).permute(2, 0, 1)]
        if label is not None:
            out.append(_tensor(label))
        if present is not None:
            out.append(torch.from_numpy(present))
        return (*out, str(image_path))

    def _resized(self, image_path, label_path):
        """The pair at the cache's size: its entries where they exist, else decoded, resized whole
        (as `apply_geometry` would) and stored."""
        cache = self.cache
        image_entry = cache.image_entry(image_path)
        label_entry = cache.label_entry(image_path, label_path) if label_path is not None else None
        image = cache.load(image_entry, 3)
        label = cache.load(label_entry, 1) if label_entry is not None else None
        need_label = label_path is not None and label is None
        if image is None or need_label:
            fresh, fresh_label = _resize(*self.read(image_path, label_path if need_label else None), cache.size)
            if image is None:
                image = fresh
                cache.store(image_entry, image)
            if need_label:
                label = fresh_label
                cache.store(label_entry, label)
        return image, label

    def _generated_label(self, path, image_path, image):
        """A method's label file, checked against its image's native size, at the image's size."""
        if self.cache is None:
            return read_label_file(path, image.shape[:2])
        try:
            with Image.open(image_path) as im:       # the header alone: the pixels are cached
                native = im.size[::-1]
        except OSError as exc:
            raise SourceError(f"{image_path}: unreadable image ({exc})") from None
        return _resize_label(read_label_file(path, native), image.shape[:2])


class PairItems(torch.utils.data.Dataset):
    """Item j: `make(image_path, label_path)` of pair `indices[j]` (every pair by default), or the
    SourceError it raised, which `collate` re-raises in the loop as one line naming the file.
    `make` is one of the module-level `*_item` functions below, partially applied (picklable)."""

    def __init__(self, pairs: Sequence, make: Callable, indices: Sequence[int] | None = None):
        self.pairs, self.make = pairs, make
        self.indices = list(range(len(pairs)) if indices is None else indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j):
        try:
            return self.make(*self.pairs[self.indices[j]])
        except SourceError as e:
            return e


def mask_classes_item(read_mask: Callable, classes: int, image_path, label_path):
    """The bool (C,) classes present in a pair's whole mask (its image is not decoded)."""
    try:
        label = read_mask(image_path, label_path)
    except SourceError as e:
        raise SourceError(f"image-level labels: {e}") from None
    return torch.from_numpy(class_presence(label, classes)), str(label_path)


def native_image_item(read: Callable, image_path, label_path):
    """A pair's image at its native size, uint8 (3, H, W); its label is never read."""
    image, _ = read(image_path, None)
    return _tensor(image).permute(2, 0, 1), str(image_path)


def val_item(read: Callable, resize: tuple, image_path, label_path):
    """A validation pair: the image at the evaluation size, the label as stored (scored at full size)."""
    image, label = read(image_path, label_path)
    if resize:
        image, _ = _resize(image, None, resize)
    return _tensor(image).permute(2, 0, 1), _tensor(label), str(image_path)


def pool_classes(pairs: Sequence, read_mask: Callable, classes: int, workers: int,
                 batch: int = 64) -> torch.Tensor:
    """bool (N, C): image-level labels of every pair, masks decoded by workers, in pool order."""
    if not len(pairs):
        return torch.zeros(0, classes, dtype=torch.bool)
    items = PairItems(pairs, functools.partial(mask_classes_item, read_mask, classes))
    loader = torch.utils.data.DataLoader(items, batch_size=batch, num_workers=workers, collate_fn=collate)
    return torch.cat([present for (present,) in loader])


def native_images(pairs: Sequence, read: Callable, indices: Sequence[int], workers: int):
    """One pass over the images of `indices`, one (1, 3, H, W) batch each (their sizes differ)."""
    items = PairItems(pairs, functools.partial(native_image_item, read), indices)
    return torch.utils.data.DataLoader(items, batch_size=1, num_workers=workers, collate_fn=collate)


def collate(items):
    """Stack a batch; a worker's SourceError and differing sizes are errors naming the files."""
    for item in items:
        if isinstance(item, Exception):
            raise SourceError(str(item))
    shapes = {tuple(item[0].shape) for item in items}
    if len(shapes) > 1:
        names = ", ".join(f"{item[-1]} {tuple(item[0].shape[1:])}" for item in items)
        raise SourceError(f"images of one batch differ in size ({names}); set data.crop "
                          f"(or data.resize) so that every training sample has one size")
    return tuple(torch.stack([item[j] for item in items]) for j in range(len(items[0]) - 1))


class EpochOrder:
    """Positions k of a stream -> pool indices: epoch e = k // n is a permutation seeded by (seed, e)."""

    def __init__(self, pool: torch.Tensor, seed: int):
        if len(pool) == 0:
            raise ValueError("cannot sample batches from an empty index set")
        self.pool, self.seed = pool, seed
        self._epoch, self._order = -1, None

    def __call__(self, k: int) -> int:
        n = len(self.pool)
        epoch = k // n
        if epoch != self._epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            self._epoch, self._order = epoch, self.pool[torch.from_numpy(perm)]
        return int(self._order[k % n])


class BatchKeys(torch.utils.data.Sampler):
    """Endless batches of (k, pool index) keys for one rank, starting at batch `start`."""

    def __init__(self, order: EpochOrder, batch: int, part: tuple[int, int], start: int = 0):
        self.order, self.batch, self.part, self.start = order, batch, part, start

    def __iter__(self):
        rank, world = self.part
        step = self.start
        while True:
            first = (step * world + rank) * self.batch
            yield [(k, self.order(k)) for k in range(first, first + self.batch)]
            step += 1


class Stream:
    """One endless, resumable stream of uint8 batches from worker processes, received by a
    background thread (`ahead.Ahead`) so that the loop finds them ready."""

    def __init__(self, dataset: PairStream, pool: torch.Tensor, batch: int, part: tuple[int, int],
                 workers: int, prefetch: int, pin_memory: bool):
        self.dataset, self.batch, self.part = dataset, batch, part
        self.order = EpochOrder(pool, dataset.seed)
        self.workers, self.prefetch, self.pin_memory = workers, prefetch, pin_memory
        self.consumed = 0
        self._it = None

    def _loader(self):
        keys = BatchKeys(self.order, self.batch, self.part, start=self.consumed)
        extra = {"prefetch_factor": self.prefetch, "persistent_workers": False} if self.workers else {}
        return iter(torch.utils.data.DataLoader(
            self.dataset, batch_sampler=keys, num_workers=self.workers, collate_fn=collate,
            pin_memory=self.pin_memory, **extra))

    def next(self) -> tuple:
        if self._it is None:
            # the loader is made here, in the loop's thread, which forks its workers
            self._it = Ahead(self._loader(), depth=self.prefetch, own_memory=not self.pin_memory)
        out = self._it.next()
        self.consumed += 1
        return out

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}     # batches fetched ahead but not handed out do not count

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.consumed = int(state["consumed"])   # the next batch comes from a loader rebuilt here

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
        self._it = None


def val_loader(pairs: Sequence, read: Callable, resize: tuple, workers: int):
    """Whole validation images one at a time (their sizes differ), decoded by workers."""
    items = PairItems(pairs, functools.partial(val_item, read, resize))
    return torch.utils.data.DataLoader(items, batch_size=1, num_workers=workers, collate_fn=collate)
