"""Run every trial of a spec through Ray Tune, store the rows, and write the table.

Scheduling: one Tune trial per (cell, split, seed[, domain]), enumerated with `tune.grid_search`
over the trial keys, so each runs exactly once by construction (Optuna's GridSampler is known to
repeat points under parallel workers; optuna#2039/#4627/#5489). After the run the store is checked:
exactly one final row per trial, or the run fails loudly.

Resume never depends on Tune's experiment state (which does not restore searchers, ray#30861):
the store is the ledger. `--resume` runs only the trials without a final row; the rows of an
interrupted trial are rewritten under the same keys when it reruns. A trial key names the profile
and the config (seeds aside), and a run whose config differs from the stored one for the same
cells stops before Ray starts (ledger.py). One runner per table: run_table holds the table's
lock file for the whole run (lock.py).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from unisemi.ablation import preflight, ray_session
from unisemi.ablation import storage as storage_mod
from unisemi.ablation.ledger import check_same_config
from unisemi.ablation.lock import TableLock
from unisemi.ablation.rows import describe_set_aside, in_expansion, set_aside
from unisemi.ablation.spec import Spec, config_identity, expand
from unisemi.ablation.store import TableStore, check_results_dir
from unisemi.ablation.trackers import build_trackers, check_trackers, tracker_tags
from unisemi.ablation.trial import failure_row, git_revision, rows_for, run_trial, start_error_ledger, train_run_name


class RunnerError(RuntimeError):
    """A problem with a run request; the message says what and how to fix it."""


def store_callback(store: TableStore, meta: dict, payload_of, total: int, log):
    """Driver side: every reported evaluation becomes store rows as it arrives; a finished trial's
    last evaluation is marked final. `payload_of(trial)` gives the trial's payload (a table looks
    it up by key; a search builds it from the sampled values)."""
    import time

    from ray import tune

    t0 = time.perf_counter()

    class StoreCallback(tune.Callback):
        def __init__(self):
            self.devices, self.finished, self.launched = {}, 0, {}
            # per trial key: when its last checkpoint was reported, retries, seconds of work lost
            self.kept, self.retries, self.lost, self.where = {}, {}, {}, {}
            self.failed: set = set()      # trials that ended by reporting a failure (nan, code error)
            self.groups: dict = {}        # per trial key: its TorchTrainer's placement group (hex id)

        def on_trial_start(self, iteration, trials, trial, **info):
            key = payload_of(trial)["key"]
            self.launched[key] = time.time()
            self.where[key] = checkpoints_of(trial, meta, key)

        on_trial_restart = on_trial_start

        def on_trial_recover(self, iteration, trials, trial, **info):
            """A retry (a lost node or an error) resumes from the last checkpoint: the work since
            then, up to when the driver learnt of the failure, is done again."""
            key = payload_of(trial)["key"]
            self._drop_group(key)
            self.retries[key] = self.retries.get(key, 0) + 1
            since = self.kept.get(key, self.launched.get(key))
            self.lost[key] = self.lost.get(key, 0.0) + (time.time() - since if since else 0.0)
            self.on_trial_start(iteration, trials, trial)

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            self._kept(trial, checkpoint.path)

        def _kept(self, trial, fs_path: str) -> None:
            key = payload_of(trial)["key"]
            self.kept[key] = time.time()
            if meta.get("storage"):
                store.save_pointer(key, storage_mod.uri_of(meta["storage"], trial.storage.storage_fs_path, fs_path))

        def _drop_group(self, key) -> None:
            """Remove the placement group of a failed attempt's TorchTrainer. Its Train controller
            died with the node and cannot; the group belongs to this driver's job, so Ray would
            move its bundles to a live node and hold them there, and the retry would wait forever."""
            group = self.groups.pop(key, None)
            if group:
                import ray
                from ray._raylet import PlacementGroupID
                from ray.util.placement_group import PlacementGroup
                ray.util.remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(group))))

        def _attempts(self, key) -> dict:
            return {"checkpoints": self.where.get(key), "retries": self.retries.get(key, 0),
                    "lost_s": self.lost.get(key, 0.0)}

        def _progress(self, t, what):
            self.finished += 1
            elapsed = time.perf_counter() - t0
            eta = elapsed / self.finished * max(total - self.finished, 0)
            log(f"[{self.finished}/{total}] {t['cell_id']} seed {t['seed']}: {what}"
                f"  elapsed {elapsed:.0f} s, ETA {eta:.0f} s")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            t = payload_of(trial)
            device, node = result.get("device"), result.get("node")
            self.devices[t["key"]] = device
            if result.get("placement_group"):
                self.groups[t["key"]] = result["placement_group"]
            if result.get("checkpoint_path"):
                # A TorchTrainer trial: Train stored the checkpoint in its own run and Ray's
                # TuneReportCallback passes only its path (Tune's on_checkpoint never sees it).
                self._kept(trial, result["checkpoint_path"])
            if result.get("failed"):
                self.failed.add(t["key"])
                store.merge(t["key"], [{**failure_row(t, meta, result["failed"], result.get("error", ""), device, node),
                                        **self._attempts(t["key"])}])
            elif "record" in result:
                store.merge(t["key"], [{**row, **self._attempts(t["key"])} for row in rows_for(
                    result["record"], t, meta, device, node, self.launched.get(t["key"]))])

        def on_trial_complete(self, iteration, trials, trial, **info):
            t = payload_of(trial)
            if t["key"] not in self.failed:       # else its failure row is final, not an earlier evaluation
                store.finalize(t["key"])
            fin = store.read_trial(t["key"])
            fin = fin[fin["is_final"]]
            if len(fin) and (fin["status"] == "ok").all():
                store.drop_pointer(t["key"])      # finished: its checkpoint is not needed to resume
            if not len(fin):
                what = "no evaluation reported"
            elif (fin["status"] != "ok").any():
                what = "failed: " + str(fin["status"].iloc[0])
            else:
                what = ", ".join(f"{r.domain_key} mIoU {r.miou:.1f}" for r in fin.itertuples()) + \
                    f" at iteration {int(fin['iteration'].iloc[0])}"
            self._progress(t, what)

        def on_trial_error(self, iteration, trials, trial, **info):
            t = payload_of(trial)
            self._drop_group(t["key"])
            error = _error_text(trial)
            store.merge(t["key"], [{**failure_row(t, meta, "error", error, self.devices.get(t["key"])),
                                    **self._attempts(t["key"])}])
            self._progress(t, f"error: {error}")

    return StoreCallback()


def checkpoints_of(trial, meta: dict, key: str) -> str | None:
    """Where a trial's checkpoints live: its Tune trial folder in the storage, or for a
    TorchTrainer trial its Train run (a deterministic name, so a rerun resumes it)."""
    if not meta.get("storage"):
        return None
    if meta["workers"] >= 1:
        return storage_mod.join(meta["storage_path"], train_run_name(meta, key))
    return storage_mod.uri_of(meta["storage"], trial.storage.storage_fs_path, trial.storage.trial_fs_path)


def _error_text(trial) -> str:
    """The last line of the trial's error file (the exception), or a pointer to Ray's logs."""
    path = getattr(trial, "error_file", None)
    try:
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()] if path else []
    except OSError:               # the file may be gone with a killed node
        lines = []
    return lines[-1] if lines else "trial errored (see Ray logs)"


def run_table(spec: Spec, *, profile: str = "laptop", seeds: int | None = None,
              results_dir: str | Path = "results", resume: bool = False, address: str | None = None,
              workers_per_trial: int = 0, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
              max_concurrent: int | None = None, max_failures: int = 2, overrides: dict | None = None,
              num_cpus: int | None = None, inject_fault: dict | None = None, only: dict | None = None,
              trackers=(), storage: str | None = None, max_preemptions: int = 10, log=print) -> dict:
    """Run the missing trials of `spec`; returns {'ran', 'skipped', 'pending', 'failed', 'store'}.

    `trackers`: names from trackers.TRACKERS; each trial is also logged there.
    `storage`: Ray's storage for experiment state and checkpoints (storage.resolve: --storage,
    $UNISEMI_STORAGE, else <results>/ray); on a multi-node cluster every node must reach it.
    A trial is retried `max_failures` times after errors of the code and, besides, up to
    `max_preemptions` times after losing its node.

    Everything that can refuse the run (a results path that is a file or read-only, another live
    runner on the table, stored trials of another config, a tracker that is not installed) does so
    before Ray starts. Raises RunnerError, StoreError, lock.LockHeld, ledger.ConfigChanged or
    trackers.TrackerError, each with a one-line message."""
    import ray
    from ray import tune

    trials, pending = expand(spec, profile, seeds, overrides, only)
    trackers = check_trackers(trackers)
    check_results_dir(results_dir)
    storage = storage_mod.resolve(storage, results_dir)
    store = TableStore(results_dir, spec.suite, spec.name, log=log)
    if resume and not store.exists():
        raise RunnerError(f"--resume: nothing stored for {spec.suite}/{spec.name} under {store.dir}")
    with TableLock(store.lock_dir, log):
        todo = _trials_to_run(store, trials, pending, profile, resume, log)
        if todo:
            # datasets, weights, revision and address: one line each, before anything is built or launched
            preflight.check_run(todo, address)
            prepare_pretrained(todo, log)
            _launch(spec, todo, store, profile, results_dir, address, workers_per_trial, cpus_per_trial,
                    gpus_per_trial, max_concurrent, max_failures, num_cpus, inject_fault, log, ray, tune,
                    trackers, storage, resume, max_preemptions)
        missing = check_complete(store, trials)
        failed = in_expansion(store.final_rows(), trials)
    failed = failed[failed["status"] != "ok"] if len(failed) else failed
    return {"ran": len(todo), "skipped": len(trials) - len(todo), "pending": pending,
            "failed": len(failed), "missing": missing, "store": store, "trials": trials}


def _trials_to_run(store: TableStore, trials, pending: dict, profile: str, resume: bool, log) -> list:
    """The trials of this expansion without a final row, after the ledger's checks: the stored
    trials of these cells must have this config, and a run without --resume must start from a
    folder with no rows of this profile (rows of another profile are another table instance)."""
    stored = store.read()                      # also sets damaged files aside, so they rerun
    check_same_config(stored, trials, profile, store.dir)
    if not resume and len(stored) and (stored["profile"] == profile).any():
        raise RunnerError(f"{store.dir} already holds results of {store.suite}/{store.table}; pass --resume "
                          f"to run only the missing trials, or --report-only to rewrite the outputs")
    done = store.completed()
    todo = [t for t in trials if t.key not in done]
    log(f"{len(trials)} trials ({len(trials) - len(todo)} already stored, {len(todo)} to run)"
        + (f"; {len(pending)} cells pending: " + "; ".join(f"{c} ({r})" for c, r in pending.items())
           if pending else ""))
    ignored = describe_set_aside(set_aside(stored, trials, profile), lead="Not part of this run, left as they are")
    if ignored:
        log(ignored)
    return todo


def prepare_pretrained(trials, log=print) -> list:
    """Build each missing `model.pretrained: synthetic` cache once, on the driver with all its
    cores, before any trial starts: otherwise the first trial would build it on its one thread
    while the others wait on the cache lock. (On a cluster, point $UNISEMI_CACHE at shared storage.)"""
    import time

    from unisemi.config import build_config
    from unisemi.pretrain import cache_path, config_for, ensure_pretrained

    built, seen = [], set()
    for t in trials:
        if str(t.config["model"].get("pretrained", "none")).strip().lower() != "synthetic":
            continue
        model_cfg = build_config(t.config, f"trial {t.key}").model
        path = cache_path(config_for(model_cfg))
        if path in seen:
            continue
        seen.add(path)
        if not path.exists():
            log(f"building the pretrained stand-in {path.name} (python -m unisemi pretrain) ...")
            t0 = time.perf_counter()
            ensure_pretrained(model_cfg)
            log(f"built {path} in {time.perf_counter() - t0:.0f} s")
            built.append(path)
    return built


def _launch(spec, todo, store, profile, results_dir, address, workers_per_trial, cpus_per_trial,
            gpus_per_trial, max_concurrent, max_failures, num_cpus, inject_fault, log, ray, tune,
            trackers=(), storage=None, resume=False, max_preemptions=10):
    try:
        request = ray_session.trial_resources(workers_per_trial, cpus_per_trial, gpus_per_trial)
    except ValueError as exc:
        raise RunnerError(str(exc)) from None
    storage = storage or storage_mod.resolve(None, results_dir)
    meta = {"run_id": ray_session.new_run_id(), "suite": spec.suite, "table": spec.name, "profile": profile,
            "git_rev": git_revision(), "workers": workers_per_trial, "cpus_per_worker": cpus_per_trial,
            "gpus_per_worker": gpus_per_trial, "storage": storage,
            "storage_path": storage_mod.join(storage, "train"),
            "inject_fault": inject_fault, "max_failures": max_failures,
            "env": {k: os.environ[k] for k in ("UNISEMI_DATA",) if os.environ.get(k)}}
    with ray_session.ray_session(address, num_cpus):
        growth = ray_session.detect_growth()
        ray_session.check_placement(request, growth, RunnerError, log)
        t0 = time.perf_counter()
        how = storage_mod.check_storage(storage)
        log(f"storage {storage}: {how} (checked in {time.perf_counter() - t0:.1f} s)")
        meta["error_ledger"] = f"unisemi-errors-{meta['run_id']}"
        ledger = start_error_ledger(meta["error_ledger"])   # noqa: F841  (lives as long as this handle)
        payload = {t.key: t.payload() for t in todo}
        for p in payload.values():
            ray_session.for_resources(p["config"], request)
            p["resume_checkpoint"] = store.pointer(p["key"]) if resume else None
        concurrency = max_concurrent or ray_session.default_concurrency(request, len(todo), growth)
        def payload_of(trial):
            return payload[trial.config["trial"]]

        name = f"{spec.suite}-{spec.name}-{meta['run_id']}"
        callbacks = [store_callback(store, meta, payload_of, len(payload), log)]
        callbacks.append(ray_session.pending_reporter(request, growth, log))
        callbacks += build_trackers(trackers, results_dir, experiment=name, suite=spec.suite, table=spec.name,
                                    payload_of=payload_of, tags=tracker_tags(meta))
        tuner = tune.Tuner(
            ray_session.trainable(run_trial, request, trials=payload, meta=meta),
            param_space={"trial": tune.grid_search([t.key for t in todo])},
            tune_config=ray_session.tune_config(concurrency, request),
            run_config=ray_session.run_config(name, storage, max_failures + max_preemptions, callbacks))
        log(f"running {len(todo)} trials, {concurrency} at a time "
            f"({'in-process fit' if workers_per_trial == 0 else f'TorchTrainer x{workers_per_trial}'})")
        tuner.fit()


def check_complete(store: TableStore, trials) -> list[str]:
    """Trial keys without exactly one final row; duplicates are a bug and raise."""
    fin = store.final_rows()
    counts = fin.groupby(["trial", "domain"]).size() if len(fin) else None
    if counts is not None and (counts > 1).any():
        dup = counts[counts > 1]
        raise RunnerError(f"duplicate final rows in {store.dir}: {dup.to_dict()}")
    have = set(fin["trial"]) if len(fin) else set()
    return [t.key for t in trials if t.key not in have]


# Trials whose configs agree but for their seeds cost the same to run: `config_identity`, the
# same hash that is the config part of every trial key, so "same config" means one thing everywhere.
TIME_PARTS = ("launch_s", "setup_s", "data_s", "train_s", "eval_s")


def stored_costs(store: TableStore) -> dict:
    """{config_identity: mean seconds of each time part} over the stored finished trials (final rows)."""
    import json
    fin = store.final_rows()
    if not len(fin):
        return {}
    fin = fin[fin["status"] == "ok"].drop_duplicates("trial")
    out = {}
    for key, group in fin.groupby(fin["config_json"].map(lambda j: config_identity(json.loads(j)))):
        out[key] = {p: float(group[p].fillna(0.0).mean()) for p in TIME_PARTS}
    return out


def estimate(trials, stored: dict, probe) -> tuple[list[float], dict, dict | None]:
    """Seconds per trial: the stored time split of finished trials with the same config (seeds
    aside), else `probe(trial)` (a short calibration run), measured once per distinct config.
    Also returns how many trials each source priced, and the mean stored split over the configs used."""
    probed, seconds, sources, used = {}, [], {"stored": 0, "probe": 0}, {}
    for t in trials:
        key = config_identity(t.config)
        if key in stored:
            used[key] = stored[key]
            seconds.append(sum(stored[key].values()))
            sources["stored"] += 1
        else:
            if key not in probed:
                probed[key] = probe(t)
            seconds.append(probed[key])
            sources["probe"] += 1
    split = {p: sum(u[p] for u in used.values()) / len(used) for p in TIME_PARTS} if used else None
    return seconds, sources, split


def makespan(seconds: list[float], slots: int) -> float:
    """Longest-first greedy packing onto `slots` parallel slots (what Tune's FIFO order nears)."""
    load = [0.0] * max(1, slots)
    for s in sorted(seconds, reverse=True):
        load[load.index(min(load))] += s
    return max(load)


def describe(trials, pending: dict, spec: Spec, workers: int, cpus: float, gpus: float,
             seconds: list[float] | None = None, sources: dict | None = None,
             split: dict | None = None) -> str:
    cells = {t.cell_id for t in trials}
    seeds = sorted({t.seed for t in trials})
    n = len(trials)
    lines = [f"{len(cells)} cells x {len(seeds)} seeds" +
             (" (per-domain trials for some cells)" if n != len(cells) * len(seeds) else "") +
             f" = {n} trials to run"]
    if workers >= 1:
        lines.append(f"resources per trial: TorchTrainer with {workers} workers x "
                     f"({cpus:g} CPU{f', {gpus:g} GPU' if gpus else ''})")
    else:
        lines.append(f"resources per trial: {cpus:g} CPU{f', {gpus:g} GPU' if gpus else ''} (in-process fit)")
    if seconds:
        devices = max(1, workers)
        slots = max(1, int((os.cpu_count() or 1) // (cpus * devices)))
        how = " and ".join(f"{k} ({v} trials)" for k, v in (
            ("stored time splits of finished trials with the same config", (sources or {}).get("stored", 0)),
            ("a 20-iteration probe run", (sources or {}).get("probe", 0))) if v)
        lines.append(f"estimated cost: {sum(seconds) * devices / 3600:.3f} device-hours; about "
                     f"{makespan(seconds, slots) / 60:.1f} min on this machine's {slots} slot(s), "
                     f"from {how}")
        if split:
            lines.append("stored time split per trial (mean): " +
                         ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in split.items()))
    for cid, reason in pending.items():
        lines.append(f"pending cell {cid}: {reason}")
    return "\n".join(lines)


def dry_run(spec: Spec, store: TableStore, *, profile: str = "laptop", seeds: int | None = None,
            overrides: dict | None = None, only: dict | None = None, resume: bool = False,
            workers: int = 0, cpus: float = 1.0, gpus: float = 0.0) -> str:
    """What `--dry-run` prints. Laptop: stored time splits, else a probe run. Paper: no probe (the
    data is not here, and a CPU step says nothing of a GPU's): GPU-measured step times of stored
    trials, else FLOPs per step on a stated GPU class (cost.py), without reading any data."""
    from unisemi.ablation import cost
    trials, pending = expand(spec, profile, seeds, overrides, only)
    if resume:
        done = store.completed()
        trials = [t for t in trials if t.key not in done]
    if profile != "paper":
        seconds, sources, split = estimate(trials, stored_costs(store), probe_seconds)
        return describe(trials, pending, spec, workers, cpus, gpus, seconds, sources, split)
    priced = cost.price_trials(trials, store)
    return describe(trials, pending, spec, workers, cpus, gpus) + "\n" + cost.describe_cost(priced)


def probe_seconds(trial, iterations: int = 20) -> float:
    """Seconds one trial would take, from a short run of its config (setup + steps + one eval)."""
    import time

    from unisemi.config import build_config, with_overrides
    from unisemi.train import fit

    cfg = build_config(trial.config, "probe")
    total = cfg.train.iterations
    short = with_overrides(cfg, {"train": {"iterations": iterations, "eval_every": iterations,
                                           "threads": cfg.train.threads or 1, "out_dir": ""}})
    t0 = time.perf_counter()
    res = fit(short)
    wall = time.perf_counter() - t0
    per_step = res["timing"]["train"] / iterations + res["timing"]["data"] / iterations
    evals = max(1, total // cfg.train.eval_every)
    return res["timing"]["setup"] + per_step * total + res["timing"]["eval"] * evals + (wall - sum(
        res["timing"][k] for k in ("setup", "train", "data", "eval")))
