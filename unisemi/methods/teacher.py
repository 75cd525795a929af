"""Mean teacher: an EMA copy of the student, updated after every optimiser step (no gradients)."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def cosine_tau(step: int, total: int, start: float, end: float) -> float:
    """tau rises from `start` at step 0 to `end` at the last step along half a cosine."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return end - (end - start) * (math.cos(math.pi * t) + 1) / 2


def warmup_tau(step: int, tau: float) -> float:
    """The decay actually applied by the contrastive release (trainSSL.py:253): never more than
    1 - 1 / (10 i + 1), so the first update (i = 0) copies the student and the teacher is a true
    running mean of the first steps' students until the schedule's tau takes over."""
    return min(1.0 - 1.0 / (10 * step + 1), tau)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, tau: float, buffers: bool = True) -> None:
    """xi = tau * xi + (1 - tau) * theta for parameters and, with `buffers`, floating buffers (BN
    statistics, so a teacher in eval mode has sensible running statistics; integer buffers are
    copied). Without `buffers` the teacher's buffers are left alone, as the contrastive release
    does (trainSSL.py:254-255 loops over parameters only): its teacher runs in train mode, where
    BN uses batch statistics and only its own forward passes move the running ones."""
    tp, sp = list(teacher.parameters()), list(student.parameters())
    torch._foreach_mul_(tp, tau)
    torch._foreach_add_(tp, sp, alpha=1.0 - tau)
    if not buffers:
        return
    tb = [b for b in teacher.buffers()]
    sb = [b for b in student.buffers()]
    floats = [(t, s) for t, s in zip(tb, sb) if t.is_floating_point()]
    if floats:
        t_f, s_f = zip(*floats)
        torch._foreach_mul_(list(t_f), tau)
        torch._foreach_add_(list(t_f), list(s_f), alpha=1.0 - tau)
    for t, s in zip(tb, sb):
        if not t.is_floating_point():
            t.copy_(s)
