"""Labelled / unlabelled splits of a training pool, seeded and portable.

A split is a set of pool indices chosen by `split_seed`: the same (pool size, N, seed) gives the
same images on every machine. The unlabelled set is the rest of the pool, as in the contrastive
paper's protocol (the universal paper's code also reuses labelled images as unlabelled; that is
not the default). `split_hash` names the exact labelled file list in every result row.

Real datasets split *files*, not indices (datasets.md section 7): the base order is the plain
code-point sort of the relative image paths, never a directory listing (os.walk order differs
between file systems, which is why the contrastive paper's Cityscapes splits cannot be rebuilt),
and `numpy.random.RandomState(split_seed).permutation` picks the labelled ones. Published splits
come in and go out as UniMatch-style `labeled.txt` / `unlabeled.txt`; CPS's tab-separated form is
read too.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from unisemi.atomic import atomic_write_text
from unisemi.data.sources.errors import SourceError

LABELLED_LIST = "labeled.txt"      # UniMatch's names (US spelling), so its split folders drop in
UNLABELLED_LIST = "unlabeled.txt"


def n_from_config(n_labelled: int, fraction: float, pool_size: int, domain: str) -> int:
    """N labelled images: round(fraction * pool) if a fraction is set, else n_labelled."""
    n = round(fraction * pool_size) if fraction > 0 else n_labelled
    if not 0 <= n <= pool_size:
        raise ValueError(f"data.n_labelled={n} for domain '{domain}': expected 0..{pool_size} "
                         f"(the size of its train pool)")
    return n


def labelled_split(pool_size: int, n: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labelled, unlabelled) sorted int64 index tensors partitioning range(pool_size)."""
    gen = torch.Generator().manual_seed(10_007 * split_seed + pool_size)
    perm = torch.randperm(pool_size, generator=gen)
    return perm[:n].sort().values, perm[n:].sort().values


def split_hash(names) -> str:
    """Short hash of the labelled list (image names or indices), order-independent."""
    text = "\n".join(sorted(str(n) for n in names))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------
# splits of real file lists

def count_from_ratio(pool_size: int, ratio) -> int:
    """Labelled count for a ratio such as 1/30: ceil(pool * ratio), the rule behind every published
    count (2975 at 1/30 -> 100, 10582 at 1/50 -> 212).

    A float ratio is read as the nearest fraction with a denominator up to 10**6, so 1/30 is
    exactly 1/30: in floats 2975 * (1/30) could land a hair above or below an integer and ceil
    would be off by one. A Fraction or a string "1/30" is used exactly."""
    frac = ratio if isinstance(ratio, Fraction) else _as_fraction(ratio)
    if not 0 < frac <= 1:
        raise ValueError(f"labelled ratio {ratio}: expected a fraction in (0, 1], e.g. 1/30")
    if pool_size < 0:
        raise ValueError(f"pool size {pool_size}: expected a count >= 0")
    return math.ceil(pool_size * frac)


def _as_fraction(ratio) -> Fraction:
    if isinstance(ratio, str):
        try:
            return Fraction(ratio.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"labelled ratio '{ratio}': expected a fraction such as 1/30 or 0.125") from None
    return Fraction(float(ratio)).limit_denominator(1_000_000)


def file_split(names: Sequence[str], n: int, split_seed: int) -> tuple[list[str], list[str]]:
    """(labelled, unlabelled) names, each sorted: the first `n` of a seeded permutation of the
    sorted names. The input order does not matter, so every machine gets the same split."""
    base = sorted(names)  # Python compares str by code point: no locale, no file-system order
    if len(set(base)) != len(base):
        dup = next(a for a, b in itertools.pairwise(base) if a == b)
        raise ValueError(f"file split: '{dup}' appears twice (expected distinct file names)")
    if not 0 <= n <= len(base):
        raise ValueError(f"file split: {n} labelled files requested from a pool of {len(base)} "
                         f"(expected 0..{len(base)})")
    perm = np.random.RandomState(split_seed).permutation(len(base))
    return sorted(base[i] for i in perm[:n]), sorted(base[i] for i in perm[n:])


def relative_key(path, root) -> str:
    """`path` relative to `root` as a posix string: the portable name of a file in splits and lists."""
    # abspath, not resolve: a dataset folder symlinked from another disk must keep its name.
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not under the dataset root {root} (expected a path inside it)") from None


def pairs_split(pairs, n: int, split_seed: int, root) -> tuple[list, list]:
    """(labelled, unlabelled) (image, label) pairs, split by `file_split` on the image paths
    relative to `root`, so the split does not depend on where the dataset is mounted."""
    by_key = {relative_key(image, root): (image, label) for image, label in pairs}
    if len(by_key) != len(pairs):
        raise ValueError("pairs split: an image appears in two pairs (expected one pair per image)")
    labelled, unlabelled = file_split(list(by_key), n, split_seed)
    return [by_key[k] for k in labelled], [by_key[k] for k in unlabelled]


def write_split_lists(folder, labelled_pairs, unlabelled_pairs, root) -> tuple[Path, Path]:
    """Write `labeled.txt` and `unlabeled.txt` under `folder` in UniMatch's format: one
    `<image> <label>` line per pair, paths relative to `root`. Each file is written atomically."""
    folder = Path(folder)
    out = []
    for name, pairs in ((LABELLED_LIST, labelled_pairs), (UNLABELLED_LIST, unlabelled_pairs)):
        lines = [_list_line(image, label, root) for image, label in pairs]
        out.append(atomic_write_text(folder / name, "".join(line + "\n" for line in lines)))
    return out[0], out[1]


def _list_line(image, label, root) -> str:
    fields = [relative_key(image, root), relative_key(label, root)]
    for field in fields:
        if any(c.isspace() for c in field):
            # The format separates fields by whitespace: such a path could never be read back.
            raise ValueError(f"split list: path '{field}' contains whitespace (expected paths "
                             "without spaces or tabs, as the labeled.txt format requires)")
    return " ".join(fields)


def read_split_list(path, root) -> list[tuple[Path, Path]]:
    """(image, label) paths under `root` from a split list, in file order.

    Reads UniMatch lines (`img mask`, one space, maybe no final newline) and CPS lines
    (`/img<TAB>/mask`, paths relative to the root despite the leading slash). Every listed file
    must exist: a list that names missing files would train on part of the split."""
    root = _list_root(path, root)
    return [(_existing(path, number, root, image, "image"), _existing(path, number, root, label, "label"))
            for number, image, label in _list_rows(path)]


def pairs_from_list(pairs, path, root) -> list[tuple[Path, Path]]:
    """The dataset's own (image, label) pairs whose image a split list names, in list order.

    Only the list's image column is used. Published lists often name a preprocessed label:
    UniMatch's Cityscapes lists name `*_gtFine_labelTrainIds.png`, whose train ids read as label
    ids would be silently wrong; the source reads its own raw labels instead."""
    root = _list_root(path, root)
    by_key = {relative_key(image, root): (image, label) for image, label in pairs}
    out = []
    for number, image, _ in _list_rows(path):
        if image not in by_key:
            raise SourceError(f"{path}:{number}: image {root / image} is not one of the {len(by_key)} "
                              f"images of the split under {root} (expected a listed image of that split)")
        out.append(by_key[image])
    return out


def _list_root(path, root) -> Path:
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise SourceError(f"split list {path} is missing (expected a labeled.txt-style file of "
                          "'<image> <label>' lines)")
    if not root.is_dir():
        raise SourceError(f"split list {path}: dataset root {root} is not a folder "
                          "(expected the folder the listed paths are relative to)")
    return root


def _list_rows(path) -> list[tuple[int, str, str]]:
    """(line number, image, label) per non-blank line; an image listed twice is an error."""
    rows, seen = [], {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        image, label = _parse_line(path, number, line)
        if image in seen:
            raise SourceError(f"{path}:{number}: {image} is already listed on line {seen[image]} "
                              "(expected each image once)")
        seen[image] = number
        rows.append((number, image, label))
    return rows


def _parse_line(path: Path, number: int, line: str) -> tuple[str, str]:
    fields = line.strip().split("\t") if "\t" in line else line.split()
    fields = [f.strip() for f in fields]
    if len(fields) != 2 or not all(fields):
        raise SourceError(f"{path}:{number}: {len(fields)} field(s) in '{line.strip()[:80]}' "
                          "(expected '<image> <label>', separated by a space or a tab)")
    return fields[0].lstrip("/"), fields[1].lstrip("/")


def _existing(path: Path, number: int, root: Path, rel: str, kind: str) -> Path:
    full = root / rel
    if not full.is_file():
        raise SourceError(f"{path}:{number}: {kind} {full} is missing (expected the listed file "
                          f"under the dataset root {root})")
    return full
