"""The class-wise memory bank: one padded tensor (C, psi, D) plus fill counts, on the model's device.

Each iteration: candidates (teacher projections of labelled pixels) pass the Feature Quality
Filter; per class, if the batch has no more kept candidates than the class may receive
(B x k), all of them are pushed in their input order, as the release does; otherwise they are
ranked by the teacher's class attention and the top k per (image, class) are kept (the top B x k
over the whole batch with `over_batch`, as the release). The chosen ones go to the front of their
class's FIFO (newest first; entries past psi fall off). All with sorts, cumulative sums and
gathers: no loop over classes, no host sync; the push touches only the (statically bounded)
chosen rows, never every candidate.
"""
from __future__ import annotations

from typing import Callable

import torch


def rank_within_groups(group: torch.Tensor, score: torch.Tensor, descending: bool = True) -> torch.Tensor:
    """Position (0 = best) of each element among the elements of its group, by score (ties: by
    input position)."""
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


def needs_ranking(cls: torch.Tensor, keep: torch.Tensor, per_image: int, num_classes: int,
                  n_images: int | None = None, in_order_when_fits: bool = False) -> torch.Tensor:
    """The kept candidates whose class has more of them in the batch than it may receive
    (n_images x per_image), i.e. the only ones a ranking has to score. Without
    `in_order_when_fits` every kept candidate is ranked."""
    if not in_order_when_fits:
        return keep
    cls = torch.where(keep, cls, torch.zeros_like(cls))
    count = torch.zeros(num_classes, dtype=torch.long, device=cls.device).index_add_(0, cls, keep.long())
    return keep & (count[cls] > n_images * per_image)


def select(cls: torch.Tensor, image: torch.Tensor, keep: torch.Tensor,
           score: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
           per_image: int, num_classes: int, lowest: bool = False, *, n_images: int | None = None,
           over_batch: bool = False, in_order_when_fits: bool = False):
    """The candidates to push and the order they go in.

    Per class, E = n_images x per_image may be pushed. With `in_order_when_fits` (the release),
    a class with at most E kept candidates in the batch pushes all of them in input order and is
    not ranked; otherwise the best-scored `per_image` per (image, class) are chosen, or the best E
    of the class over the whole batch with `over_batch` (the release); `lowest` keeps the
    lowest-scored instead (the release's ascending sort). `score` is a tensor (N,) or a callable
    that gets the mask of candidates to rank and returns scores (N,), so that the others are never
    scored. Returns (mask, order): `order` ascending is the queue order of the chosen ones within
    each class (input position; or image, then rank; or rank)."""
    if (over_batch or in_order_when_fits) and n_images is None:
        raise ValueError("select: n_images is needed for over_batch / in_order_when_fits")
    ranked = needs_ranking(cls, keep, per_image, num_classes, n_images, in_order_when_fits)
    if callable(score):
        score = score(ranked)
    if over_batch:
        group, limit = cls, n_images * per_image
    else:
        group, limit = image * num_classes + cls, per_image
    group = torch.where(ranked, group, torch.full_like(group, -1))
    rank = rank_within_groups(group, score, descending=not lowest)
    chosen = keep & (~ranked | (rank < limit))
    n = cls.numel()
    position = torch.arange(n, device=cls.device)
    if over_batch:
        order = torch.where(ranked, rank, position)
    else:
        order = torch.where(ranked, image * (per_image + 1) + rank, position)
    return chosen, order


def push(memory: torch.Tensor, fill: torch.Tensor, vectors: torch.Tensor, cls: torch.Tensor,
         chosen: torch.Tensor, order: torch.Tensor | None = None,
         max_new: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """New (memory, fill) with the chosen vectors at the front of their class's queue (ascending
    `order`, default: as given) and older entries shifted back, truncated to psi; slots past the
    fill are zero. `max_new` is a static bound on the number of chosen vectors (for the memory
    update: C x n_images x per_image); only that many rows of `vectors` are read, so the push
    never touches every candidate. Chosen vectors beyond the bound would be dropped."""
    c, k, d = memory.shape
    n = cls.numel()
    m = n if max_new is None else min(int(max_new), n)
    if order is None:
        order = torch.arange(n, device=cls.device)
    # Sort the chosen ones by (class, order) with one stable sort on a composite key; the
    # unchosen go last. The first m of that sort are all we read.
    cls = torch.where(chosen, cls, torch.full_like(cls, c))
    order = order.long()
    span = order.max().clamp_min(0) + 1 if n else torch.ones((), dtype=torch.long, device=cls.device)
    key = cls * span + order.clamp_min(0)                                # no host sync: span is a tensor
    idx = torch.sort(key, stable=True).indices[:m]                       # (m,)
    new_cls = cls[idx]                                                   # c where not chosen
    new_count = torch.bincount(new_cls, minlength=c + 1)[:c]             # chosen per class (<= m)
    start = torch.cumsum(new_count, 0) - new_count                       # first of each class in idx
    # Destination slot (c, j): new vector start[c] + j if j < new_count[c], else old entry
    # j - new_count[c] if that is within the old fill, else empty. One gather over a table of
    # [old memory rows | chosen rows | a zero row].
    j = torch.arange(k, device=memory.device).unsqueeze(0)
    old_j = j - new_count.unsqueeze(1)
    is_new = old_j < 0
    is_old = ~is_new & (old_j < fill.unsqueeze(1))
    row_c = torch.arange(c, device=memory.device).unsqueeze(1)
    src = torch.where(is_new, c * k + (start.unsqueeze(1) + j).clamp_max(max(m - 1, 0)),
                      torch.where(is_old, row_c * k + old_j.clamp_min(0), c * k + m))
    table = torch.cat([memory.reshape(c * k, d), vectors[idx].to(memory.dtype), memory.new_zeros(1, d)])
    new_fill = torch.clamp(fill + new_count, max=k)
    return table[src.reshape(-1)].view(c, k, d), new_fill
