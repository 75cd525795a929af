"""Gradient averaging over two gloo ranks when a parameter has no gradient on one of them."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unisemi import ddp


def _worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    shared = torch.nn.Parameter(torch.zeros(2))
    per_class = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]   # one discriminator row per class
    unused = torch.nn.Parameter(torch.zeros(1))                          # no gradient on any rank
    # rank 0's batch holds only class 0, rank 1's both classes
    present = [0] if rank == 0 else [0, 1]
    loss = (shared * (rank + 1)).sum() + sum(per_class[c].sum() * (c + 1) * (rank + 1) for c in present)
    loss.backward()
    assert per_class[1].grad is None if rank == 0 else per_class[1].grad is not None
    ddp.average_gradients([shared, *per_class, unused])
    opt = torch.optim.SGD([shared, *per_class, unused], lr=0.5, weight_decay=0.1)
    opt.step()
    torch.save({"grads": [shared.grad, per_class[0].grad, per_class[1].grad, unused.grad],
                "values": [shared.data, per_class[0].data, per_class[1].data, unused.data]},
               os.path.join(out, f"{rank}.pt"))
    dist.destroy_process_group()


def test_a_parameter_without_gradient_on_one_rank_is_averaged_as_zero_there(tmp_path):
    mp.spawn(_worker, args=(29531, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    # shared: grads 1 and 2 -> 1.5; class 0: 1 and 2 -> 1.5; class 1: absent (0) and 2*2 -> 2.0
    expected = [torch.full((2,), 1.5), torch.full((3,), 1.5), torch.full((3,), 2.0)]
    for got in (r0, r1):
        for g, e in zip(got["grads"][:3], expected):
            assert torch.equal(g, e)
        assert got["grads"][3] is None                       # never had a gradient: still None
        # one SGD step from 0 with lr 0.5 (weight decay of a zero weight adds nothing)
        for v, e in zip(got["values"][:3], expected):
            assert torch.equal(v, -0.5 * e)
        assert torch.equal(got["values"][3], torch.zeros(1))
    for a, b in zip(r0["values"], r1["values"]):             # the ranks stay identical
        assert torch.equal(a, b)
