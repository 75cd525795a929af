"""Ray Train wrapper: the same `train.fit` inside every worker of a `TorchTrainer`.

Ray sets up the torch.distributed process group (gloo on CPU, nccl on GPU); `fit` then averages
gradients over it (see `unisemi/ddp.py`) and shards the validation set. Each evaluation is
reported to Ray Train with a checkpoint, so a failed worker group restarts from the last
evaluation (`FailureConfig`) and the metrics reach the caller (and Tune, when run inside a trial).
"""
from __future__ import annotations

import os
import platform
import tempfile

from unisemi.config import Config, build_config, to_dict


def device_name(config: dict, workers: int) -> str:
    """What a run trains on, as stored in its rows: e.g. '2x NVIDIA A10G' or '1x cpu (1 thread, x86_64)'."""
    import torch

    if config["train"]["device"] != "cpu" and torch.cuda.is_available():
        return f"{max(workers, 1)}x {torch.cuda.get_device_name(0)}"
    threads = config["train"].get("threads") or torch.get_num_threads()
    return f"{max(workers, 1)}x cpu ({threads} thread{'s' if threads != 1 else ''}, {platform.machine()})"


def flat_metrics(record: dict) -> dict:
    """One evaluation record as flat scalars, e.g. {'city/miou': 41.2, 'miou_sum': 41.2, ...}."""
    out = {"iteration": record["iteration"], "miou_sum": record["miou_sum"],
           "miou_mean": record["miou_mean"]}
    for domain, m in record["domains"].items():
        out[f"{domain}/miou"] = m["miou"]
        out[f"{domain}/pixel_acc"] = m["pixel_acc"]
    return out


def train_worker(loop_config: dict) -> None:
    """Ray Train per-worker loop: rebuild the config, resume if Ray hands a checkpoint, fit."""
    import ray.train

    from unisemi.train import NonFiniteLoss, fit

    os.environ.update(loop_config.get("env") or {})     # the driver's dataset root (UNISEMI_DATA)
    cfg = build_config(loop_config["config"], "trainer config")
    previous = ray.train.get_checkpoint()
    resume_dir = previous.to_directory() if previous is not None else None
    rank = ray.train.get_context().get_world_rank()

    def report(record, save_checkpoint):
        metrics = flat_metrics(record)
        metrics["record"] = record
        metrics["device"] = device
        metrics["node"] = ray.get_runtime_context().get_node_id()
        metrics["placement_group"] = group
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:  # one copy of the (identical) state is enough
                save_checkpoint(tmp)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)

    def keep(iteration, save_checkpoint):
        """A checkpoint between evaluations (train.checkpoint_every), reported by every rank."""
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                save_checkpoint(tmp)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({"iteration": iteration, "device": device, "placement_group": group},
                             checkpoint=checkpoint)

    device = device_name(loop_config["config"], ray.train.get_context().get_world_size())
    # The worker group's placement group, for the Tune driver: when this trial's node dies, the Train
    # controller that would remove it dies too, and Ray moves its bundles to a live node, where they
    # would hold the resources the retried trial needs (see runner.StoreCallback).
    group = ray.util.get_current_placement_group()
    group = group.id.hex() if group is not None else None
    try:
        fit(cfg, report=report, keep=keep, resume=resume_dir)
    except NonFiniteLoss as exc:
        # Deterministic, so not worth a restart: report it as the run's last result instead.
        ray.train.report({"iteration": -1, "failed": "nan", "error": str(exc), "device": device})


def worker_resources(cpus_per_worker: float, gpus_per_worker: float = 0.0) -> dict:
    """Ray resources of one TorchTrainer worker. Fractional GPUs are allowed (workers then share a
    device); no GPU key at all when none is asked for, since Ray Train rejects GPU: 0 with use_gpu."""
    if cpus_per_worker < 0 or gpus_per_worker < 0:
        raise ValueError(f"resources per worker must be >= 0, got {cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU")
    resources = {"CPU": float(cpus_per_worker)}
    if gpus_per_worker > 0:
        resources["GPU"] = float(gpus_per_worker)
    return resources


def scaling_config(num_workers: int, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0):
    """The ScalingConfig of `run_trainer`: `num_workers` workers of exactly the asked resources."""
    from ray.train import ScalingConfig

    resources = worker_resources(cpus_per_worker, gpus_per_worker)
    return ScalingConfig(num_workers=num_workers, use_gpu="GPU" in resources, resources_per_worker=resources)


def run_trainer(cfg: Config, num_workers: int = 2, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                storage_path: str | None = None, name: str | None = None, max_failures: int = 2,
                callbacks=(), env: dict | None = None):
    """Fit `cfg` with a TorchTrainer of `num_workers` DDP workers; returns Ray's `Result`.
    `env` is set in every worker before it reads data (the driver's UNISEMI_DATA)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    # One checkpoint kept, as Tune keeps for an in-process trial: train.checkpoint_every would
    # otherwise pile up one full state per interval in the storage.
    run_config = RunConfig(storage_path=storage_path, name=name, callbacks=list(callbacks),
                           failure_config=FailureConfig(max_failures=max_failures),
                           checkpoint_config=CheckpointConfig(num_to_keep=1))
    trainer = TorchTrainer(train_worker, train_loop_config={"config": to_dict(cfg), "env": dict(env or {})},
                           scaling_config=scaling_config(num_workers, cpus_per_worker, gpus_per_worker),
                           run_config=run_config)
    return trainer.fit()
