"""Atomic file writes: write beside the target under a temporary name, then rename over it.

Every file a run produces (checkpoints, result rows, tables, reports, cached stages) goes through
`atomic_write`, so a reader or a crash never sees a half-written file: `os.replace` is atomic on
one file system, and the temporary name carries the pid so two writers never share one.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to produce the file at a temporary path, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():          # `write` raised: leave no temporary file behind
            tmp.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
