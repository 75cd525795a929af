"""What every source shares: checked folders, sorted file listings, pairing, decoding, label tables."""
from __future__ import annotations

import errno
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
from PIL import Image

from unisemi.data.labels import IGNORE_INDEX
from unisemi.data.sources.errors import (
    LabelFormatError, LabelValueError, SizeMismatchError, SourceError, UnpairedError, UnreadableError,
)

# What PIL raises for a file that is not an image, is cut short or has a broken stream; all of them
# become one SourceError line naming the file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


# ----------------------------------------------------------------------------------------------
# folders and listings

# What a path that is a link but does not exist is: exists() is False for both a dangling link and
# a loop (ELOOP), and calling either "missing" would send the user looking for a file that is there.
BAD_LINK = "a symlink loop or a broken symlink"

def check_root(dataset: str, root, expect: str) -> Path:
    """The dataset root as a Path, or an error if it is missing or is a file."""
    root = Path(root)
    if not root.exists() and root.is_symlink():
        raise SourceError(f"{dataset}: root {root} is {BAD_LINK} (expected a folder holding {expect})")
    if not root.exists():
        raise SourceError(f"{dataset}: root {root} does not exist (expected a folder holding {expect})")
    if not root.is_dir():
        raise SourceError(f"{dataset}: root {root} is a file (expected a folder holding {expect})")
    return root


def check_split(dataset: str, split: str, splits: Iterable[str]) -> None:
    splits = tuple(splits)
    if split not in splits:
        raise SourceError(f"{dataset}: no split '{split}' (known: {', '.join(splits)})")


def require_dir(dataset: str, folder: Path, expect: str) -> Path:
    """A folder the layout needs (typically one split); missing means a partial download."""
    if not folder.is_dir():
        what = "is a file" if folder.exists() else f"is {BAD_LINK}" if folder.is_symlink() else "is missing"
        raise SourceError(f"{dataset}: folder {folder} {what} (expected {expect})")
    return folder


def require_file(dataset: str, path: Path, expect: str) -> Path:
    if not path.is_file():
        what = f"is {BAD_LINK}" if path.is_symlink() and not path.exists() else "is missing"
        raise SourceError(f"{dataset}: file {path} {what} (expected {expect})")
    return path


def list_files(dataset: str, folder: Path, pattern: str, recursive: bool = False) -> dict[str, Path]:
    """Files under `folder` whose relative posix path fully matches `pattern`, keyed by the regex's
    `key` group. Symlinked folders are followed (datasets often live on another disk), but a folder
    reached twice is an error: a symlink loop would never end and a duplicate link would count
    every image twice."""
    rx = re.compile(pattern)
    found: dict[str, Path] = {}
    seen: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=_walk_error(dataset)):
        st = os.stat(dirpath)
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            raise SourceError(f"{dataset}: folder {dirpath} is the same folder as {seen[ident]} "
                              "(a symlink loop or a duplicate link; expected a tree without cycles)")
        seen[ident] = dirpath
        rel_dir = Path(dirpath).relative_to(folder)
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            m = rx.fullmatch(rel)
            if m:
                found[m.group("key")] = Path(dirpath) / name
        if not recursive:
            dirnames[:] = []
        else:
            dirnames.sort()  # walk order does not matter (results are keyed) but keeps errors stable
    return found


def _walk_error(dataset: str) -> Callable[[OSError], None]:
    def raise_it(exc: OSError) -> None:
        raise SourceError(f"{dataset}: cannot list {exc.filename} ({exc.strerror or exc})")
    return raise_it


def pair_up(dataset: str, images: Mapping[str, Path], labels: Mapping[str, Path],
            image_for: Callable[[str], Path], label_for: Callable[[str], Path],
            where: Path) -> list[tuple[Path, Path]]:
    """Pairs sorted by key. An image without a label, or a label without an image, is an error:
    training on whatever happens to pair would silently drop part of the dataset. The error
    (UnpairedError) still carries the pairs that matched and every unpaired file, for `data check`."""
    if not images:
        raise SourceError(f"{dataset}: no images under {where} (expected e.g. {image_for('<name>')})")
    pairs = [(images[k], labels[k]) for k in sorted(images) if k in labels]
    lacking = [_no_partner(dataset, "image", images, labels, "label", label_for),
               _no_partner(dataset, "label", labels, images, "image", image_for)]
    unpaired = [line for lines in lacking for line in lines]
    for lines, kind in zip(lacking, ("image", "label")):
        if lines:
            more = f"; {len(lines) - 1} more {kind}s lack one" if len(lines) > 1 else ""
            raise UnpairedError(lines[0] + more, pairs, unpaired)
    return pairs


def _no_partner(dataset, kind, have, other, other_kind, expected_for) -> list[str]:
    """One line per file of `have` whose key is not in `other`."""
    return [f"{dataset}: {kind} {have[k]} has no {other_kind} (expected {expected_for(k)})"
            for k in sorted(set(have) - set(other))]


def read_list(dataset: str, path: Path, expect: str) -> list[list[str]]:
    """Whitespace-separated rows of a split list file, blank lines skipped."""
    require_file(dataset, path, expect)
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------
# decoding

def load_image(path) -> Image.Image:
    """A fully decoded PIL image (decoding is lazy in PIL, so truncation only shows on load)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except OSError as exc:
        if os.path.islink(path) and (exc.errno == errno.ELOOP or not os.path.exists(path)):
            raise UnreadableError(f"{path}: file is {BAD_LINK} (expected an image file)") from None
        if isinstance(exc, FileNotFoundError):
            raise UnreadableError(f"{path}: file is missing") from None
        raise UnreadableError(f"{path}: unreadable or truncated image ({exc})") from None
    except _DECODE_ERRORS as exc:
        raise UnreadableError(f"{path}: unreadable or truncated image ({exc})") from None


# libspng (pyspng, the `data` extra) decodes 8-bit PNGs about 1.3x (RGB) and 2x (grey) faster than
# Pillow: at full Cityscapes resolution that is most of a worker's time per sample. It is used only
# where its output is Pillow's, byte for byte: 8-bit RGB photos and 8-bit grey label maps. Palette
# labels (it would expand them to colours), 16-bit files and every other mode go to Pillow.
try:
    import pyspng
except ImportError:            # optional: Pillow decodes everything without it
    pyspng = None
FAST_PNG = pyspng is not None   # benchmarks/data_pipeline.py switches it to time both decoders
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SPNG_FORMAT = {2: "RGB", 0: "L"}       # PNG colour type (IHDR) -> the output that equals Pillow's


def _fast_png(path, colour_type: int) -> np.ndarray | None:
    """The pixels of an 8-bit PNG of `colour_type` through libspng, or None for Pillow to decode
    (pyspng not installed, not such a PNG, or a file Pillow should report on)."""
    if not FAST_PNG or str(path)[-4:].lower() != ".png":
        return None
    try:
        with open(path, "rb") as f:
            # IHDR is the first chunk: bit depth at byte 24, colour type at byte 25; the rest of
            # the file is read only for a PNG libspng decodes, so Pillow's files are read once
            head = f.read(26)
            if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[24] != 8 or head[25] != colour_type:
                return None
            data = head + f.read()
    except OSError:
        return None
    try:
        return pyspng.load(data, _SPNG_FORMAT[colour_type])
    except RuntimeError as exc:
        raise UnreadableError(f"{path}: unreadable or truncated image ({exc})") from None


def read_rgb(path) -> np.ndarray:
    """uint8 (H, W, 3). Grey, palette or alpha images are converted: for photos that is lossless
    enough and keeps every source's output the same shape."""
    fast = _fast_png(path, 2)
    if fast is not None:
        return fast
    im = load_image(path)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


# Single-channel modes whose pixel values are the label values (P: palette indices, never colours).
_INDEX_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")


def index_array(im: Image.Image, path) -> np.ndarray:
    """The stored values of a single-channel label image, as they are (no palette lookup)."""
    if im.mode not in _INDEX_MODES:
        raise LabelFormatError(f"{path}: label image has mode {im.mode} (expected a single-channel "
                          "grey or palette PNG of class ids)")
    return np.asarray(im)


def read_index_label(path) -> np.ndarray:
    fast = _fast_png(path, 0)
    return fast if fast is not None else index_array(load_image(path), path)


def check_same_size(image: np.ndarray, label: np.ndarray, image_path, label_path) -> None:
    if image.shape[:2] != label.shape[:2]:
        h, w = image.shape[:2]
        lh, lw = label.shape[:2]
        raise SizeMismatchError(f"{label_path}: label is {lw}x{lh} but image {image_path} is {w}x{h} "
                          "(expected the same size, W x H)")


# ----------------------------------------------------------------------------------------------
# label tables

@dataclass(frozen=True, eq=False)
class LabelTable:
    """Raw label value -> train id as a lookup table, plus which raw values the dataset defines.

    Indexing the table with the whole label array maps every pixel at once; a value the dataset
    does not define is an error rather than a silent 255, because it means a wrong file or a
    wrong encoding (an RGB-expanded palette, a 16-bit file read as 8 bits)."""
    dataset: str
    lut: np.ndarray     # uint8, one entry per possible raw value
    known: np.ndarray   # bool, same length
    expected: str       # the defined values in words, for the error

    @functools.cached_property
    def _byte_table(self) -> bytes | None:
        """The table as a 256-byte translation with unknown values sent to a byte no known value
        maps to: one `bytes.translate` maps and checks an 8-bit map at once, about 4x faster than
        the histogram and `np.take` below on a 2048x1024 label. None if every byte is taken."""
        if len(self.lut) != 256:
            return None
        free = sorted(set(range(256)) - {int(v) for v in self.lut[self.known]})
        if not free:
            return None
        table = self.lut.copy()
        table[~self.known] = free[0]
        return bytes(table) + bytes([free[0]])      # the last byte: the sentinel

    def apply(self, raw: np.ndarray, path) -> np.ndarray:
        raw = np.asarray(raw)
        fast = self._byte_table
        if fast is not None and raw.dtype == np.uint8:
            mapped = np.ascontiguousarray(raw).tobytes().translate(fast[:256])
            if fast[256:] not in mapped:
                return np.frombuffer(mapped, np.uint8).reshape(raw.shape)   # read-only, as Pillow's
        if raw.dtype.kind not in "ui":
            raise LabelFormatError(f"{path}: label values are {raw.dtype} (expected integer class ids)")
        if raw.size and (int(raw.min()) < 0 or int(raw.max()) >= len(self.lut)):
            bad = np.unique(raw[(raw < 0) | (raw >= len(self.lut))])
            self._fail(bad, path)
        # The values present, from one histogram: a few ms on a 2048x1024 map, where a per-pixel
        # lookup of `known` costs as much again as the mapping itself.
        present = np.flatnonzero(np.bincount(raw.ravel(), minlength=1))
        unknown = present[~self.known[present]]
        if unknown.size:
            self._fail(unknown, path)
        return np.take(self.lut, raw)

    def _fail(self, values: np.ndarray, path) -> None:
        shown = ", ".join(str(int(v)) for v in values[:10])
        more = f" and {len(values) - 10} more" if len(values) > 10 else ""
        raise LabelValueError(f"{path}: label values {shown}{more} are not in the {self.dataset} table "
                              f"(expected {self.expected})", [int(v) for v in values])


def make_table(dataset: str, mapping: Mapping[int, int], known: Iterable[int], expected: str,
               size: int = 256) -> LabelTable:
    """A table sending every known raw value to `mapping.get(value, 255)`."""
    lut = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    ok = np.zeros(size, dtype=bool)
    for raw in known:
        ok[raw] = True
    for raw, train_id in mapping.items():
        if not ok[raw]:
            raise AssertionError(f"{dataset}: mapped raw value {raw} is not a known value")
        lut[raw] = train_id
    lut.setflags(write=False)
    ok.setflags(write=False)
    return LabelTable(dataset, lut, ok, expected)


def pair_by_key(dataset: str, image_dir: Path, label_dir: Path, key: str, image_suffix: str,
                label_suffix: str, recursive: bool = False) -> list[tuple[Path, Path]]:
    """Pairs of an image folder and a label folder whose files are `<key><suffix>`, with `key` a
    regex of the relative name (e.g. `<city>/<frame id>`)."""
    images = list_files(dataset, image_dir, f"(?P<key>{key})" + re.escape(image_suffix), recursive)
    labels = list_files(dataset, label_dir, f"(?P<key>{key})" + re.escape(label_suffix), recursive)
    return pair_up(dataset, images, labels,
                   image_for=lambda k: image_dir / (k + image_suffix),
                   label_for=lambda k: label_dir / (k + label_suffix), where=image_dir)


def read_mapped_pair(image_path, label_path, table) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image and its index label mapped through `table`, checked to be the same size."""
    image = read_rgb(image_path)
    label = table.apply(read_index_label(label_path), label_path)
    check_same_size(image, label, image_path, label_path)
    return image, label
