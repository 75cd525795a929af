"""One domain's data: label space, index sets, and cached uint8 fetches."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unisemi.data.splits import labelled_split, n_from_config, split_hash


@dataclass
class DomainData:
    name: str
    classes: tuple[str, ...]
    labelled: torch.Tensor            # int64 pool indices with labels
    unlabelled: torch.Tensor          # int64 pool indices whose labels are never read
    val: torch.Tensor                 # int64 val indices
    split_id: str                     # e.g. "city/n100/s0"
    split_hash: str                   # hash of the labelled list
    render: object                    # (split, indices) -> (uint8 images, uint8 labels)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fetch(self, split: str, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, 3, H, W) and labels (B, H, W); generated once, then served from memory."""
        cache = self._cache.setdefault(split, {})
        missing = sorted({int(i) for i in indices.tolist()} - cache.keys())
        if missing:
            images, labels = self.render(split, missing)
            for k, i in enumerate(missing):
                cache[i] = (images[k], labels[k])
        pairs = [cache[int(i)] for i in indices.tolist()]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


# Rendered images are a pure function of (domain, world seed, size, split, index), so every
# DomainData of the same world in this process shares one cache: a Ray actor that runs the next
# trial of a table (reuse_actors) serves the images it already rendered instead of drawing them again.
_RENDERED: dict = {}


def load_domain(data_cfg, domain: str) -> DomainData:
    """The data of `domain` under a DataConfig: a `DomainData` of the embedded world, or a
    `RealDomain` when the name is a real dataset (unisemi.data.real.DATASETS)."""
    from unisemi.data import real, synthetic
    if domain in real.DATASETS:
        return real.load_real(data_cfg, domain)

    spec = synthetic.get_domain(domain)
    size = tuple(data_cfg.size) if data_cfg.size else spec.size
    n = n_from_config(data_cfg.n_labelled, data_cfg.labelled_fraction, spec.train_size, domain)
    labelled, unlabelled = labelled_split(spec.train_size, n, data_cfg.split_seed)
    n_val = min(data_cfg.val_images or spec.val_size, spec.val_size)

    def render(split, indices):
        return synthetic.render(domain, split, indices, seed=data_cfg.world_seed, size=size)

    shared = _RENDERED.setdefault((synthetic.WORLD_VERSION, domain, data_cfg.world_seed, size), {})
    return DomainData(
        name=domain, classes=tuple(spec.classes), labelled=labelled, unlabelled=unlabelled,
        val=torch.arange(n_val), split_id=f"{domain}/n{n}/s{data_cfg.split_seed}",
        split_hash=split_hash(f"{domain}:{i}" for i in labelled.tolist()), render=render,
        _cache=shared)
