"""How much of a table run is orchestration: `python benchmarks/orchestration.py [--variant V]`.

Runs a small table (4 cells x 2 seeds, tiny model, each trial about 17 s of `fit`) through
`unisemi.ablation.runner.run_table` on a fresh local Ray (2 CPUs, two 1-CPU trials at a time) and
compares the makespan with the ideal, Σ trial wall time / 2 slots, where a trial's wall time is the
`wall_s` of its final stored row (fit's own setup + data + train + eval clocks).

Each trial is timed at five points, all `time.time()` on one machine: the driver's `on_trial_start`,
entry into the trainable in the worker (after the actor's process is up), after importing the
training code (torch, unisemi), the trainable's return, and the driver's `on_trial_complete`. The
timers are a wrapper around `runner.run_trial` and a subclass of its store callback, patched in here.

Variants:
  runner     the runner as shipped: in-process trials reuse their actor (TuneConfig(reuse_actors))
             and Ray workers import the training code as they start (worker_process_setup_hook)
  no-reuse   a fresh actor process per trial and no warm imports (the runner's first version),
             for comparison
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SLOTS = 2
SETTINGS = {"data.size": [32, 64], "data.n_labelled": 8, "data.batch_size": 2, "data.val_images": 4,
            "model.width": 8, "train.iterations": 2000, "train.eval_every": 1000, "train.threads": 1}
LRS = {"a": 0.005, "b": 0.01, "c": 0.02, "d": 0.04}


def write_spec(root: Path) -> Path:
    import yaml
    spec = {"title": "orchestration benchmark", "preset": "supervised_city", "seeds": 2,
            "domains": ["main"], "profiles": {"laptop": {"domains": {"main": "city"}, "set": SETTINGS}},
            "axes": {"variant": {c: {"set": {"optim.lr": lr}} for c, lr in LRS.items()}}}
    path = root / "bench" / "orchestration.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _process_start() -> float | None:
    """This process's start as a Unix time (Linux /proc), to split actor start from imports."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines()
                     if ln.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration):
        return None


def timed_run_trial(params, trials, meta):
    """Worker side: the runner's trainable, with timestamps written beside the store."""
    import importlib
    entered = time.time()
    fresh = "torch" not in sys.modules          # False in a reused actor or a warmed worker
    run_trial = importlib.import_module("unisemi.ablation.trial").run_trial
    imported = time.time()
    try:
        return run_trial(params, trials, meta)
    finally:
        out = Path(meta["storage_path"]).parent / "bench-times"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{params['trial']}-{os.getpid()}-{entered:.3f}.json").write_text(json.dumps({
            "trial": params["trial"], "pid": os.getpid(), "process_start": _process_start(),
            "entered": entered, "imported": imported, "returned": time.time(), "fresh_process": fresh}))


def patch_runner(variant: str, driver_events: list) -> None:
    from ray import tune

    from unisemi.ablation import runner

    runner.run_trial = timed_run_trial
    original = runner.store_callback

    def timed_store_callback(store, meta, payload_of, total, log):
        base = type(original(store, meta, payload_of, total, log))

        class Timed(base):
            def on_trial_start(self, iteration, trials, trial, **info):
                driver_events.append(("start", trial.config["trial"], time.time()))

            def on_trial_complete(self, iteration, trials, trial, **info):
                driver_events.append(("complete", trial.config["trial"], time.time()))
                super().on_trial_complete(iteration, trials, trial, **info)

        return Timed()

    runner.store_callback = timed_store_callback
    if variant == "no-reuse":
        plain = tune.TuneConfig

        def without_reuse(*args, **kwargs):
            kwargs["reuse_actors"] = False
            return plain(*args, **kwargs)

        tune.TuneConfig = without_reuse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("runner", "no-reuse"), default="runner")
    parser.add_argument("--keep", default=None, help="results directory to keep (default: a temp dir)")
    args = parser.parse_args()

    import ray

    from unisemi.ablation.runner import run_table
    from unisemi.ablation.spec import load_spec
    from unisemi.ablation.store import ray_storage

    root = Path(args.keep or tempfile.mkdtemp(prefix="orchestration-"))
    spec = load_spec(str(write_spec(root / "specs")))
    events: list = []
    patch_runner(args.variant, events)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")

    t_before_init = time.time()
    env = {"worker_process_setup_hook": "unisemi.ablation.trial.warm_imports"} if args.variant == "runner" else None
    ray.init(num_cpus=SLOTS, include_dashboard=False, log_to_driver=False, runtime_env=env)
    t_after_init = time.time()
    res = run_table(spec, results_dir=root / "results", max_concurrent=SLOTS, cpus_per_trial=1.0,
                    log=lambda *a: None)
    t_end = time.time()
    ray.shutdown()

    df = res["store"].read()
    final = df[df["is_final"]].set_index("trial")
    assert res["ran"] == len(final) == 8 and res["failed"] == 0, res
    worker = {}
    for f in (ray_storage(root / "results") / "bench-times").glob("*.json"):
        w = json.loads(f.read_text())
        worker.setdefault(w["trial"], []).append(w)
    starts = {k: t for e, k, t in events if e == "start"}
    completes = {k: t for e, k, t in events if e == "complete"}

    # Tune's on_trial_start fires only once the trial's actor is up, so the makespan starts at the
    # first entry into a trainable; the run_table figure adds Tuner setup, actor start and imports.
    entries = {k: sorted(v, key=lambda x: x["entered"])[-1] for k, v in worker.items()}
    last = max(completes.values())
    first_entry = min(w["entered"] for w in entries.values())
    makespan = last - first_entry
    run_wall = t_end - t_after_init
    with_init = t_end - t_before_init
    sum_wall = float(final["wall_s"].sum())
    ideal = sum_wall / SLOTS
    print(f"variant {args.variant}: {len(final)} trials ({len(LRS)} cells x 2 seeds), {SLOTS} concurrent "
          f"1-CPU trials, {SETTINGS['train.iterations']} iterations each; load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"ray.init                          {t_after_init - t_before_init:6.1f} s")
    print(f"run_table call -> first trial enters its trainable {first_entry - t_after_init:6.1f} s  "
          f"(plan, store, Tuner setup, actor start, imports before entry)")
    print(f"makespan, first trainable entry -> last trial end {makespan:6.1f} s")
    print(f"makespan, run_table call -> return                {run_wall:6.1f} s")
    print(f"makespan incl. Ray start                           {with_init:6.1f} s  (ray.init -> run_table returns)")
    print(f"Σ trial wall time (final wall_s)  {sum_wall:6.1f} s  (of which fit setup {final['setup_s'].sum():.1f} s)")
    print(f"ideal = Σ / {SLOTS} slots              {ideal:6.1f} s")
    print(f"ratio makespan / ideal: first entry -> last end {makespan / ideal:.2f}, run_table {run_wall / ideal:.2f}, "
          f"incl. Ray start {with_init / ideal:.2f}  (goal <= 1.11)")

    print("\nper trial (s): Tune on_trial_start->entry | import torch+unisemi | fit (wall_s) | "
          "other in trainable | return->driver complete | imports paid in the trial")
    rows = []
    for key in sorted(starts, key=starts.get):
        w = sorted(worker.get(key, []), key=lambda x: x["entered"])[-1]
        launch = w["entered"] - starts[key]
        imp = w["imported"] - w["entered"]
        wall = float(final.loc[key, "wall_s"])
        inside = w["returned"] - w["imported"] - wall
        tail = completes[key] - w["returned"]
        proc = (w["entered"] - w["process_start"]) if w["process_start"] and w["fresh_process"] else None
        rows.append((launch, imp, wall, inside, tail))
        print(f"  {final.loc[key, 'cell']:>10s} seed {int(final.loc[key, 'seed'])}: {launch:5.2f} | {imp:5.2f} | "
              f"{wall:5.2f} (setup {final.loc[key, 'setup_s']:.2f}) | {inside:5.2f} | {tail:5.2f} | "
              f"{'yes' if w['fresh_process'] else 'no'}"
              + (f", process up {proc:.2f} s before entry" if proc is not None else ""))
    n = len(rows)
    over = [r[0] + r[1] + r[3] + r[4] for r in rows]
    span = sum(completes[k] - starts[k] for k in starts)
    print(f"\nmean per-trial overhead outside fit's clocks: {sum(over) / n:.2f} s "
          f"(launch {sum(r[0] for r in rows) / n:.2f}, imports {sum(r[1] for r in rows) / n:.2f}, "
          f"in trainable {sum(r[3] for r in rows) / n:.2f}, completion {sum(r[4] for r in rows) / n:.2f})")
    print(f"mean fit setup (data generation, model build) inside wall_s: {final['setup_s'].mean():.2f} s")
    ent, com = sorted(w["entered"] for w in entries.values()), sorted(completes.values())
    gaps = [ent[i] - com[i - SLOTS] for i in range(SLOTS, len(ent))]
    print(f"slot hand-over, a trial's end -> the next trial's trainable entry: mean {sum(gaps) / len(gaps):.2f} s, "
          f"max {max(gaps):.2f} s (a new actor process per trial unless actors are reused)")
    print(f"slot idle time: {SLOTS * run_wall - span:.1f} of {SLOTS * run_wall:.1f} slot-seconds of run_table")
    print(f"results under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
