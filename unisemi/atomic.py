"""Atomic file writes: write beside the target under a temporary name, then rename over it.

Every file a run produces (checkpoints, result rows, tables, reports, cached stages) goes through
`atomic_write`, so a reader or a crash never sees a half-written file: `os.replace` is atomic on
one file system, and the temporary name carries the pid so two writers never share one.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object], tmp_dir: str | Path | None = None) -> Path:
    """Call `write(tmp)` to produce the file at a temporary path, then rename it to `path`.

    `tmp_dir` (on the same file system as `path`) holds the temporary file instead of the target's
    folder: for a folder that must only ever hold finished files, such as the rows of the results
    dataset, where a writer killed mid-write would otherwise leave a stray file for readers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tmp_dir is None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    else:
        tmp_dir = Path(tmp_dir)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        # A shared folder: the name must not collide with another target's file of the same name.
        tmp = tmp_dir / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
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
