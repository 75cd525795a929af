"""The class-wise memory bank: one padded tensor (C, psi, D) plus fill counts, on the model's device.

Each iteration: candidates (teacher projections of labelled pixels) pass the Feature Quality
Filter, are ranked per (image, class) by the teacher's class attention, the top k per image per
class are kept, and pushed to the front of their class's FIFO (newest first; entries past psi
fall off). All with sorts, cumulative sums and scatters: no loop over classes, no host sync.
"""
from __future__ import annotations

import torch


def rank_within_groups(group: torch.Tensor, score: torch.Tensor, descending: bool = True) -> torch.Tensor:
    """Position (0 = best) of each element among the elements of its group, by score."""
    order = torch.sort(score, descending=descending, stable=True).indices
    order = order[torch.sort(group[order], stable=True).indices]       # by group, then by score
    sorted_group = group[order]
    n = group.numel()
    start = torch.ones(n, dtype=torch.bool, device=group.device)
    start[1:] = sorted_group[1:] != sorted_group[:-1]
    idx = torch.arange(n, device=group.device)
    first = torch.cummax(torch.where(start, idx, torch.zeros_like(idx)), 0).values
    rank = torch.empty_like(idx)
    rank[order] = idx - first
    return rank


def select(cls: torch.Tensor, image: torch.Tensor, keep: torch.Tensor, score: torch.Tensor,
           per_image: int, num_classes: int, lowest: bool = False):
    """The candidates to push: the `per_image` best-scored kept ones per (image, class).
    Returns (mask, order): `order` sorts the chosen ones by image, then by rank."""
    group = torch.where(keep, image * num_classes + cls, torch.full_like(cls, -1))
    rank = rank_within_groups(group, score, descending=not lowest)
    return keep & (rank < per_image), image * (per_image + 1) + rank


def push(memory: torch.Tensor, fill: torch.Tensor, vectors: torch.Tensor, cls: torch.Tensor,
         chosen: torch.Tensor, order: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """New (memory, fill) with the chosen vectors at the front of their class's queue (ascending
    `order`, default: as given) and older entries shifted back, truncated to psi."""
    c, k, d = memory.shape
    cls = torch.where(chosen, cls, torch.zeros_like(cls))
    new_count = torch.zeros(c, dtype=torch.long, device=memory.device).index_add_(0, cls, chosen.long())
    # Slot of each chosen vector: its order among the chosen vectors of its class.
    group = torch.where(chosen, cls, torch.full_like(cls, c))
    if order is None:
        order = torch.arange(len(cls), device=cls.device)
    slot = rank_within_groups(group, -order.to(torch.float64))
    out = memory.new_zeros(c, k + 1, d)                                  # column k absorbs overflow
    j = torch.arange(k, device=memory.device).unsqueeze(0)
    old_dest = j + new_count.unsqueeze(1)
    old_ok = (j < fill.unsqueeze(1)) & (old_dest < k)
    old_dest = torch.where(old_ok, old_dest, torch.full_like(old_dest, k))
    out.scatter_(1, old_dest.unsqueeze(-1).expand(c, k, d), memory)
    new_dest = torch.where(chosen & (slot < k), slot, torch.full_like(slot, k))
    out[cls, new_dest] = torch.where(chosen.unsqueeze(1), vectors, out[cls, new_dest])
    new_fill = torch.clamp(fill + new_count, max=k)
    return out[:, :k].contiguous(), new_fill
