"""The cross-category setting: which images are strong, which are weak, and what each may give.

Strong images hold strong categories only and give pixel labels. Weak images hold at least one
weak category and give image-level labels only (`unisemi.data.synthetic.image_labels`) until the
diffusion stage has made their label maps L_w. In split 4 every target image is weak and the
strong images come from another domain with its VOC-like images removed.

Also here: the small SGD loop the L-Net, CAM and P-Net pre-training stages train with (the main
loop trains the segmenter rows; these fits are simpler and sample their own image subsets).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from unisemi.data import IGNORE_INDEX, load_domain
from unisemi.data.sampler import IndexSampler
from unisemi.data.transforms import normalize, random_hflip
from unisemi.methods.transfer.config import (STRONG_DOMAIN_BACKGROUND, STRONG_DOMAIN_EXCLUDED,
                                             strong_classes)
from unisemi.optim import poly_lr


def image_level_labels(data_cfg, domain: str, indices: torch.Tensor) -> torch.Tensor:
    """bool (N, C): the classes present in each train image, the only label a weak image has."""
    from unisemi.data import is_real, synthetic
    if is_real(domain):
        raise ValueError(f"domain '{domain}': image-level labels come from the embedded world only so far")
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


def sgd_fit(params, loss_of_batch, sampler: IndexSampler, fetch, iterations: int, lr: float, cfg,
            hflip: bool = True) -> list[float]:
    """Plain SGD (the `optim:` momentum, decay and poly power) on `loss_of_batch(x, y)` over
    batches of `fetch(indices) -> (uint8 images, labels)`; returns the loss every 50 steps."""
    o = cfg.optim
    opt = torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    aug = torch.Generator().manual_seed(cfg.train.seed * 1_000 + 23)
    trace = []
    for step in range(iterations):
        for g in opt.param_groups:
            g["lr"] = poly_lr(lr, step, iterations, o.poly_power)
        x, y = fetch(sampler.next())
        if hflip:       # a label map flips with its image; image-level labels do not
            x, flipped = random_hflip(x, y if y.dim() == 3 else None, aug)
            y = flipped if y.dim() == 3 else y
        loss = loss_of_batch(normalize(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == iterations - 1:
            trace.append(float(loss.detach()))  # a sync every 50 steps, for the stage's record
    return trace
