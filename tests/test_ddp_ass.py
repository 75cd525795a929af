"""ASS's class-level discriminators on two gloo ranks, with classes present on one rank's batch
only: the averaged gradients of G's and D's sides equal one process's on the concatenated batch."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unisemi import ddp
from unisemi.methods import ass

V = 255
N, C = 4, 3                     # feature channels, classes


def case(variant: str):
    """D_s, G's stand-in (a per-channel scale on fixed features) and a global batch of 2 images:
    image 0 (rank 0): source classes {0} and void, target all void (no class at all);
    image 1 (rank 1): source classes {0, 1, 2}, target {1, 2}. Float64, so sums agree to 1e-12."""
    torch.manual_seed(0)
    d_s = ass.semantic_discriminator(variant, N, C, 8, 0.2).double()
    scale = torch.nn.Parameter(torch.linspace(0.5, 1.5, N, dtype=torch.float64))
    f_s, f_t = torch.randn(2, N, 2, 3, dtype=torch.float64), torch.randn(2, N, 2, 3, dtype=torch.float64)
    y_s = torch.tensor([[[0, 0, V], [0, V, V]],
                        [[0, 1, 2], [2, 2, 1]]])
    y_t = torch.tensor([[[V, V, V], [V, V, V]],
                        [[1, 1, 2], [V, 2, 2]]])
    return d_s, scale, (f_s, y_s, f_t, y_t)


def grads(variant: str, d_s, scale, f_s, y_s, f_t, y_t):
    """(g, d, G's gradient, D's gradients): each side's loss into its own parameters, as the loop does."""
    s, t = f_s * scale[None, :, None, None], f_t * scale[None, :, None, None]
    if variant == "fcsa":
        g, d = ass.fcsa_terms(d_s, *ass.class_means(s, y_s, C), *ass.class_means(t, y_t, C))
    else:
        g, d = ass.csa_terms(d_s, s, y_s, t, y_t, C)
    params = list(d_s.parameters())
    g_grad = torch.autograd.grad(g, [scale], retain_graph=True)
    d_grad = torch.autograd.grad(d, params)
    return g.detach(), d.detach(), list(g_grad), list(d_grad)


def _worker(rank, port, variant, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    d_s, scale, (f_s, y_s, f_t, y_t) = case(variant)
    mine = slice(rank, rank + 1)
    g, d, g_grad, d_grad = grads(variant, d_s, scale, f_s[mine], y_s[mine], f_t[mine], y_t[mine])
    params = [scale, *d_s.parameters()]
    for p, gr in zip(params, g_grad + d_grad):
        p.grad = gr.clone()
    ddp.average_gradients(params)
    torch.save({"grads": [p.grad for p in params], "g": g, "d": g.new_tensor(d)},
               os.path.join(out, f"{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("variant, port", [("fcsa", 29561), ("csa", 29562)])
def test_two_ranks_with_a_class_on_one_rank_only_average_to_the_one_process_gradients(tmp_path, variant, port):
    mp.spawn(_worker, args=(port, variant, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in (0, 1)]
    d_s, scale, batch = case(variant)
    g, d, g_grad, d_grad = grads(variant, d_s, scale, *batch)
    one = g_grad + d_grad
    for r in ranks:
        assert all(torch.isfinite(x).all() for x in r["grads"])
        for got, want in zip(r["grads"], one):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # the logged loss, each rank's averaged as the loop does (mean_losses), is the global one
    torch.testing.assert_close((ranks[0]["g"] + ranks[1]["g"]) / 2, g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close((ranks[0]["d"] + ranks[1]["d"]) / 2, d, rtol=1e-10, atol=1e-12)
    # the check can fail: per-rank means (each rank's own count) average to other gradients
    # here, as the ranks hold 1 and 3 source classes (FCSA) or 3 and 6 source pixels (CSA)
    def own_mean(i):                  # one image on one process: its own count is the denominator
        _, _, gg, dg = grads(variant, d_s, scale, *(t[i:i + 1] for t in batch))
        return gg + dg
    naive = [(a + b) / 2 for a, b in zip(own_mean(0), own_mean(1))]
    assert any(not torch.allclose(a, b) for a, b in zip(naive, one))


def test_class_means_of_an_image_without_any_class_are_masked_out_not_nan():
    # rank 0's target image above: every pixel void -> no V^k, present all False, loss exactly 0
    v, present = ass.class_means(torch.ones(1, N, 2, 3), torch.full((1, 2, 3), V), C)
    assert not present.any() and torch.equal(v, torch.zeros(1, C, N))
    assert ass.masked_mean(torch.full((1, C), 7.0), present).item() == 0.0
