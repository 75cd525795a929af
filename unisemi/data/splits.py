"""Labelled / unlabelled splits of a training pool, seeded and portable.

A split is a set of pool indices chosen by `split_seed`: the same (pool size, N, seed) gives the
same images on every machine. The unlabelled set is the rest of the pool, as in the contrastive
paper's protocol (the universal paper's code also reuses labelled images as unlabelled; that is
not the default). `split_hash` names the exact labelled file list in every result row.
"""
from __future__ import annotations

import hashlib

import torch


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
