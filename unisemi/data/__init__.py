"""Data: the embedded synthetic world (default) and, later, real datasets behind the same interface.

A *source* is a family of domains (the synthetic world, or one real dataset per domain). Each
domain yields a `DomainData`: its label space, its labelled / unlabelled / val index sets and a
`fetch(split, indices)` that returns uint8 images and labels. The training loop sees nothing else.
"""
from __future__ import annotations

# The label of void pixels in every label map, loss and metric (Cityscapes' and VOC's convention).
from unisemi.data.labels import IGNORE_INDEX  # noqa: E402,F401  (re-exported)

from unisemi.data.domain_data import DomainData, load_domain  # noqa: E402

SOURCES = ("synthetic",)


def known_domains(source: str) -> list[str]:
    """Names a config may list under data.domains for this source."""
    if source == "synthetic":
        from unisemi.data.synthetic import DOMAINS
        return sorted(DOMAINS)
    raise ValueError(f"unknown data source '{source}' (known: {', '.join(SOURCES)})")


def label_space(source: str, domain: str) -> tuple:
    """The class names of a domain, without generating any data."""
    if source == "synthetic":
        from unisemi.data.synthetic import get_domain
        return tuple(get_domain(domain).classes)
    raise ValueError(f"unknown data source '{source}' (known: {', '.join(SOURCES)})")


__all__ = ["DomainData", "IGNORE_INDEX", "load_domain", "known_domains", "label_space", "SOURCES"]
