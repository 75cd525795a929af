"""The 2 x C class-specific attention modules (Linear, BN, LeakyReLU, Linear(1), Sigmoid) as one
batched module: class c's weights are slice c of stacked tensors, so scoring N vectors of mixed
classes is a few tensor ops, never a loop over classes. Batch-norm statistics are per class,
computed over the vectors of that class only, as C separate modules would."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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

    def _norm(self, h, mean, var, count):
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

    def score(self, x: torch.Tensor, cls: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Sigmoid scores (N,) of vectors x (N, D) by the module of their class cls (N,); rows with
        valid=False do not enter the statistics and get an arbitrary score."""
        c, d, hdim = self.w1.shape
        cls = torch.where(valid, cls, torch.zeros_like(cls))
        # All classes' first layers in one matmul, then each row keeps its own class's slice.
        h_all = (x @ self.w1.permute(1, 0, 2).reshape(d, c * hdim)).view(-1, c, hdim)
        h = h_all.gather(1, cls.view(-1, 1, 1).expand(-1, 1, hdim)).squeeze(1) + self.b1[cls]
        v = valid.to(h.dtype).unsqueeze(-1)
        count = torch.zeros(c, dtype=h.dtype, device=h.device).index_add_(0, cls, v.squeeze(-1))
        mean = torch.zeros(c, hdim, dtype=h.dtype, device=h.device).index_add_(0, cls, h * v)
        mean = mean / count.clamp_min(1).unsqueeze(-1)
        var = torch.zeros(c, hdim, dtype=h.dtype, device=h.device).index_add_(0, cls, (h - mean[cls]) ** 2 * v)
        var = var / count.clamp_min(1).unsqueeze(-1)
        mean, var = self._norm(h, mean, var, count)
        h = (h - mean[cls]) / torch.sqrt(var[cls] + self.eps) * self.bn_weight[cls] + self.bn_bias[cls]
        h = F.leaky_relu(h, 0.2)
        return torch.sigmoid((h * self.w2[cls]).sum(-1) + self.b2[cls])

    def score_grouped(self, m: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Scores (C, K) of vectors already grouped by class, m (C, K, D), valid (C, K)."""
        h = torch.bmm(m, self.w1) + self.b1.unsqueeze(1)                     # (C, K, H)
        v = valid.to(h.dtype).unsqueeze(-1)
        count = v.sum((1, 2))
        mean = (h * v).sum(1) / count.clamp_min(1).unsqueeze(-1)
        var = ((h - mean.unsqueeze(1)) ** 2 * v).sum(1) / count.clamp_min(1).unsqueeze(-1)
        mean, var = self._norm(h, mean, var, count)
        h = (h - mean.unsqueeze(1)) / torch.sqrt(var.unsqueeze(1) + self.eps) * self.bn_weight.unsqueeze(1) \
            + self.bn_bias.unsqueeze(1)
        h = F.leaky_relu(h, 0.2)
        return torch.sigmoid((h * self.w2.unsqueeze(1)).sum(-1) + self.b2.unsqueeze(1))
