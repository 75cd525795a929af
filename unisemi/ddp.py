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
    """Replace each gradient by its mean over ranks (one all-reduce of a flat buffer).

    A parameter may have no gradient on some ranks (a class-level discriminator whose class is
    absent from that rank's batch): it counts as a zero gradient there, so every rank reduces a
    buffer of the same layout and ends with the same gradient. One flag per parameter rides in the
    same buffer; a parameter without a gradient on every rank keeps `None`, so the optimiser
    skips it as it would in a single process (no weight decay or momentum step)."""
    _, size = world()
    if size == 1:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    ref = params[0]
    has = [p.grad is not None for p in params]
    grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
             for p in params]
    flags = torch.tensor(has, dtype=ref.dtype, device=ref.device)
    flat = torch.cat(grads + [flags])
    dist.all_reduce(flat)
    any_rank = flat[-len(params):] > 0
    flat = flat[:-len(params)] / size
    offset = 0
    for p, present in zip(params, any_rank.tolist()):   # one host read of the flags per step
        n = p.numel()
        if present:
            mean = flat[offset:offset + n].view_as(p)
            if p.grad is None:
                p.grad = mean.clone()
            else:
                p.grad.copy_(mean)
        offset += n


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
