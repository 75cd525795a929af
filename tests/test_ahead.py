"""The thread that receives a stream's batches ahead of the loop: order, errors, own memory, and
that it ends (with its iterator) on close() and when the stream is dropped."""
from __future__ import annotations

import gc
import threading
import time

import pytest
import torch

from unisemi.data.ahead import Ahead
from unisemi.data.sources.errors import SourceError


def batches(n=None, fail_at=None, log=None):
    k = 0
    while n is None or k < n:
        if k == fail_at:
            raise SourceError(f"batch {k}: broken.png is unreadable")
        if log is not None:
            log.append(k)
        yield (torch.full((2, 3), k), torch.arange(3) + k)
        k += 1


def _threads():
    return [t for t in threading.enumerate() if t.name == "unisemi-batches-ahead"]


def test_batches_come_in_the_iterators_order_and_in_own_memory():
    source = [(torch.full((2, 3), k), torch.arange(3) + k) for k in range(6)]
    ahead = Ahead(iter(source), depth=2, own_memory=True)
    for want in source:
        got = ahead.next()
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        assert all(a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr() for a, b in zip(got, want))
    ahead.close()
    pinned = Ahead(iter(source), depth=2, own_memory=False)       # a pinned batch is handed over as is
    assert pinned.next()[0] is source[0][0]
    pinned.close()


def test_an_error_reaches_the_loop_in_its_place_and_stays():
    ahead = Ahead(batches(fail_at=2), depth=4, own_memory=True)
    assert int(ahead.next()[0][0, 0]) == 0 and int(ahead.next()[0][0, 0]) == 1
    for _ in range(2):
        with pytest.raises(SourceError, match="broken.png"):
            ahead.next()
    ahead.close()


def test_it_fetches_at_most_depth_ahead():
    log = []
    ahead = Ahead(batches(log=log), depth=2, own_memory=True)
    time.sleep(0.3)
    # two in the queue and one the thread holds while it waits for room
    assert log == [0, 1, 2]
    ahead.next()
    time.sleep(0.3)
    assert log == [0, 1, 2, 3]
    ahead.close()


def test_close_ends_the_thread_even_with_a_full_queue():
    before = len(_threads())
    ahead = Ahead(batches(), depth=1, own_memory=True)
    time.sleep(0.2)
    ahead.close()
    assert len(_threads()) == before


def test_a_dropped_stream_ends_its_thread():
    before = len(_threads())
    ahead = Ahead(batches(), depth=1, own_memory=True)
    ahead.next()
    del ahead
    gc.collect()
    deadline = time.time() + 5
    while len(_threads()) > before and time.time() < deadline:
        time.sleep(0.05)
    assert len(_threads()) == before


class _Numbers(torch.utils.data.Dataset):
    def __len__(self):
        return 1000

    def __getitem__(self, i):
        return (torch.tensor(i),)       # one tensor per item, as a stream's tuple


def test_close_ends_the_loaders_worker_processes():
    import multiprocessing
    loader = iter(torch.utils.data.DataLoader(_Numbers(), batch_size=4, num_workers=1))
    assert multiprocessing.active_children()
    ahead = Ahead(loader, depth=2, own_memory=True)
    del loader
    assert torch.equal(ahead.next()[0], torch.arange(4))
    ahead.close()
    gc.collect()
    deadline = time.time() + 10
    while multiprocessing.active_children() and time.time() < deadline:
        time.sleep(0.05)
    assert not multiprocessing.active_children()


EXIT_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import fixtures_real as fx
from unisemi import train
from unisemi.config import load_config
root = {root!r}
from pathlib import Path
fx.cityscapes_tree(Path(root) / "cityscapes")
os.environ["UNISEMI_DATA"] = root
os.environ["UNISEMI_CACHE"] = os.path.join(root, "cache")
train.Batches.close = lambda self: None      # as if the run had raised before closing its streams
out = train.fit(load_config(None, ["data.domains=[cityscapes]", "data.n_labelled=2", "data.check_counts=false",
                                   "data.workers=1", "data.resize=[8,16]", "data.crop=[8,8]",
                                   "data.val_resize=[8,16]", "data.batch_size=2", "model.width=8",
                                   "train.progress=false", "train.iterations=4", "train.eval_every=4"]))
print("fit done")
"""


def test_a_process_whose_streams_were_never_closed_still_exits_cleanly(tmp_path):
    """With a finaliser that only stopped the thread, this aborted in 5 runs of 8 ("terminate
    called without an active exception", exit status 134) after the fit had finished."""
    import subprocess
    import sys
    from pathlib import Path
    script = EXIT_SCRIPT.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    for run in range(2):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0 and "fit done" in done.stdout, (run, done.returncode, done.stderr[-2000:])
        assert "terminate called" not in done.stderr
