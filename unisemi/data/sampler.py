"""Endless, seeded, resumable batches of indices: a fresh permutation per epoch."""
from __future__ import annotations

import torch


class IndexSampler:
    """Yields batches of `indices` in epoch-wise random order; its state goes into checkpoints."""

    def __init__(self, indices: torch.Tensor, batch_size: int, seed: int):
        if len(indices) == 0:
            raise ValueError("cannot sample batches from an empty index set")
        self.indices = indices
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def next(self) -> torch.Tensor:
        out = []
        need = self.batch_size
        while need > 0:
            if self.pos >= len(self.order):
                self.order = self.indices[torch.randperm(len(self.indices), generator=self.generator)]
                self.pos = 0
            take = self.order[self.pos:self.pos + need]
            self.pos += len(take)
            need -= len(take)
            out.append(take)
        return torch.cat(out)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.pos = state["pos"]
