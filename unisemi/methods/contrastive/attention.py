"""The 2 x C class-specific attention modules (Linear, BN, LeakyReLU, Linear(1), Sigmoid) as one
batched module: class c's weights are slice c of stacked tensors, so scoring N vectors of mixed
classes is a few tensor ops, never a loop over classes. Batch-norm statistics are per class,
computed over the vectors of that class only, as C separate modules would."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def block_size(n: int, num_classes: int) -> int:
    """Rows per block: about N / 2C, so the batched matmul has few, large blocks while padding
    (at most one partial block per class, plus unused blocks) stays below 1.5x the rows.
    Measured on CPU (benchmarks/contrastive.py): N/C, N/2C and N/4C are within 15%."""
    return max(8, -(-n // (2 * num_classes)))


def block_layout(cls: torch.Tensor, num_classes: int, block: int | None = None):
    """Sort rows by class into blocks of `block` rows that each hold one class (a class's last
    block is padded). The block count is bounded by N / block + C, so shapes never depend on the
    data (no host sync). Returns (order, blk, off, block_cls, n_blocks, block): sorted row
    order[i] goes to block blk[i], slot off[i]; block b belongs to class block_cls[b]."""
    n = cls.shape[0]
    block = block or block_size(n, num_classes)
    counts = torch.bincount(cls, minlength=num_classes)
    blocks_per_class = (counts + block - 1) // block
    block_end = torch.cumsum(blocks_per_class, 0)
    block_start = block_end - blocks_per_class
    class_start = torch.cumsum(counts, 0) - counts
    order = torch.sort(cls, stable=True).indices
    sorted_cls = cls[order]
    pos = torch.arange(n, device=cls.device) - class_start[sorted_cls]
    blk = block_start[sorted_cls] + pos // block
    off = pos % block
    n_blocks = n // block + num_classes
    block_cls = torch.bucketize(torch.arange(n_blocks, device=cls.device), block_end, right=True)
    return order, blk, off, block_cls.clamp_max(num_classes - 1), n_blocks, block


def to_blocks(values: torch.Tensor, layout) -> torch.Tensor:
    order, blk, off, _, n_blocks, block = layout
    out = values.new_zeros((n_blocks, block) + tuple(values.shape[1:]))
    out[blk, off] = values[order]
    return out


def from_blocks(blocks: torch.Tensor, layout) -> torch.Tensor:
    order, blk, off = layout[:3]
    out = blocks.new_empty((order.shape[0],) + tuple(blocks.shape[2:]))
    out[order] = blocks[blk, off]
    return out


def grouped_linear(x: torch.Tensor, cls: torch.Tensor, weight: torch.Tensor, num_classes: int,
                   block: int | None = None) -> torch.Tensor:
    """x[n] @ weight[cls[n]] for every row with one batched matmul over class blocks: no loop
    over classes, and not the C-fold cost of applying every class's weights to every row."""
    layout = block_layout(cls, num_classes, block)
    return from_blocks(torch.bmm(to_blocks(x, layout), weight[layout[3]]), layout)


class ClassAttention(nn.Module):
    def __init__(self, num_classes: int, dim: int, hidden: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        c = num_classes
        bound1, bound2 = 1 / math.sqrt(dim), 1 / math.sqrt(hidden)
        # nn.Linear's default init, per class.
        self.w1 = nn.Parameter(torch.empty(c, dim, hidden).uniform_(-bound1, bound1))
        self.b1 = nn.Parameter(torch.empty(c, hidden).uniform_(-bound1, bound1))
        self.bn_weight = nn.Parameter(torch.ones(c, hidden))
        self.bn_bias = nn.Parameter(torch.zeros(c, hidden))
        self.w2 = nn.Parameter(torch.empty(c, hidden).uniform_(-bound2, bound2))
        self.b2 = nn.Parameter(torch.empty(c).uniform_(-bound2, bound2))
        self.register_buffer("running_mean", torch.zeros(c, hidden))
        self.register_buffer("running_var", torch.ones(c, hidden))
        self.momentum, self.eps = momentum, eps

    def _norm(self, mean, var, count):
        """BN over each class's vectors; running statistics move only for classes seen here."""
        if self.training:
            with torch.no_grad():
                seen = (count > 0).unsqueeze(-1)
                unbiased = var * (count / (count - 1).clamp_min(1)).unsqueeze(-1)
                m = self.momentum
                self.running_mean.copy_(torch.where(seen, (1 - m) * self.running_mean + m * mean, self.running_mean))
                self.running_var.copy_(torch.where(seen, (1 - m) * self.running_var + m * unbiased, self.running_var))
            return mean, var
        return self.running_mean, self.running_var

    def _affine(self, total, total_sq, count):
        """Per-class BN scale and shift (C, H) for the bias-free hidden layer h = x w1 from its
        class sums: b1 only moves the batch mean, so it enters through the shift (and cancels
        in training mode, as a bias before BN does)."""
        mean = total / count.clamp_min(1).unsqueeze(-1)
        var = (total_sq / count.clamp_min(1).unsqueeze(-1) - mean * mean).clamp_min(0)
        mean, var = self._norm(mean + self.b1, var, count)
        scale = self.bn_weight / torch.sqrt(var + self.eps)
        return scale, self.bn_bias + (self.b1 - mean) * scale

    def score(self, x: torch.Tensor, cls: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Sigmoid scores (N,) of vectors x (N, D) by the module of their class cls (N,); rows with
        valid=False do not enter the statistics and score 0."""
        c, d, hdim = self.w1.shape
        # Rows sorted by class, invalid ones last (key C): on CPU the grouped matmul then skips
        # them, as a per-class loop would, with no data-dependent shape.
        key, order = torch.sort(torch.where(valid, cls, c), stable=True)
        counts = torch.bincount(key, minlength=c + 1)[:c]
        xs = x[order]
        grouped = x.device.type == "cpu" and x.dtype == torch.float32 and d % 4 == 0 and hdim % 4 == 0
        offs = torch.cumsum(counts, 0).to(torch.int32) if grouped else None
        if grouped:
            h = F.grouped_mm(xs, self.w1, offs=offs)      # rows of key C are left unset
        else:    # grouped_mm: float32 with 16-byte strides only, and a host sync on CUDA
            h = grouped_linear(xs, key.clamp_max(c - 1), self.w1, c)
        # Class sums by index_add into C + 1 rows: the unset rows land in row C, dropped.
        sums = lambda t: h.new_zeros(c + 1, hdim).index_add_(0, key, t)[:c]      # noqa: E731
        scale, shift = self._affine(sums(h), sums(h * h), counts.to(h.dtype))
        # Per-row scale and shift by index_select (backward: index_add_), a zero row for key C.
        rows = lambda t: F.pad(t, (0, 0, 0, 1)).index_select(0, key)      # noqa: E731
        if torch.is_grad_enabled():
            z = F.leaky_relu(torch.addcmul(rows(shift), h, rows(scale)), 0.2)
        else:    # no autograd (the memory update): in place, one buffer
            z = rows(shift)
            torch.addcmul(z, h, rows(scale), out=z)
            F.leaky_relu_(z, 0.2)
        if grouped:    # second layer per class without per-row copies of w2
            w2 = F.pad(self.w2.unsqueeze(-1), (0, 3))           # (C, H, 4): 16-byte output rows
            s = F.grouped_mm(z, w2, offs=offs)[:, 0] + F.pad(self.b2, (0, 1)).index_select(0, key)
        else:
            s = torch.linalg.vecdot(z, rows(self.w2)) + F.pad(self.b2, (0, 1)).index_select(0, key)
        s = torch.where(key < c, torch.sigmoid(s), 0)          # unset rows may hold anything
        return s.new_zeros(s.shape).index_copy(0, order, s)

    def score_grouped(self, m: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Scores (C, K) of vectors already grouped by class, m (C, K, D), valid (C, K)."""
        h = torch.bmm(m, self.w1)                                             # (C, K, H)
        v = valid.to(h.dtype).unsqueeze(1)                                    # (C, 1, K)
        scale, shift = self._affine(torch.bmm(v, h)[:, 0], torch.bmm(v, h * h)[:, 0], v.sum((1, 2)))
        h = F.leaky_relu(torch.addcmul(shift.unsqueeze(1), h, scale.unsqueeze(1)), 0.2)
        return torch.sigmoid(torch.bmm(h, self.w2.unsqueeze(-1))[..., 0] + self.b2.unsqueeze(1))
