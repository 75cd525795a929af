"""The embedded world: procedurally generated multi-domain segmentation benchmark (no download).

Seven domains stand in for Cityscapes, CamVid, IDD, SUN RGB-D, GTA5, SYNTHIA and PASCAL VOC,
with the real label spaces (train-id order) and shared concepts (domains.py). An image is a pure
function of (domain, split, index, seed) and the output size: its scene is drawn from a
generator seeded by a stable hash of those four (scene.py) and rasterised in batches (render.py).

    images, labels = render("city", "train", range(8))   # uint8 (8, 3, 64, 128), uint8 (8, 64, 128)
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from unisemi.data.synthetic import render as _render
from unisemi.data.synthetic import scene as _scene
from unisemi.data.synthetic.domains import (DOMAINS, IGNORE_INDEX, ClassSpec, DomainSpec, Style,
                                            get_domain)

WORLD_VERSION = "2"      # bump whenever the generator's output changes
SPLITS = ("train", "val")
CHUNK = 32               # images rasterised together: bounds memory, keeps tensor ops large


def _indices(spec: DomainSpec, split: str, indices) -> list[int]:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    if isinstance(indices, torch.Tensor):
        indices = indices.reshape(-1).tolist()
    elif isinstance(indices, (int, np.integer)):
        indices = [indices]
    pool = spec.train_size if split == "train" else spec.val_size
    out = []
    for i in indices:
        if not float(i).is_integer() or not 0 <= int(i) < pool:
            raise ValueError(f"index {i} out of range for {spec.name}/{split} "
                             f"(pool size {pool}: valid indices 0..{pool - 1})")
        out.append(int(i))
    return out


def _size(spec: DomainSpec, size) -> tuple[int, int]:
    H, W = spec.size if size is None else (int(size[0]), int(size[1]))
    if H < 32 or W < 32 or H % 8 or W % 8:
        raise ValueError(f"size {H}x{W} invalid: H and W must be >= 32 and divisible by 8")
    return H, W


def render(domain: str, split: str, indices, seed: int = 0,
           size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (B, 3, H, W) and labels uint8 (B, H, W) in [0, C) or IGNORE_INDEX."""
    spec = get_domain(domain)
    idx = _indices(spec, split, indices)
    H, W = _size(spec, size)
    images = torch.empty(len(idx), 3, H, W, dtype=torch.uint8)
    labels = torch.empty(len(idx), H, W, dtype=torch.uint8)
    chunks = [idx[s:s + CHUNK] for s in range(0, len(idx), CHUNK)]

    def build(part):
        return [_scene.build(spec, _scene.image_seed(domain, split, i, seed)) for i in part]

    # Scene drawing is Python (holds the GIL), rasterising is torch (releases it): build the
    # next chunk in a helper thread while this one is drawn. Results do not depend on timing.
    with ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(build, chunks[0]) if chunks else None
        for k, part in enumerate(chunks):
            scenes = nxt.result()
            nxt = pool.submit(build, chunks[k + 1]) if k + 1 < len(chunks) else None
            img, lab = _draw(spec, scenes, H, W)
            images[k * CHUNK:k * CHUNK + len(part)], labels[k * CHUNK:k * CHUNK + len(part)] = img, lab
    return images, labels


def _draw(spec: DomainSpec, scenes, H: int, W: int):
    n = max(len(s[0]) for s in scenes)
    P = np.zeros((len(scenes), n, _scene.NF), dtype=np.float32)
    P[:, :, 1] = -1.0                    # padding slots: empty row range, never cover a pixel
    for k, s in enumerate(scenes):
        P[k, :len(s[0])] = s[0]
    stack = lambda j: torch.from_numpy(np.stack([s[j] for s in scenes]))  # noqa: E731
    A = spec.size[1] / spec.size[0]      # scene x-extent: the default aspect, whatever the size
    return _render.draw(torch.from_numpy(P), stack(1), stack(2), stack(3), H, W, A,
                        spec.style.void_band)


def image_labels(domain: str, split: str, indices, seed: int = 0) -> torch.Tensor:
    """bool (B, num_classes): classes present in the labels rendered at the default size."""
    spec = get_domain(domain)
    _, labels = render(domain, split, indices, seed)
    onehot = torch.zeros(labels.shape[0], 256, dtype=torch.bool)
    onehot.scatter_(1, labels.reshape(labels.shape[0], -1).long(), True)
    return onehot[:, :spec.num_classes]


__all__ = ["WORLD_VERSION", "DOMAINS", "DomainSpec", "ClassSpec", "Style", "IGNORE_INDEX",
           "get_domain", "render", "image_labels"]
