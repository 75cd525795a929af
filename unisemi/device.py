"""Which torch device a config's `train.device` means (cpu | cuda | auto), and state that leaves it."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is visible (use cpu or auto)")
    return torch.device(name)


def cpu_state_dict(module: torch.nn.Module) -> dict:
    """`module.state_dict()` with every tensor on the CPU: what a stage file holds, so that a
    machine without the trial's device can load it."""
    return {k: v.cpu() for k, v in module.state_dict().items()}
