"""Loss pieces shared by methods: masked cross-entropy and per-pixel entropy.

All reductions avoid host syncs (no `.item()`, no boolean indexing) and return 0, not NaN, when
every pixel is ignored: a batch whose labels are all void must not poison the run.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from unisemi.data import IGNORE_INDEX  # noqa: F401  (re-exported)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None = None,
                  pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean CE over valid pixels: sum_i w_i * nll_i / sum_i w_i, with w = class_weight[y] * pixel_weight.

    logits (B, C, H, W), target (B, H, W) with IGNORE_INDEX for void, pixel_weight (B, H, W).
    """
    valid = target != IGNORE_INDEX
    safe_target = torch.where(valid, target, torch.zeros_like(target)).long()
    nll = F.cross_entropy(logits, safe_target, reduction="none")  # (B, H, W)
    weight = valid.to(nll.dtype)
    if class_weight is not None:
        weight = weight * class_weight[safe_target]
    numerator = (nll * weight) if pixel_weight is None else (nll * weight * pixel_weight)
    return numerator.sum() / weight.sum().clamp_min(1e-12)


def entropy_map(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) along `dim`."""
    return entropy_from_logp(F.log_softmax(logits, dim=dim), dim)


def entropy_from_logp(logp: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The same from log-probabilities, for callers that already hold them (one log-softmax)."""
    return -torch.linalg.vecdot(logp.exp(), logp, dim=dim)      # one pass, no (.., C, ..) product
