"""Data parallelism over torch.distributed (gloo on CPU, nccl on GPU), for Ray Train workers.

We average gradients explicitly after backward instead of wrapping the model in
DistributedDataParallel: methods call the encoder, the heads, a teacher and extra modules in
their own order, and DDP only synchronises what runs through the wrapped module's `forward`.
One flattened all-reduce per step is the same arithmetic as DDP with a single bucket.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(params) -> None:
    """Replace each gradient by its mean over ranks (one all-reduce of a flat buffer)."""
    _, size = world()
    if size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_state(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers (BN statistics, teachers) to every rank."""
    _, size = world()
    if size == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """All-reduce a tensor by sum (e.g. a validation confusion matrix computed on shards)."""
    _, size = world()
    if size > 1:
        dist.all_reduce(t)
    return t
