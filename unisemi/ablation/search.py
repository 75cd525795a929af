"""Hyperparameter search: `python -m unisemi tune search_spaces/<x>.yaml`.

Ray Tune runs one trial per configuration that Optuna's TPE sampler (seeded) proposes, and the ASHA
scheduler stops weak trials early on the metric of each evaluation (`training_iteration` counts
evaluations, since `fit` reports once every `train.eval_every` iterations). Trials run the same
`unisemi.ablation.trial.run_trial` as the ablation tables, and every evaluation lands in the same
Parquet store (suite `search`, table = the space file's stem), so a search is read, resumed by hand
and compared with the same tools as a table.

A space file (YAML):

    title: what is searched and why
    preset: supervised_city          # preset name or config YAML path
    set: {train.iterations: 600}     # fixed dotted overrides for every trial
    space:                           # dotted config key -> distribution
      optim.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}
      data.batch_size: {type: choice, values: [4, 8, 16]}
    samples: 20                      # trials (default 20; --samples overrides)
    metric: miou_mean                # maximised
    seed: 0                          # seeds the sampler
    asha: {grace_period: 1, reduction_factor: 3}   # optional

Sampling is reproducible for a seed as long as TPE is still in its random start-up phase (the
first 10 trials); after that the proposals depend on which results have arrived, which with more
than one concurrent trial depends on timing. `--max-concurrent 1` makes a whole search repeatable.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from unisemi.ablation import preflight, ray_session
from unisemi.ablation.spec import check_keys, dotted_to_nested, key_error
from unisemi.ablation import storage as storage_mod
from unisemi.ablation.store import StoreError, TableStore, check_results_dir
from unisemi.ablation.trackers import build_trackers, check_trackers, tracker_tags
from unisemi.ablation.trial import git_revision, run_trial
from unisemi.config import (ConfigError, _merge, all_keys, build_config, config_hash, load_values, to_dict,
                            yaml_error_text)

SEARCH_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
SUITE = "search"
SPACE_KEYS = {"title", "preset", "set", "space", "samples", "metric", "seed", "asha"}
DIST_TYPES = ("loguniform", "uniform", "int", "choice")
DIST_KEYS = {"type", "low", "high", "values"}
ASHA_KEYS = {"grace_period", "reduction_factor"}
# What run_trial reports to Tune at every evaluation (the scheduler and searcher need it there).
METRICS = ("miou_mean",)
# ASHA's budget is the number of evaluations; searching these would change it per trial.
BUDGET_KEYS = ("train.iterations", "train.eval_every")


class SearchError(ValueError):
    """A problem with a space file or search request; one line naming the file, key and value."""


@dataclass
class SearchSpace:
    name: str
    path: Path
    raw: dict
    base: dict          # preset values with `set:` merged on top (nested)

    @property
    def title(self) -> str:
        return self.raw["title"]

    @property
    def space(self) -> dict:
        return self.raw["space"]

    @property
    def samples(self) -> int:
        return int(self.raw.get("samples", 20))

    @property
    def metric(self) -> str:
        return self.raw.get("metric", "miou_mean")

    @property
    def seed(self) -> int:
        return int(self.raw.get("seed", 0))

    @property
    def asha(self) -> dict:
        return {"grace_period": 1, "reduction_factor": 3, **(self.raw.get("asha") or {})}

    def evaluations(self) -> int:
        """How many times one trial reports: ASHA's max_t."""
        train = build_config(self.base).train
        return train.iterations // train.eval_every + (1 if train.iterations % train.eval_every else 0)


# ----------------------------------------------------------------------------------------------
# Loading and validation

def resolve(name: str) -> Path:
    """A YAML path as given, or a bare name looked up in search_spaces/."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = SEARCH_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in SEARCH_DIR.glob("*.yaml"))
        raise SearchError(f"{path}: search space file not found (search_spaces/: {', '.join(known) or 'none'})")
    return path


def _fail(path, key: str, msg: str) -> SearchError:
    return key_error(path, key, msg, SearchError)


def _check_keys(path, where: str, got: dict, allowed: set) -> None:
    check_keys(path, where, got, allowed, SearchError)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_space(name: str, overrides: dict | None = None) -> SearchSpace:
    """Read and validate a space file; `overrides` (nested, from --set) go on top of its `set:`."""
    path = resolve(name)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SearchError(yaml_error_text(path, exc)) from None
    if not isinstance(raw, dict):
        raise SearchError(f"{path}: expected a mapping, got {type(raw).__name__}")
    base = validate_space(path, raw, overrides)
    return SearchSpace(path.stem, path, raw, base)


def validate_space(path: Path, raw: dict, overrides: dict | None = None) -> dict:
    """Check a space file; returns the base config values (preset + set + overrides)."""
    _check_keys(path, "", raw, SPACE_KEYS)
    for key in ("title", "preset", "space"):
        if key not in raw:
            raise _fail(path, key, "missing (every search space needs title, preset and space)")
    if not isinstance(raw["title"], str):
        raise _fail(path, "title", f"expected a string, got {raw['title']!r}")
    samples = raw.get("samples", 20)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise _fail(path, "samples", f"{samples!r} is not valid, expected an integer >= 1")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _fail(path, "seed", f"expected an integer, got {seed!r}")
    if raw.get("metric", "miou_mean") not in METRICS:
        raise _fail(path, "metric", f"{raw['metric']!r} is not reported by trials, expected one of {', '.join(METRICS)}")
    asha = raw.get("asha") or {}
    if not isinstance(asha, dict):
        raise _fail(path, "asha", f"expected a mapping, got {asha!r}")
    _check_keys(path, "asha.", asha, ASHA_KEYS)
    if not isinstance(asha.get("grace_period", 1), int) or asha.get("grace_period", 1) < 1:
        raise _fail(path, "asha.grace_period", f"{asha['grace_period']!r} is not valid, expected an integer >= 1")
    if not _is_number(asha.get("reduction_factor", 3)) or asha.get("reduction_factor", 3) <= 1:
        raise _fail(path, "asha.reduction_factor", f"{asha['reduction_factor']!r} is not valid, expected a number > 1")

    fixed = raw.get("set") or {}
    if not isinstance(fixed, dict):
        raise _fail(path, "set", f"expected a mapping of dotted config key -> value, got {fixed!r}")
    keys = set(all_keys())
    for k in fixed:
        _check_config_key(path, "set", k, keys)
    try:
        base = _merge(load_values(raw["preset"]), dotted_to_nested(fixed))
    except ConfigError as exc:
        raise _fail(path, "preset", str(exc)) from None
    base = _merge(base, overrides or {})
    try:
        build_config(base, "")
    except ConfigError as exc:
        raise _fail(path, "set", f"the fixed config (set, then --set) is not valid: {exc}") from None

    space = raw["space"]
    if not isinstance(space, dict) or not space:
        raise _fail(path, "space", f"expected a non-empty mapping of dotted config key -> distribution, got {space!r}")
    for k, dist in space.items():
        where = f"space.{k}"
        _check_config_key(path, "space", k, keys)
        if k in BUDGET_KEYS:
            raise _fail(path, where, "cannot be searched: ASHA's budget is the number of evaluations, "
                                     "fix it in 'set' instead")
        if k in fixed:
            raise _fail(path, where, "is both fixed in 'set' and searched; keep one")
        for value in _check_distribution(path, where, dist):
            try:
                build_config(_merge(base, dotted_to_nested({k: value})), "")
            except ConfigError as exc:
                raise _fail(path, where, f"value {value!r} does not give a valid config: {exc}") from None
    return base


def _check_config_key(path, section: str, key, keys: set) -> None:
    if key not in keys:
        close = difflib.get_close_matches(str(key), sorted(keys), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise _fail(path, f"{section}.{key}", f"unknown config key{hint}")


def _check_distribution(path, where: str, dist) -> list:
    """Validate one distribution; returns the values to try in a config (bounds or every choice)."""
    if not isinstance(dist, dict):
        raise _fail(path, where, f"expected a distribution mapping like {{type: loguniform, low: ..., high: ...}}, got {dist!r}")
    _check_keys(path, f"{where}.", dist, DIST_KEYS)
    kind = dist.get("type")
    if kind not in DIST_TYPES:
        close = difflib.get_close_matches(str(kind), DIST_TYPES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise _fail(path, f"{where}.type", f"{kind!r} is not a distribution type{hint}; expected one of "
                                           f"{', '.join(DIST_TYPES)}")
    if kind == "choice":
        values = dist.get("values")
        if not isinstance(values, list) or not values:
            raise _fail(path, f"{where}.values", f"expected a non-empty list, got {values!r}")
        for v in values:
            if not (v is None or isinstance(v, (bool, int, float, str))):
                raise _fail(path, f"{where}.values", f"{v!r} is not a scalar (Optuna choices are "
                                                     f"numbers, strings, booleans or null)")
        extra = {"low", "high"} & set(dist)
        if extra:
            raise _fail(path, f"{where}.{sorted(extra)[0]}", "not used by type choice (give values)")
        return list(values)
    if "values" in dist:
        raise _fail(path, f"{where}.values", f"not used by type {kind} (give low and high)")
    for bound in ("low", "high"):
        if bound not in dist:
            raise _fail(path, f"{where}.{bound}", f"missing (type {kind} needs low and high)")
        v = dist[bound]
        if kind == "int" and not (isinstance(v, int) and not isinstance(v, bool)):
            raise _fail(path, f"{where}.{bound}", f"expected an integer for type int, got {v!r}")
        if not _is_number(v):
            raise _fail(path, f"{where}.{bound}", f"expected a number, got {v!r}")
    low, high = dist["low"], dist["high"]
    if low >= high:
        raise _fail(path, where, f"low {low!r} >= high {high!r}; expected low < high")
    if kind == "loguniform" and low <= 0:
        raise _fail(path, f"{where}.low", f"{low!r} is not valid for loguniform, expected > 0")
    return [low, high]


# ----------------------------------------------------------------------------------------------
# Sampler, trials and payloads

def optuna_space(space: SearchSpace) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    out = {}
    for k, d in space.space.items():
        if d["type"] == "loguniform":
            out[k] = FloatDistribution(float(d["low"]), float(d["high"]), log=True)
        elif d["type"] == "uniform":
            out[k] = FloatDistribution(float(d["low"]), float(d["high"]))
        elif d["type"] == "int":
            out[k] = IntDistribution(int(d["low"]), int(d["high"]))     # both bounds included
        else:
            out[k] = CategoricalDistribution(list(d["values"]))
    return out


def make_searcher(space: SearchSpace, seed: int | None = None):
    """OptunaSearch with a seeded TPE sampler over the space's distributions."""
    import optuna
    from optuna.samplers import TPESampler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    class _Search(OptunaSearch):
        # A trial whose loss went non-finite reports {'failed': 'nan'} without the metric
        # (run_trial); Optuna then records it as pruned at its last evaluation instead of failing.
        def on_trial_result(self, trial_id, result):
            if self.metric in result:
                super().on_trial_result(trial_id, result)

    return _Search(space=optuna_space(space), metric=space.metric, mode="max",
                   sampler=TPESampler(seed=space.seed if seed is None else seed))


def preview(space: SearchSpace, n: int, seed: int | None = None) -> list[dict]:
    """The first `n` configurations the seeded sampler proposes when no result has come back yet:
    what a search starts with (all of them while TPE is in its random start-up phase)."""
    searcher = make_searcher(space, seed)
    return [searcher.suggest(f"preview_{i}") for i in range(n)]


def trial_key(meta: dict, trial_id: str) -> str:
    ident = json.dumps([meta["suite"], meta["table"], meta["run_id"], trial_id])
    return hashlib.sha1(ident.encode()).hexdigest()[:16]


def cell_label(sampled: dict) -> str:
    return ",".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sampled.items())


def make_payload(base: dict, sampled: dict, trial_id: str, meta: dict, threads: int = 1) -> dict:
    """A trial in the format of `spec.Trial.payload()`, with cell = the sampled values. Built from the
    same inputs on the driver and in the trial, so both sides agree on key and config."""
    values = _merge(base, dotted_to_nested(sampled))
    values = _merge(values, {"train": {"progress": False}})
    cfg = build_config(values, f"search {meta['table']} trial {trial_id}")
    config = to_dict(cfg)
    if not config["train"]["threads"]:       # one thread per CPU slot, as the table runner does
        config["train"]["threads"] = threads
    domains = list(config["data"]["domains"])
    return {"key": trial_key(meta, trial_id), "cell": dict(sampled), "cell_id": cell_label(sampled),
            "seed": config["train"]["seed"], "split_seed": config["data"]["split_seed"],
            "domain_keys": tuple(domains), "domain_map": {d: d for d in domains},
            "config": config, "config_hash": config_hash(build_config(config))}


def search_trial(params: dict, base: dict, keys: list, meta: dict, threads: int) -> None:
    """Tune trainable: the sampled `params` become a payload, then the table runner's run_trial."""
    from ray import tune

    payload = make_payload(base, {k: params[k] for k in keys}, tune.get_context().get_trial_id(),
                           meta, threads)
    run_trial({"trial": payload["key"]}, {payload["key"]: payload}, meta)


def _search_callback(store: TableStore, base: dict, keys: list, meta: dict, threads: int, total: int, log):
    """The table runner's store callback, with each payload rebuilt from the trial's sampled
    values (Optuna samples them at run time) instead of looked up by key."""
    from unisemi.ablation.runner import store_callback

    payloads: dict = {}

    def payload_of(trial) -> dict:
        if trial.trial_id not in payloads:
            payloads[trial.trial_id] = make_payload(
                base, {k: trial.config[k] for k in keys}, trial.trial_id, meta, threads)
        return payloads[trial.trial_id]

    callback = store_callback(store, meta, payload_of, total, log)
    callback.payload_of = payload_of          # the trackers name each trial by the same payload
    return callback


# ----------------------------------------------------------------------------------------------
# Running a search

def run_search(space: SearchSpace, *, samples: int | None = None, results_dir: str | Path = "results",
               max_concurrent: int | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
               workers_per_trial: int = 0, address: str | None = None, max_failures: int = 2,
               num_cpus: int | None = None, reuse_actors: bool = True, trackers=(), storage: str | None = None,
               log=print) -> dict:
    """Run a search; returns {'store', 'leaderboard', 'best', 'run_id'}. Resources per trial as in
    the table runner: in-process on `cpus_per_trial` / `gpus_per_trial`, or a TorchTrainer of
    `workers_per_trial` workers of that much each. `trackers`: as in run_table."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    samples = space.samples if samples is None else samples
    if samples < 1:
        raise SearchError(f"--samples {samples}: expected >= 1")
    try:
        request = ray_session.trial_resources(workers_per_trial, cpus_per_trial, gpus_per_trial)
    except ValueError as exc:
        raise SearchError(str(exc)) from None
    trackers = check_trackers(trackers)
    try:
        check_results_dir(results_dir)
    except StoreError as exc:          # the `tune` command reports SearchError in one line
        raise SearchError(str(exc)) from None
    store = TableStore(results_dir, SUITE, space.name)
    if store.exists():
        raise SearchError(f"{store.dir} already holds a search of {space.name}; pass another --results "
                          f"directory or remove that one (a search's sampler state cannot be resumed)")
    try:
        storage = storage_mod.resolve(storage, results_dir)      # --storage, $UNISEMI_STORAGE, <results>/ray
    except storage_mod.StorageError as exc:
        raise SearchError(str(exc)) from None
    # The same adjustment as a table's trials (threads per CPU, CUDA when GPUs are reserved), made on
    # the base so that the driver and the trial build the same payload from it.
    base = _base_for(space.base, request)
    threads = base["train"].get("threads") or 0        # TorchTrainer workers keep torch's default
    # the base's datasets and weights (the space samples hyperparameters, not paths), revision, address
    preflight.check_configs([base], address)
    meta = {"run_id": ray_session.new_run_id(), "suite": SUITE, "table": space.name, "profile": SUITE,
            "git_rev": git_revision(), "workers": workers_per_trial, "cpus_per_worker": cpus_per_trial,
            "gpus_per_worker": gpus_per_trial, "storage": storage, "storage_path": storage_mod.join(storage, "train"),
            "inject_fault": None}
    keys = list(space.space)
    max_t = space.evaluations()
    # A non-finite trial's last report has no metric (see make_searcher); Tune would reject it.
    with ray_session.ray_session(address, num_cpus, env={"TUNE_DISABLE_STRICT_METRIC_CHECKING": "1"}):
        growth = ray_session.detect_growth()
        ray_session.check_placement(request, growth, SearchError, log)
        try:
            log(f"storage {storage}: {storage_mod.check_storage(storage)}")
        except storage_mod.StorageError as exc:
            raise SearchError(str(exc)) from None
        concurrency = max_concurrent or ray_session.default_concurrency(request, samples, growth)
        name = f"{SUITE}-{space.name}-{meta['run_id']}"
        store_cb = _search_callback(store, base, keys, meta, threads, samples, log)
        callbacks = [store_cb]
        callbacks.append(ray_session.pending_reporter(request, growth, log))
        callbacks += build_trackers(trackers, results_dir, experiment=name, suite=SUITE, table=space.name,
                                    payload_of=store_cb.payload_of, tags=tracker_tags(meta))
        asha = ASHAScheduler(time_attr="training_iteration", max_t=max_t, **space.asha)
        tuner = tune.Tuner(
            ray_session.trainable(search_trial, request, base=base, keys=keys, meta=meta, threads=threads),
            tune_config=ray_session.tune_config(concurrency, request, reuse_actors, metric=space.metric,
                                                mode="max", search_alg=make_searcher(space), scheduler=asha,
                                                num_samples=samples),
            run_config=ray_session.run_config(name, storage, max_failures, callbacks))
        log(f"searching {', '.join(keys)}: {samples} trials, {concurrency} at a time "
            f"({request.describe()}), TPE seed {space.seed}, ASHA over {max_t} evaluations (grace "
            f"{space.asha['grace_period']}, reduction {space.asha['reduction_factor']:g}), metric "
            f"{space.metric} (max)")
        tuner.fit()
    board = leaderboard(store.read(), keys, max_t)
    return {"store": store, "leaderboard": board, "run_id": meta["run_id"],
            "best": board.iloc[0].to_dict() if len(board) and board.iloc[0]["status"] == "ok" else None}


def _base_for(base: dict, request) -> dict:
    """The space's base config with the resource adjustments of `ray_session.for_resources`."""
    config = json.loads(json.dumps(base))
    config.setdefault("train", {})
    return ray_session.for_resources(config, request)


def leaderboard(df, keys: list, max_t: int | None = None):
    """One line per trial, best first: trials that ran their whole budget, then those ASHA stopped,
    then failures; within each, by the final evaluation's mIoU (mean over domains)."""
    import pandas as pd

    cols = ["rank", "trial", *keys, "miou_mean", "evaluations", "iteration", "stopped_early", "status",
            "wall_s", "config_hash"]
    if not len(df):
        return pd.DataFrame(columns=cols)
    lines = []
    for key, g in df.groupby("trial", sort=False):
        fin = g[g["is_final"]]
        ok = g[g["status"] == "ok"]
        cell = json.loads(g["cell_json"].iloc[0])
        status = "ok" if len(fin) and (fin["status"] == "ok").all() else (
            str(fin["status"].iloc[0]) if len(fin) else "unfinished")
        line = {"trial": key, **{k: cell.get(k) for k in keys},
                "miou_mean": float(fin["miou"].mean()) if status == "ok" else math.nan,
                "evaluations": int(ok["iteration"].nunique()),
                "iteration": int(fin["iteration"].max()) if status == "ok" else None,
                "status": status,
                "wall_s": float(fin["wall_s"].max()) if status == "ok" else math.nan,
                "config_hash": g["config_hash"].iloc[0]}
        line["stopped_early"] = bool(status == "ok" and max_t is not None and line["evaluations"] < max_t)
        lines.append(line)
    board = pd.DataFrame(lines)
    board["_order"] = [0 if s == "ok" and not e else 1 if s == "ok" else 2
                       for s, e in zip(board["status"], board["stopped_early"])]
    board = board.sort_values(["_order", "miou_mean"], ascending=[True, False], kind="stable",
                              na_position="last")
    board = board.drop(columns="_order").reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board[cols]


def _md_value(v) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4g}"
    return "–" if v is None else str(v)


def leaderboard_markdown(space: SearchSpace, board, top: int | None = None) -> str:
    shown = board if top is None else board.head(top)
    cols = [c for c in shown.columns if c not in ("config_hash",)]
    lines = [f"# {space.title}", "",
             f"Search `{space.name}` over {', '.join(f'`{k}`' for k in space.space)}: {len(board)} trials, "
             f"metric {space.metric} (final evaluation, mean over domains), best first. Trials stopped "
             f"early by ASHA rank below those that ran their whole budget.", "",
             "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in shown.to_dict("records"):
        lines.append("| " + " | ".join(_md_value(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_leaderboard(space: SearchSpace, board, out_dir: Path) -> dict:
    from unisemi.atomic import atomic_write_text as _atomic_write

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"leaderboard.csv": out_dir / "leaderboard.csv", "leaderboard.md": out_dir / "leaderboard.md"}
    _atomic_write(paths["leaderboard.csv"], board.to_csv(index=False))
    _atomic_write(paths["leaderboard.md"], leaderboard_markdown(space, board))
    return paths


def best_config_text(space: SearchSpace, best: dict | None) -> str:
    if best is None:
        return "no trial finished successfully"
    lines = [f"best configuration ({space.metric} {best['miou_mean']:.2f} at iteration {best['iteration']}, "
             f"trial {best['trial']}):"]
    lines += [f"  --set {k}={best[k]!r}" for k in space.space]
    return "\n".join(lines)


def main(args) -> int:
    """The `python -m unisemi tune` handler (argparse namespace from unisemi.cli)."""
    from unisemi.config import parse_override

    overrides: dict = {}
    for text in args.set:
        overrides = _merge(overrides, parse_override(text))
    space = load_space(args.space, overrides)
    print(f"{space.path}: {space.title}")
    if args.dry_run:
        n = min(args.samples or space.samples, 10)
        print(f"first {n} configurations of seed {space.seed} (TPE's random start-up phase):")
        for i, p in enumerate(preview(space, n)):
            print(f"  {i}: {cell_label(p)}")
        return 0
    res = run_search(space, samples=args.samples, results_dir=args.results,
                     max_concurrent=args.max_concurrent, address=args.address,
                     workers_per_trial=args.workers_per_trial, cpus_per_trial=args.cpus_per_trial,
                     gpus_per_trial=args.gpus_per_trial, trackers=args.tracker,
                     storage=getattr(args, "storage", None))
    board = res["leaderboard"]
    paths = write_leaderboard(space, board, Path(args.results) / "tables" / SUITE / space.name)
    print(leaderboard_markdown(space, board, top=10))
    print(best_config_text(space, res["best"]))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    failed = board[board["status"].isin(["error", "unfinished"])] if len(board) else board
    if len(failed) or not len(board):
        # the same code as ablations/run.py's (EXIT_TRIALS_FAILED), after the leaderboard is written
        what = f"{len(failed)} of {len(board)} trial(s) errored or have no final row" if len(board) \
            else "no trial wrote a row"
        print(f"error: {what}; the leaderboard holds what finished", file=sys.stderr)
        return 3
    return 0
