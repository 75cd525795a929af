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


def memory_update_loop(memory, fill, vectors, cls, image, keep, score, per_image: int):
    """The memory update as a loop over classes and images: FQF-kept candidates of each (image,
    class), best `per_image` by score, prepended to the class's FIFO (newest first), cut at psi."""
    memory, fill = memory.clone(), fill.clone()
    c, k, _ = memory.shape
    for cl in range(c):
        new = []
        for img in torch.unique(image).tolist():
            rows = torch.nonzero(keep & (cls == cl) & (image == img)).flatten()
            if len(rows) == 0:
                continue
            order = torch.sort(score[rows], descending=True, stable=True).indices[:per_image]
            new.append(vectors[rows[order]])
        if not new:
            continue
        new = torch.cat(new)
        old = memory[cl, :int(fill[cl])]
        queue = torch.cat([new, old])[:k]
        memory[cl, :len(queue)] = queue
        fill[cl] = len(queue)
    return memory, fill


def attention_scores_loop(att, x, cls, valid):
    """Class attention scores with one small MLP call per class (batch statistics, as in training)."""
    out = x.new_zeros(x.shape[0])
    for k in range(att.w1.shape[0]):
        rows = valid & (cls == k)
        if not bool(rows.any()):
            continue
        h = x[rows] @ att.w1[k] + att.b1[k]
        h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + att.eps) * att.bn_weight[k] + att.bn_bias[k]
        out = out.index_put((torch.nonzero(rows).flatten(),),
                            torch.sigmoid(F.leaky_relu(h, 0.2) @ att.w2[k] + att.b2[k]))
    return out
