"""Checkpoints that resume a run exactly: model, method state, optimizer, step, every RNG, history.

Files are written atomically (`unisemi.atomic`), so a crash mid-write never leaves a torn file.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from unisemi.atomic import atomic_write

FILENAME = "checkpoint.pt"


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | Path, payload: dict) -> Path:
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / FILENAME
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise FileNotFoundError(f"checkpoint '{path}' not found")
    try:
        # Our own files hold RNG states (numpy arrays, tuples), so full unpickling is needed.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise ValueError(f"checkpoint '{path}' is not readable: {exc.__class__.__name__}") from None
