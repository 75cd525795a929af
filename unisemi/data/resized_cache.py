"""Training pairs kept on disk at their protocol size after the first read.

A paper protocol resizes every pair before any random draw (Cityscapes 2048x1024 -> 1024x512 for
DeepLabv2), so the decode of the full-size PNG and that resize give the same pixels every epoch.
They are most of a worker's time: on a real Cityscapes frame the libspng decode alone is about
33 ms. A worker that finds the pair here reads a PNG a quarter the size instead; the random
rescale, crop and flip still run on it (`pipeline.apply_geometry`, which resizes the whole pair
first, so a cached pair gives the same sample bit for bit: tests/test_resized_cache.py).

Entries live under `$UNISEMI_CACHE/resized/`, one PNG per image and one per mapped label map
(compression level 1: about 0.6 MB per Cityscapes image at 1024x512, a third of raw). A key
names the source files by resolved path, size and modification time, the target size, the
reader that mapped the labels and Pillow's version (whose resampling made the pixels), so a
changed file or setting never meets a stale entry. Labels are keyed with their image, because
the size check between the two runs only when they are decoded together. Entries are written
atomically, so workers and trials share the folder safely; one that will not decode is rebuilt.
Nothing is ever evicted: `rm -rf $UNISEMI_CACHE/resized` frees the space.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from unisemi.atomic import atomic_write
from unisemi.data.sources import _common
from unisemi.data.sources.errors import SourceError

# Bump when a reader's label mapping or the way entries are made changes: old entries are then
# never read again.
FORMAT = 1

_UNWRITABLE: set[str] = set()     # folders this process already warned about


def default_folder() -> Path:
    from unisemi.stages import cache_dir
    return cache_dir() / "resized"


def _stat(path) -> list:
    st = os.stat(path)
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


@dataclass(frozen=True)
class ResizedCache:
    folder: Path
    reader: str       # who maps the labels, e.g. "cityscapes/0": part of a label entry's key
    size: tuple       # (H, W) of every entry

    def _path(self, kind: str, files) -> Path | None:
        try:
            ident = [FORMAT, PIL.__version__, kind, self.reader, list(self.size)] + [_stat(f) for f in files]
        except OSError:
            return None    # the source file is gone or unreadable: its reader says which, and how
        digest = hashlib.sha1(json.dumps(ident).encode()).hexdigest()
        return Path(self.folder) / digest[:2] / f"{digest}.png"

    def image_entry(self, image_path) -> Path | None:
        return self._path("image", [image_path])

    def label_entry(self, image_path, label_path) -> Path | None:
        return self._path("label", [image_path, label_path])

    def load(self, entry: Path | None, channels: int) -> np.ndarray | None:
        """The entry's pixels, or None when there is none (or it will not decode: it is rebuilt)."""
        if entry is None or not entry.is_file():
            return None
        try:
            pixels = _common.read_rgb(entry) if channels == 3 else _common.read_index_label(entry)
        except SourceError:
            return None
        want = tuple(self.size) + ((3,) if channels == 3 else ())
        return pixels if pixels.shape == want and pixels.dtype == np.uint8 else None

    def store(self, entry: Path | None, array: np.ndarray) -> None:
        """Write an entry; a folder that cannot take it costs speed, never the run (one warning)."""
        if entry is None or str(self.folder) in _UNWRITABLE:
            return
        try:
            atomic_write(entry, lambda tmp: Image.fromarray(np.ascontiguousarray(array)).save(
                tmp, format="PNG", compress_level=1))
        except OSError as exc:
            _UNWRITABLE.add(str(self.folder))
            warnings.warn(f"resized cache {self.folder}: cannot write ({exc}); pairs are decoded at full "
                          f"size every time (set data.cache_resized=false to silence this)", stacklevel=2)
