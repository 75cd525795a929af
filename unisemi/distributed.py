"""Ray Train wrapper: the same `train.fit` inside every worker of a `TorchTrainer`.

Ray sets up the torch.distributed process group (gloo on CPU, nccl on GPU); `fit` then averages
gradients over it (see `unisemi/ddp.py`) and shards the validation set. Each evaluation is
reported to Ray Train with a checkpoint, so a failed worker group restarts from the last
evaluation (`FailureConfig`) and the metrics reach the caller (and Tune, when run inside a trial).
"""
from __future__ import annotations

import tempfile

from unisemi.config import Config, build_config, to_dict


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

    from unisemi.ablation.trial import device_name
    from unisemi.train import NonFiniteLoss, fit

    cfg = build_config(loop_config["config"], "trainer config")
    previous = ray.train.get_checkpoint()
    resume_dir = previous.to_directory() if previous is not None else None
    rank = ray.train.get_context().get_world_rank()

    def report(record, save_checkpoint):
        metrics = flat_metrics(record)
        metrics["record"] = record
        metrics["device"] = device
        metrics["node"] = ray.get_runtime_context().get_node_id()
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:  # one copy of the (identical) state is enough
                save_checkpoint(tmp)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)

    device = device_name(loop_config["config"], ray.train.get_context().get_world_size())
    try:
        fit(cfg, report=report, resume=resume_dir)
    except NonFiniteLoss as exc:
        # Deterministic, so not worth a restart: report it as the run's last result instead.
        ray.train.report({"iteration": -1, "failed": "nan", "error": str(exc), "device": device})


def run_trainer(cfg: Config, num_workers: int = 2, use_gpu: bool = False, cpus_per_worker: float = 1.0,
                storage_path: str | None = None, name: str | None = None, max_failures: int = 2,
                callbacks=()):
    """Fit `cfg` with a TorchTrainer of `num_workers` DDP workers; returns Ray's `Result`."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    scaling = ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                            resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})})
    run_config = RunConfig(storage_path=storage_path, name=name, callbacks=list(callbacks),
                           failure_config=FailureConfig(max_failures=max_failures))
    trainer = TorchTrainer(train_worker, train_loop_config={"config": to_dict(cfg)},
                           scaling_config=scaling, run_config=run_config)
    return trainer.fit()
