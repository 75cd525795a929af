"""A straightforward per-class loop of the same contrastive math (Eq. 8-11), with the explicit
N x K cosine-distance matrix of each class. Slow on purpose: it is the oracle the vectorised
loss is tested against and the baseline of benchmarks/contrastive.py. Not used in training."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss_loop(pred, cls, valid, score_pred, memory, fill, score_mem,
                          divide_by_all_classes: bool = False):
    """score_pred (N,) and score_mem (C, K) are raw attention scores S(x); Eq. 8 is applied here."""
    c = memory.shape[0]
    total, present = pred.new_zeros(()), 0
    for k in range(c):
        rows = valid & (cls == k)
        n_mem = int(fill[k])
        if not bool(rows.any()) or n_mem == 0:
            continue
        p, sp = pred[rows], score_pred[rows]
        z, sz = memory[k, :n_mem], score_mem[k, :n_mem]
        wp = sp * len(sp) / sp.sum()
        wz = sz * len(sz) / sz.sum()
        dist = 1 - F.normalize(p, dim=1) @ F.normalize(z, dim=1).T            # (N_c, K_c)
        total = total + (wp[:, None] * wz[None, :] * dist).mean()
        present += 1
    return total / (c if divide_by_all_classes else max(present, 1))
