"""The positive-only contrastive loss against a class-wise memory bank (Eq. 8-11), vectorised.

For class c, Eq. 11 averages w_p * w_z * (1 - cos(p, z)) over every pair of a student vector p
and a memory entry z of that class. The double sum factorises:

    sum_p sum_z w_p w_z (1 - p.z) = (sum_p w_p)(sum_z w_z) - (sum_p w_p p) . (sum_z w_z z)

(p, z unit vectors), so the loss needs per-class weighted sums of each side, never the
N x psi distance matrix: O((N + C psi) D) instead of O(N psi D), with the same value and gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def l1_normalised(score: torch.Tensor, cls: torch.Tensor, valid: torch.Tensor, num_classes: int):
    """Eq. 8: w = N_c / sum_{i in c} S(i) * S(x), per class over the valid entries."""
    v = valid.to(score.dtype)
    total = torch.zeros(num_classes, dtype=score.dtype, device=score.device).index_add_(0, cls, score * v)
    count = torch.zeros(num_classes, dtype=score.dtype, device=score.device).index_add_(0, cls, v)
    return score * (count / total.clamp_min(1e-12))[cls] * v


def contrastive_loss(pred: torch.Tensor, cls: torch.Tensor, valid: torch.Tensor, w_pred: torch.Tensor,
                     memory: torch.Tensor, fill: torch.Tensor, w_mem: torch.Tensor,
                     divide_by_all_classes: bool = False, min_vectors: int = 2) -> torch.Tensor:
    """L_contr of student vectors pred (N, D) with classes cls (N,) and weights w_pred (N,)
    (0 where not valid) against memory (C, K, D) holding fill[c] entries per class, weights w_mem
    (C, K).

    A class takes part only when it has at least `min_vectors` valid student vectors AND at least
    `min_vectors` memory entries. The paper does not say; the release skips a class unless both
    sides hold more than one vector (contrastive_losses.py:31), hence the default 2. The mean
    runs over the classes that take part, unless `divide_by_all_classes` (the release divides
    the sum by C)."""
    c, k, d = memory.shape
    cls = torch.where(valid, cls, torch.zeros_like(cls))
    w_pred = w_pred * valid.to(w_pred.dtype)
    p = F.normalize(pred, dim=1)
    z = F.normalize(memory, dim=2)
    in_mem = (torch.arange(k, device=memory.device).unsqueeze(0) < fill.unsqueeze(1)).to(memory.dtype)
    w_mem = w_mem * in_mem
    sum_p = torch.zeros(c, d, dtype=p.dtype, device=p.device).index_add_(0, cls, p * w_pred.unsqueeze(1))
    wsum_p = torch.zeros(c, dtype=p.dtype, device=p.device).index_add_(0, cls, w_pred)
    n_p = torch.zeros(c, dtype=p.dtype, device=p.device).index_add_(0, cls, valid.to(p.dtype))
    sum_z = (z * w_mem.unsqueeze(-1)).sum(1)
    wsum_z = w_mem.sum(1)
    n_z = in_mem.sum(1)
    present = (n_p >= min_vectors) & (n_z >= min_vectors)
    per_class = (wsum_p * wsum_z - (sum_p * sum_z).sum(1)) / (n_p * n_z).clamp_min(1)
    per_class = torch.where(present, per_class, torch.zeros_like(per_class))
    denom = float(c) if divide_by_all_classes else present.sum().clamp_min(1).to(per_class.dtype)
    return per_class.sum() / denom
