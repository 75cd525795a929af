"""Supervised-only training: per-domain cross-entropy on labelled pixels.

With several domains this is the universal paper's Eq. 1: one shared encoder pass over the
mixed batch, then each domain's images go through that domain's head only, and the loss is the
sum over domains of the head's CE on its own labelled pixels.
"""
from __future__ import annotations

import torch
from torch import nn

from unisemi.losses import cross_entropy
from unisemi.models import encode_parts

NEEDS_UNLABELLED = False


def build(config, model, stages=None) -> nn.Module:
    """No state beyond the model."""
    return nn.Module()


def supervised_terms(model, labelled: dict, prefix: str = "sup") -> dict[str, torch.Tensor]:
    """{'sup/<domain>': CE} for a dict domain -> (x (B,3,H,W), y (B,H,W)), one encoder pass."""
    names = list(labelled)
    feats = encode_parts(model, [labelled[d][0] for d in names])
    terms = {}
    for d, part in zip(names, feats):
        x_d, y_d = labelled[d]
        logits = model.decode(part, d, x_d.shape[-2:])["logits"]
        terms[f"{prefix}/{d}"] = cross_entropy(logits, y_d)
    return terms


def losses(model, state, batch: dict, step: int) -> dict[str, torch.Tensor]:
    return supervised_terms(model, batch["labelled"])

