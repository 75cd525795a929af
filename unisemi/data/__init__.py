"""Data: the embedded synthetic world (default) and the real datasets, one source per domain.

A domain's name says where it comes from: a domain of the embedded world (`city`, `game`, ...)
yields a `DomainData` that renders in memory and serves `fetch(split, indices)`; a real dataset
(`cityscapes`, `pascal_voc`, ...) yields a `RealDomain` that streams its files through worker
processes (`pipeline.py`). Both carry the label space and the labelled / unlabelled / val sets.
"""
from __future__ import annotations

# The label of void pixels in every label map, loss and metric (Cityscapes' and VOC's convention).
from unisemi.data.labels import IGNORE_INDEX  # noqa: E402,F401  (re-exported)

from unisemi.data.domain_data import DomainData, load_domain  # noqa: E402



def known_domains() -> list[str]:
    """Names a config may list under data.domains: the embedded world's domains, then the real
    datasets (unisemi.data.real.DATASETS)."""
    from unisemi.data.real import DATASETS
    from unisemi.data.synthetic import DOMAINS
    return sorted(DOMAINS) + sorted(DATASETS)


def is_real(domain: str) -> bool:
    from unisemi.data.real import DATASETS
    return domain in DATASETS


def labelled_batches(dd, batch_size: int = 8, seed: int = 0):
    """(uint8 images, labels) of every labelled image of a domain, in order, once: the embedded
    world's from memory; a real dataset's through its workers at its training resize and crop
    (the crop drawn from `seed`, no rescale, no flip), so that memory stays one batch deep."""
    if not is_real(dd.name):
        for i in range(0, len(dd.labelled), batch_size):
            yield dd.fetch("train", dd.labelled[i:i + batch_size])
        return
    import torch.utils.data

    from unisemi.data import pipeline
    geometry = pipeline.Geometry(dd.geometry.resize, (1.0, 1.0), dd.geometry.crop, hflip=False)
    dataset = pipeline.PairStream(dd.train_pairs, dd.read, geometry, seed, labels=True, cache=dd.cache)
    keyed = list(enumerate(dd.labelled.tolist()))      # (sample k, pool index): k seeds the crop
    keys = [keyed[s:s + batch_size] for s in range(0, len(keyed), batch_size)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=keys, num_workers=dd.workers,
                                         collate_fn=pipeline.collate)
    for x, y in loader:
        yield x, y


def label_space(domain: str) -> tuple:
    """The class names of a domain, without generating or reading any data."""
    from unisemi.data import real
    if domain in real.DATASETS:
        return real.classes_of(domain)
    from unisemi.data.synthetic import get_domain
    return tuple(get_domain(domain).classes)


__all__ = ["DomainData", "IGNORE_INDEX", "load_domain", "known_domains", "label_space", "is_real",
           "labelled_batches"]
