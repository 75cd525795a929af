"""One ablation trial inside Ray Tune: run the shared `train.fit` and report result rows.

`workers == 0` fits in the trial's own process (one CPU slot, no process group: the laptop
profile, where a 2-worker TorchTrainer costs 15-19 s of launch per trial). `workers >= 1` fits
the same config inside a Ray Train `TorchTrainer` of that many DDP workers (the cluster path).
Either way every evaluation reaches Tune as rows for the store plus a checkpoint, so a failed trial
is retried from its last evaluation.
"""
from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path

from unisemi.ablation.provenance import git_revision  # noqa: F401  (the runner's and the search's)
from unisemi.distributed import device_name


def warm_imports() -> None:
    """Ray worker setup hook: import torch and the training code before the first trial needs them."""
    import unisemi.methods  # noqa: F401
    import unisemi.train  # noqa: F401


def node_id() -> str | None:
    import ray
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def rows_for(record: dict, trial: dict, meta: dict, device: str, node: str | None = None,
             launched_at: float | None = None) -> list[dict]:
    """One store row per domain of one evaluation record (built on the driver). `launched_at`
    (epoch seconds) is when the driver started this attempt of the trial: the launch overhead is
    the time from there to the start of `fit` (actor or TorchTrainer start, imports)."""
    rows = []
    timing = record.get("timing") or {}
    launch = None
    if launched_at is not None and record.get("started_at") is not None:
        launch = max(float(record["started_at"]) - launched_at, 0.0)   # clocks of two nodes may skew
    wall = float(sum(timing.values())) + (launch or 0.0) if timing else None
    workers = max(meta["workers"], 1)
    for domain, m in record["domains"].items():
        names = list(m["iou"])
        split = record["splits"][domain]
        rows.append(dict(
            _common(trial, meta, device), node=node, split_id=split["split_id"], split_hash=split["split_hash"],
            n_labelled=split["n_labelled"], domain=domain, domain_key=trial["domain_map"][domain],
            iteration=record["iteration"], resumed_from=record.get("resumed_from"), is_final=False, is_best=False, status="ok", error=None,
            miou=m["miou"], pixel_acc=m["pixel_acc"], class_names=names,
            class_iou=[m["iou"][n] for n in names], loss_json=json.dumps(record.get("loss", {})),
            wall_s=wall, device_hours=None if wall is None else wall * workers / 3600.0, launch_s=launch,
            setup_s=timing.get("setup"), data_s=timing.get("data"), train_s=timing.get("train"),
            eval_s=timing.get("eval"), weights_hash=record.get("weights_hash"),
            stages_json=json.dumps(record.get("stages") or {}, sort_keys=True)))
    return rows


def failure_row(trial: dict, meta: dict, status: str, error: str, device: str | None = None,
                node: str | None = None) -> dict:
    """The marker row of a failed trial: iteration -1, final, no metrics."""
    return dict(_common(trial, meta, device), node=node, domain=",".join(trial["domain_map"]),
                domain_key=",".join(trial["domain_keys"]), iteration=-1, is_final=True,
                is_best=False, status=status, error=str(error)[:2000])


def _common(trial: dict, meta: dict, device: str | None) -> dict:
    return {
        "run_id": meta["run_id"], "suite": meta["suite"], "table": meta["table"],
        "profile": meta["profile"], "trial": trial["key"], "cell": trial["cell_id"],
        "cell_json": json.dumps(trial["cell"], sort_keys=True), "seed": trial["seed"],
        "split_seed": trial["split_seed"], "device": device, "workers": meta["workers"],
        "git_rev": meta["git_rev"], "config_hash": trial["config_hash"],
        "config_json": json.dumps(trial["config"], sort_keys=True),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_trial(params: dict, trials: dict, meta: dict) -> None:
    """The Tune function trainable. `params['trial']` is the key of the trial to run.

    Reports {'record': evaluation record, 'device': ...} with a checkpoint at every evaluation;
    the driver turns records into store rows (see runner.StoreCallback).
    """
    from ray import tune

    from unisemi.config import build_config
    from unisemi.train import NonFiniteLoss, fit

    trial = trials[params["trial"]]
    # A reused actor started before the driver set UNISEMI_DATA (or on another node) reads the
    # driver's: the root the user launched the table with.
    os.environ.update(meta.get("env") or {})
    cfg = build_config(trial["config"], f"trial {trial['key']}")
    if meta["workers"] >= 1:
        return _fit_distributed(cfg, trial, meta)
    device, node = device_name(trial["config"], 0), node_id()
    # Tune's checkpoint of this trial (a retry), else the one an interrupted earlier run left in
    # the storage (--resume after a killed driver), else a fresh start.
    previous = tune.get_checkpoint() or stored_checkpoint(trial.get("resume_checkpoint"))
    fault = meta.get("inject_fault")

    def report(record, save_checkpoint):
        metrics = {"iteration": record["iteration"], "miou_mean": record["miou_mean"],
                   "record": record, "device": device, "node": node}
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(tmp)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        if fault and record["iteration"] >= fault["after_iteration"] and (
                fault.get("every") or not Path(fault["marker"]).exists()):
            Path(fault["marker"]).write_text(trial["key"])      # fail once (or every time); the retry then passes
            raise RuntimeError(f"injected fault after iteration {record['iteration']}")

    def keep(iteration, save_checkpoint):
        """A checkpoint between evaluations (train.checkpoint_every): no record, no rows."""
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(tmp)
            tune.report({"iteration": iteration, "device": device, "node": node},
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    try:
        fit(cfg, report=report, keep=keep, resume=previous.to_directory() if previous is not None else None)
    except NonFiniteLoss as exc:
        # Deterministic: a retry would fail the same way, so report it instead of raising.
        tune.report({"iteration": -1, "miou_mean": float("nan"), "failed": "nan", "error": str(exc), "device": device,
                     "node": node})
    except Exception as exc:
        # An error of the code (a lost node kills this process: no exception reaches here). It is
        # retried --max-failures times, then reported as the trial's failure; Tune's own budget,
        # which also pays for lost nodes, is larger by --max-preemptions.
        if code_error_retry(meta, trial["key"]):
            raise
        tune.report({"iteration": -1, "miou_mean": float("nan"), "failed": "error",
                     "error": f"{type(exc).__name__}: {exc}", "device": device, "node": node})


class ErrorLedger:
    """The run's count of code errors per trial key, in a Ray actor on the driver's node: a retried
    trial may run on any node, and only the driver's run should count."""

    def __init__(self):
        self.counts: dict = {}

    def add(self, key: str) -> int:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]


def start_error_ledger(name: str):
    """Driver side: the named ledger actor (0 CPUs, pinned to this node); keep the handle alive."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return ray.remote(num_cpus=0)(ErrorLedger).options(
        name=name, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()


def code_error_retry(meta: dict, key: str) -> bool:
    """Whether this code error of trial `key` may still be retried (True where no ledger runs)."""
    name = meta.get("error_ledger")
    if not name:
        return True
    import ray
    return ray.get(ray.get_actor(name).add.remote(key)) <= meta["max_failures"]


def stored_checkpoint(uri: str | None):
    """The Tune checkpoint at `uri` (a folder or a storage URI) if it is still there, else None."""
    if not uri:
        return None
    import pyarrow.fs
    from ray import tune

    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri) if "://" in uri else (pyarrow.fs.LocalFileSystem(), uri)
        if fs.get_file_info(path).type != pyarrow.fs.FileType.Directory:
            return None
    except (OSError, ValueError, pyarrow.ArrowException):
        return None
    return tune.Checkpoint(path, filesystem=fs)


def train_run_name(meta: dict, key: str) -> str:
    """A TorchTrainer trial's Train run: one name per trial key, so that Train V2 resumes the run
    from its storage when the trial runs again (a retry, or --resume after a killed driver)."""
    return f"{meta['suite']}-{meta['table']}-{key}"


def _fit_distributed(cfg, trial, meta):
    """Fit inside a TorchTrainer; Ray's TuneReportCallback forwards each report to this trial.

    Train V2 restores a run from its own storage (same name and storage path) when the trial is
    retried, so the trainer resumes from its last evaluation.
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    from unisemi.distributed import run_trainer

    run_trainer(cfg, num_workers=meta["workers"], cpus_per_worker=meta["cpus_per_worker"],
                gpus_per_worker=meta["gpus_per_worker"], storage_path=meta.get("storage_path"),
                name=train_run_name(meta, trial["key"]), callbacks=[TuneReportCallback()],
                max_failures=0, env=meta.get("env"))
