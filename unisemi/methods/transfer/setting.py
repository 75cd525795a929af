"""The cross-category setting: which images are strong, which are weak, and what each may give.

Strong images hold strong categories only and give pixel labels. Weak images hold at least one
weak category and give image-level labels only (the embedded world's renderer, or a real
dataset's whole ground-truth masks) until the diffusion stage has made their label maps L_w. In
split 4 every target image is weak and the strong images come from another domain with its
VOC-like images removed.

Also here: the small SGD loop the L-Net, CAM and P-Net pre-training stages train with (the main
loop trains the segmenter rows; these fits are simpler and sample their own image subsets), and
their batches: indexed and flipped here in the embedded world, streamed from workers for a real one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from unisemi.data import IGNORE_INDEX, load_domain
from unisemi.data.sampler import IndexSampler
from unisemi.data.transforms import input_scheme, normalize, random_hflip
from unisemi.methods.transfer.config import (STRONG_DOMAIN_BACKGROUND, STRONG_DOMAIN_EXCLUDED,
                                             strong_classes)
from unisemi.optim import poly_lr


def image_level_labels(data_cfg, domain: str, indices: torch.Tensor) -> torch.Tensor:
    """bool (N, C): the classes present in each train image, the only label a weak image has.
    A real dataset's come from each whole ground-truth mask (`unisemi.data.real.image_labels`,
    never from a crop), the embedded world's from its renderer."""
    from unisemi.data import is_real, real, synthetic
    if is_real(domain):
        return real.image_labels(load_domain(data_cfg, domain))[indices]
    if len(indices) == 0:
        return torch.zeros(0, synthetic.get_domain(domain).num_classes, dtype=torch.bool)
    return synthetic.image_labels(domain, "train", indices, seed=data_cfg.world_seed)


def class_lut(classes, names) -> torch.Tensor:
    """bool (256,): True at the ids of `names` in the label space `classes`."""
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise ValueError(f"classes {unknown} are not in the label space {list(classes)}")
    lut = torch.zeros(256, dtype=torch.bool)
    lut[[classes.index(n) for n in names]] = True
    return lut


@dataclass
class Partition:
    """The target domain's train pool split into strong and weak images (sorted pool indices)."""
    strong: torch.Tensor
    weak: torch.Tensor
    weak_labels: torch.Tensor          # bool (len(weak), C): image-level labels of the weak images
    strong_lut: torch.Tensor           # bool (256,): the strong category ids


def partition(cfg) -> Partition:
    domain = cfg.data.domains[0]
    dd = load_domain(cfg.data, domain)
    strong_lut = class_lut(dd.classes, strong_classes(cfg.transfer.split))
    weak_lut = ~strong_lut
    weak_lut[0] = False                                   # background is no category
    weak_lut[dd.num_classes:] = False
    present = image_level_labels(cfg.data, domain, dd.labelled)
    is_weak = present[:, weak_lut[:dd.num_classes]].any(1)
    return Partition(dd.labelled[~is_weak], dd.labelled[is_weak], present[is_weak], strong_lut)


@dataclass
class StrongSource:
    """Where the pixel labels of strong categories come from: images, and which ids are objects."""
    data: object                       # DomainData
    indices: torch.Tensor              # its strong images
    object_lut: torch.Tensor           # bool (256,): label ids that are strong objects (L'_s = 1)


def strong_source(cfg) -> StrongSource:
    """Splits 1-3: the target domain's strong images. Split 4: the strong domain's train pool
    under the same split settings, without the images that hold an excluded (VOC-like) class."""
    if cfg.transfer.split != 4:
        part = partition(cfg)
        return StrongSource(load_domain(cfg.data, cfg.data.domains[0]), part.strong, part.strong_lut)
    from unisemi.data import is_real
    if is_real(cfg.data.domains[0]):      # config.validate says so at load; stages can be rebuilt alone
        raise ValueError(f"transfer.split=4 on '{cfg.data.domains[0]}': its strong domain "
                         f"(transfer.strong_domain={cfg.transfer.strong_domain}) is the embedded world's; "
                         f"no real loader provides one (COCO in the paper)")
    name = cfg.transfer.strong_domain
    data_cfg = dataclasses.replace(cfg.data, domains=(name,))
    dd = load_domain(data_cfg, name)
    excluded = class_lut(dd.classes, STRONG_DOMAIN_EXCLUDED[name])[:dd.num_classes]
    present = image_level_labels(data_cfg, name, dd.labelled)
    keep = dd.labelled[~present[:, excluded].any(1)]
    objects = ~class_lut(dd.classes, STRONG_DOMAIN_BACKGROUND[name]) & ~class_lut(
        dd.classes, STRONG_DOMAIN_EXCLUDED[name])
    objects[dd.num_classes:] = False
    return StrongSource(dd, keep, objects)


def binary_targets(labels: torch.Tensor, object_lut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L'_s of Eq. 1: float {0, 1} targets (1 on strong-object pixels) and the valid mask (not void)."""
    lab = labels.long()
    return object_lut.to(labels.device)[lab].float(), lab != IGNORE_INDEX


class IndexedBatches:
    """Batches of the embedded world for a stage's own fit: seeded indices, fetched, flipped here
    (labels with their image; image-level labels do not flip)."""

    def __init__(self, sampler: IndexSampler, fetch, cfg, hflip: bool):
        self.sampler, self.fetch, self.hflip = sampler, fetch, hflip
        self.aug = torch.Generator().manual_seed(cfg.train.seed * 1_000 + 23)

    def next(self):
        x, y = self.fetch(self.sampler.next())
        if self.hflip:
            x, flipped = random_hflip(x, y if y.dim() == 3 else None, self.aug)
            y = flipped if y.dim() == 3 else y
        return x, y

    def close(self) -> None:
        """Nothing to release (no worker processes); `sgd_fit` closes every kind of batches."""


class ImageLabelBatches:
    """A real stream's (image, image-level labels) batches as (image, object classes as float)."""

    def __init__(self, stream):
        self.stream = stream

    def next(self):
        x, present = self.stream.next()
        return x, present[:, 1:].float()              # objects only: background is no class

    def close(self) -> None:
        self.stream.close()


def stage_batches(cfg, dd, indices: torch.Tensor, seed: int, fetch=None, image_labels: bool = False,
                  batch_size: int = 0):
    """Batches of uint8 images and labels over `indices` of domain `dd` for a stage's own fit.
    A real domain streams them from workers at its geometry (crop, flip; the label map follows
    the image, image-level labels come from the whole mask); the embedded world fetches
    `fetch(indices)` (default: images and label maps) and flips here. `batch_size`: images per
    batch, 0 for data.batch_size."""
    from unisemi.data import is_real
    batch_size = batch_size or cfg.data.batch_size
    if is_real(dd.name):
        stream = dd.pool_stream(indices, batch_size, seed, labels=not image_labels,
                                classes=image_labels)
        return ImageLabelBatches(stream) if image_labels else stream
    sampler = IndexSampler(indices, batch_size, seed)
    return IndexedBatches(sampler, fetch or (lambda i: dd.fetch("train", i)), cfg, cfg.data.hflip)


def stage_device(cfg) -> torch.device:
    """Where a stage's own fit and inference run: the trial's `train.device` (the runner sets cuda
    on a GPU trial); not part of any recipe, as the stage's inputs do not change with it."""
    from unisemi.device import resolve_device
    return resolve_device(cfg.train.device)


def sgd_fit(params, loss_of_batch, batches, iterations: int, lr: float, cfg) -> list[float]:
    """Plain SGD (the `optim:` momentum, decay and poly power) on `loss_of_batch(x, y)` over
    `batches.next() -> (uint8 images, labels)` (`stage_batches`); returns the loss every 50 steps."""
    o = cfg.optim
    opt = torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    device = params[0].device               # the fit's module is on `stage_device(cfg)`
    trace, scheme = [], input_scheme(cfg)
    try:
        for step in range(iterations):
            for g in opt.param_groups:
                g["lr"] = poly_lr(lr, step, iterations, o.poly_power)
            x, y = batches.next()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_of_batch(normalize(x, scheme), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 50 == 0 or step == iterations - 1:
                trace.append(float(loss.detach()))  # a sync every 50 steps, for the stage's record
    finally:
        batches.close()                 # a real stream's worker processes end with the fit
    return trace
