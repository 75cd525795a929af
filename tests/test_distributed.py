"""Data parallelism: gradient averaging over a gloo group, and fit() inside a Ray TorchTrainer."""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unisemi import checkpoint, ddp


def _average_worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    p = torch.nn.Parameter(torch.zeros(3))
    q = torch.nn.Parameter(torch.zeros(2, 2))
    p.grad = torch.full((3,), float(rank + 1))        # ranks hold 1 and 2 -> mean 1.5
    q.grad = torch.full((2, 2), 10.0 * rank)          # 0 and 10 -> mean 5
    ddp.average_gradients([p, q])
    torch.save((p.grad, q.grad), os.path.join(out, f"{rank}.pt"))
    dist.destroy_process_group()


def test_average_gradients_is_the_mean_over_ranks(tmp_path):
    mp.spawn(_average_worker, args=(29517, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        gp, gq = torch.load(tmp_path / f"{rank}.pt")
        assert torch.equal(gp, torch.full((3,), 1.5))
        assert torch.equal(gq, torch.full((2, 2), 5.0))


def test_torch_trainer_runs_fit_over_two_gloo_workers(ray_local):
    from unisemi.config import load_config
    from unisemi.distributed import run_trainer

    cfg = load_config("supervised_city", [
        "data.size=[32, 64]", "data.n_labelled=12", "data.batch_size=4", "data.val_images=8",
        "model.width=8", "train.progress=false", "train.threads=1", "train.iterations=6",
        "train.eval_every=3"])
    result = run_trainer(cfg, num_workers=2, cpus_per_worker=1, storage_path=tempfile.mkdtemp())
    assert result.error is None
    assert result.metrics["iteration"] == 6
    assert set(result.metrics["record"]["domains"]) == {"city"}
    # The reported checkpoint holds the finished run: step, model and the same final record.
    ck = checkpoint.load(result.checkpoint.to_directory())
    assert ck["step"] == 6
    assert ck["history"][-1]["domains"]["city"]["miou"] == pytest.approx(result.metrics["city/miou"])


@pytest.mark.parametrize("cpus, gpus, expected", [
    (1.0, 0.0, {"CPU": 1.0}),
    (2.0, 1.0, {"CPU": 2.0, "GPU": 1.0}),
    (0.5, 0.25, {"CPU": 0.5, "GPU": 0.25}),       # fractional: workers share one device
])
def test_workers_ask_for_exactly_the_gpus_per_trial_requested(cpus, gpus, expected):
    pytest.importorskip("ray")
    from unisemi.distributed import scaling_config, worker_resources

    assert worker_resources(cpus, gpus) == expected
    scaling = scaling_config(3, cpus, gpus)
    assert scaling.num_workers == 3 and scaling.use_gpu == (gpus > 0)
    # what Ray Train will reserve per worker and in all (its own view of the config)
    assert scaling._resources_per_worker_not_none == expected
    assert scaling.total_resources == {k: 3 * v for k, v in expected.items()}


def test_negative_worker_resources_are_refused():
    from unisemi.distributed import worker_resources
    with pytest.raises(ValueError, match="-1 GPU"):
        worker_resources(1.0, -1.0)
