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


def label_space(domain: str) -> tuple:
    """The class names of a domain, without generating or reading any data."""
    from unisemi.data import real
    if domain in real.DATASETS:
        return real.classes_of(domain)
    from unisemi.data.synthetic import get_domain
    return tuple(get_domain(domain).classes)


__all__ = ["DomainData", "IGNORE_INDEX", "load_domain", "known_domains", "label_space", "is_real"]
