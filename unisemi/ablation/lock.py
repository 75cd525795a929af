"""One runner per table: a lock file in the table's folder under results/locks/, held for the whole run.

Two drivers on one table and results folder would both run every missing trial (each reads the
ledger before the other writes to it). The first to start holds `fcntl.flock(LOCK_EX | LOCK_NB)` on
`<table folder>/.runner.lock` and writes `{pid, host, started}` into it; a second one stops at
once, naming the holder. The kernel drops a flock when its holder dies, however it dies, so a
lock file with content but no flock on it was left by a killed driver: it is taken over (and a
line says so). A clean release empties the file but leaves it in place: unlinking it would let a
third runner lock a fresh file while a second still holds the old, unlinked one.

The lock lives beside the rows dataset (results/locks/suite=S/table=T/), not in it: the rows folder
holds only Parquet files, which some readers (polars) require. flock works on a local disk and on
NFSv4; the store is written by the driver only, so that is where the lock lives.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

LOCK_NAME = ".runner.lock"


class LockHeld(RuntimeError):
    """Another live runner holds the table's lock; the message names it."""


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "a runner that has not written its name yet"
    return f"pid {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')})"


class TableLock:
    """`with TableLock(folder):` holds the folder's runner lock, or raises LockHeld."""

    def __init__(self, folder: str | Path, log=print):
        self.path = Path(folder) / LOCK_NAME
        self.log = log
        self._fd: int | None = None

    def acquire(self) -> "TableLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise LockHeld(f"{self.path.parent} is being run by {describe_holder(holder)}; wait for it "
                           f"to finish or stop it (lock file {self.path})") from None
        stale = _read(fd)
        if stale:
            self.log(f"took over the stale lock {self.path} of {describe_holder(stale)}: "
                     f"that runner exited without releasing it")
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)          # empty = released cleanly, not stale
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "TableLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict | None:
    """The holder's JSON from an open lock file; None when empty (or unreadable: a holder that
    died mid-write leaves a partial line, which still marks the file as stale)."""
    data = os.pread(fd, 4096, 0)
    if not data.strip():
        return None
    try:
        holder = json.loads(data)
    except ValueError:
        return {"pid": "?", "host": "?", "started": f"unreadable lock content {data[:40]!r}"}
    return holder if isinstance(holder, dict) else {"pid": "?", "host": "?", "started": repr(holder)[:40]}
