"""Batches taken off a DataLoader iterator by a background thread, ahead of the training loop.

Worker processes decode in parallel, but receiving a batch from them still costs the process that
asks: unpickling it, mapping its shared memory and the first touch of every page of that memory.
On the 2-core machine that was about 3 ms plus 2.5 ms for one 8x3x128x128 batch, 4% of a laptop
step spent in the loop's `next`. This thread does it while the loop computes (torch releases the
GIL in its kernels) and hands over batches already in the process's own memory; pinned batches
(a GPU run) are handed over as they are, because a copy would not be pinned.
"""
from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Iterator


class _Failed:
    """What the thread met instead of a batch (a worker's SourceError, a dead worker)."""

    def __init__(self, error: BaseException):
        self.error = error


def _fill(iterator: Iterator, out: queue.Queue, stop: threading.Event, own_memory: bool) -> None:
    try:
        while not stop.is_set():
            item = next(iterator)
            if own_memory:
                item = tuple(t.clone() for t in item)
            _put(out, item, stop)
    except BaseException as exc:  # noqa: BLE001 -- whatever it is, the loop re-raises it (never hangs)
        _put(out, _Failed(exc), stop)


def _stop_and_join(stop: threading.Event, thread: threading.Thread) -> None:
    stop.set()
    thread.join(timeout=30)


def _put(out: queue.Queue, item, stop: threading.Event) -> None:
    """Put `item` when there is room, or drop it once the stream is closing: a full queue must
    not keep the thread (and the loader's workers) alive after close()."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
        except queue.Full:
            continue
        return


class Ahead:
    """`next()` returns the iterator's batches in order, up to `depth` of them fetched ahead."""

    def __init__(self, iterator: Iterator, depth: int, own_memory: bool):
        # held here too, so that close() ends the loader's worker processes in the caller's thread
        self._iterator = iterator
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_fill, args=(iterator, self._queue, self._stop, own_memory),
                                        name="unisemi-batches-ahead", daemon=True)
        self._thread.start()
        # Also when the stream is dropped without close(), or still open at exit: a thread left
        # inside the loader while the interpreter tears down aborts the process ("terminate
        # called without an active exception"), so the thread is stopped and joined first.
        self._close = weakref.finalize(self, _stop_and_join, self._stop, self._thread)

    def next(self):
        item = self._queue.get()
        if isinstance(item, _Failed):
            self._queue.put(item)        # every later call fails the same way
            raise item.error
        return item

    def close(self) -> None:
        self._close()
        self._iterator = None

