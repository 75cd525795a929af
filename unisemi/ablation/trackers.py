"""Experiment trackers (`--tracker tensorboard|mlflow|wandb`): Ray Tune's own logger callbacks,
shown each trial as a researcher would name it.

Tune's loggers log `trial.config` as the run's parameters and every reported result as metrics.
Our trials' Tune config is only a trial key (a table) or the sampled values (a search), and each
report carries the evaluation as one nested `record`. So every tracker here is a thin subclass of
Ray's callback that sees

- the trial as a `_TrialView`: its config is the cell, seed, split seed, trial key and the whole
  training config flattened to dotted keys (`config.optim.lr`, as `--set` spells them); its name is
  "<cell> seed <seed> [<key>]"; its local path is under `results/trackers/<tracker>/`;
- each result as `trial_metrics(result)`: the scalar fields of the report plus per-domain mIoU and
  pixel accuracy, per-class IoU, loss terms and learning rate, with the training iteration as step.

Everything lands beside the Parquet rows, never inside `results/rows/`:

    results/trackers/tensorboard/<suite>-<table>-<run id>/<trial>/events.out.tfevents.*
    results/trackers/mlflow/mlflow.db MLflow store (SQLite; artifacts in mlartifacts/ beside it),
                                      experiment "<suite>/<table>", one run per trial
    results/trackers/wandb/           W&B runs, offline unless WANDB_MODE or WANDB_API_KEY is set
"""
from __future__ import annotations

import importlib
import json
import os
import re
from contextlib import contextmanager
from numbers import Number
from pathlib import Path

TRACKERS_DIR = "trackers"
# tracker -> (module its Ray callback needs, pip extra of unisemi that installs it)
TRACKERS = {"tensorboard": ("tensorboardX", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
            "wandb": ("wandb", "wandb")}


class TrackerError(ValueError):
    """An unknown or uninstalled tracker; one line naming the pip extra."""


def check_trackers(names) -> list[str]:
    """The requested trackers, each once and in order; raises TrackerError for an unknown one or
    one whose package is missing. Called before Ray starts, so a run never half-starts."""
    wanted = list(dict.fromkeys(names or ()))
    for name in wanted:
        if name not in TRACKERS:
            raise TrackerError(f"--tracker {name}: unknown tracker (known: {', '.join(TRACKERS)})")
        module, extra = TRACKERS[name]
        try:
            importlib.import_module(module)
        except ImportError:
            raise TrackerError(f"--tracker {name} needs the {module} package, which is not installed: "
                               f"pip install 'unisemi[{extra}]'") from None
    return wanted


def add_tracker_option(parser) -> None:
    """`--tracker` on an argparse parser (the table runner's and `unisemi tune`)."""
    parser.add_argument("--tracker", action="append", default=[], choices=tuple(TRACKERS),
                        help="also log every trial (cell, seed, config, each evaluation) to this tracker, "
                             "under RESULTS/trackers/ (repeatable; W&B offline unless WANDB_MODE is set)")


def tracker_tags(meta: dict) -> dict:
    """What every tracker run of one Tune run shares: which table, run and code it came from."""
    return {k: meta[k] for k in ("suite", "table", "profile", "run_id", "git_rev")}


def trackers_root(results_dir) -> Path:
    return Path(results_dir) / TRACKERS_DIR


# ----------------------------------------------------------------------------------------------
# What a tracker is shown

_UNSAFE = re.compile(r"[^\w.\-/]+")


def _tag(name) -> str:
    """A metric-name part that TensorBoard takes without renaming it with a warning (class names
    have spaces) and MLflow's name check accepts."""
    return _UNSAFE.sub("_", str(name)).strip("_") or "_"


def _param(value):
    """Trackers take scalars as parameters; TensorBoard's hparams reject None and lists."""
    return value if isinstance(value, (str, bool, int, float)) else json.dumps(value)


def _dotted(prefix: str, values: dict) -> dict:
    out = {}
    for k, v in values.items():
        key = f"{prefix}.{k}"
        out.update(_dotted(key, v) if isinstance(v, dict) and v else {key: _param(v)})
    return out


def trial_params(payload: dict) -> dict:
    """A trial's parameters in every tracker: what tells it apart (cell, seed) first."""
    return {"cell": payload["cell_id"], "seed": payload["seed"], "split_seed": payload["split_seed"],
            "trial": payload["key"], **_dotted("level", payload["cell"]),
            **_dotted("config", payload["config"])}


def _number(v) -> bool:
    return isinstance(v, Number) and not isinstance(v, bool)


def trial_metrics(result: dict) -> dict:
    """One report as trackers take it: the nested `record` (and Tune's `config` echo, logged as
    parameters instead) replaced by flat scalars. Strings stay for W&B; TensorBoard and MLflow
    skip them."""
    out = {k: v for k, v in result.items() if k not in ("record", "config")}
    record = result.get("record")
    if not record:                      # a failure report: nothing but its own scalars
        return out
    # Ray's loggers step on timesteps_total when it is set: the curves are against training
    # iterations, not against the count of evaluations. An evaluation at iteration 0 falls back to
    # the count (Ray treats 0 as unset).
    out["timesteps_total"] = record["iteration"]
    for domain, m in record["domains"].items():
        d = _tag(domain)
        out[f"miou/{d}"] = m["miou"]
        out[f"pixel_acc/{d}"] = m["pixel_acc"]
        for cls, v in m["iou"].items():
            out[f"iou/{d}/{_tag(cls)}"] = v
    for name, v in (record.get("loss") or {}).items():
        if _number(v):
            out[f"loss/{_tag(name)}"] = v
    if _number(record.get("lr")):
        out["lr"] = record["lr"]
    for part, v in (record.get("timing") or {}).items():
        if _number(v):
            out[f"time/{_tag(part)}_s"] = v
    if _number(record.get("miou_sum")):
        out["miou_sum"] = record["miou_sum"]
    return out


class _TrialView:
    """A Tune trial with the config, name and local path a tracker should use; everything else
    is the trial's. Equal to and hashed as the trial, since Ray's callbacks key their state by it."""

    def __init__(self, trial, params: dict, name: str, local_path: Path):
        self._trial, self._params, self._name, self._local_path = trial, params, name, local_path

    def __getattr__(self, attr):
        return getattr(self._trial, attr)

    @property
    def config(self) -> dict:
        return dict(self._params)

    evaluated_params = config

    @property
    def local_path(self) -> str:
        return str(self._local_path)

    def init_local_path(self) -> None:
        self._local_path.mkdir(parents=True, exist_ok=True)

    def __str__(self) -> str:
        return self._name

    def __hash__(self) -> int:
        return hash(self._trial)

    def __eq__(self, other) -> bool:
        return self._trial == (other._trial if isinstance(other, _TrialView) else other)


class _Viewed:
    """Mixed in before a Ray LoggerCallback: its hooks get `_TrialView`s and `trial_metrics`."""

    def _bind(self, payload_of, root: Path) -> None:
        self._payload_of, self._root, self._views = payload_of, root, {}

    def _view(self, trial) -> _TrialView:
        if trial not in self._views:
            p = self._payload_of(trial)
            name = f"{p['cell_id']} seed {p['seed']} [{p['key'][:8]}]"
            folder = _UNSAFE.sub("_", f"{p['cell_id']}_seed{p['seed']}_{p['key'][:8]}").replace("/", "_")
            self._views[trial] = _TrialView(trial, trial_params(p), name, self._root / folder)
        return self._views[trial]

    def log_trial_start(self, trial):
        super().log_trial_start(self._view(trial))

    def log_trial_restore(self, trial):
        super().log_trial_restore(self._view(trial))

    def log_trial_save(self, trial):
        super().log_trial_save(self._view(trial))

    def log_trial_result(self, iteration, trial, result):
        super().log_trial_result(iteration, self._view(trial), trial_metrics(result))

    def log_trial_end(self, trial, failed=False):
        super().log_trial_end(self._view(trial), failed)


def _tensorboard():
    from ray.tune.logger import TBXLoggerCallback

    class TensorBoardTracker(_Viewed, TBXLoggerCallback):
        """Event files in each trial's (view's) local path; hparams (cell, seed, config) at its end."""

    return TensorBoardTracker()


def _mlflow(root: Path, experiment: str, tags: dict):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    # MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE is set (maintenance mode), so
    # the store is its recommended local backend: one SQLite file, artifacts in a folder beside it.
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{(root / 'mlflow.db').resolve()}"
    artifacts = (root / "mlartifacts").resolve().as_uri()

    class MLflowTracker(_Viewed, MLflowLoggerCallback):
        """One MLflow run per trial; cell and seed also as tags, so `tags.cell = '...'` filters."""

        def setup(self, *args, **kwargs):
            # Created here with its artifact root under results/; Ray's own creation would put it
            # in ./mlartifacts of whatever directory the run started from.
            from mlflow import MlflowClient

            client = MlflowClient(uri)
            if client.get_experiment_by_name(experiment) is None:
                client.create_experiment(experiment, artifact_location=artifacts)
            super().setup(*args, **kwargs)

        def log_trial_start(self, trial):
            super().log_trial_start(trial)
            from mlflow import MlflowClient

            view = self._view(trial)
            client = MlflowClient(self.tracking_uri)
            for key in ("cell", "seed"):
                client.set_tag(self._trial_runs[view], key, str(view.config[key]))

    return MLflowTracker(tracking_uri=uri, experiment_name=experiment, tags=dict(tags))


def mlflow_uri(results_dir) -> str:
    """The tracking URI of a results folder's MLflow store (`mlflow ui --backend-store-uri ...`)."""
    return f"sqlite:///{(trackers_root(results_dir) / 'mlflow' / 'mlflow.db').resolve()}"


@contextmanager
def _env(name: str, value: str):
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def wandb_mode() -> str:
    """Offline unless the user chose: WANDB_MODE as set, or online when an API key is given."""
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def _wandb(root: Path, project: str, group: str, tags: dict):
    from ray.air.integrations.wandb import WandbLoggerCallback

    mode = wandb_mode()

    class WandbTracker(_Viewed, WandbLoggerCallback):
        """One W&B run per trial in `project`, grouped by the Tune run."""

        def setup(self, *args, **kwargs):
            # Ray asks for an API key unless WANDB_MODE says offline; the logging actors get the
            # mode as a wandb.init argument instead, since they do not inherit this environment.
            with _env("WANDB_MODE", mode):
                super().setup(*args, **kwargs)

        def log_trial_start(self, trial):
            self._view(trial).init_local_path()     # Ray's logging actor changes into it
            super().log_trial_start(trial)

    root.mkdir(parents=True, exist_ok=True)
    return WandbTracker(project=project, group=group, mode=mode, dir=str(root.resolve()),
                        tags=[f"{k}={v}" for k, v in tags.items()])


def build_trackers(names, results_dir, *, experiment: str, suite: str, table: str, payload_of,
                   tags: dict | None = None) -> list:
    """Ray Tune callbacks for the trackers `names` (checked with `check_trackers`). `experiment` is
    the Tune run's name (one TensorBoard folder, one W&B group per run); MLflow's experiment and
    W&B's project are per table, so the runs of every resume of a table sit together.
    `payload_of(trial)` is the trial's payload (spec.Trial.payload format); `tags` go on every run."""
    root, tags = trackers_root(results_dir), {k: str(v) for k, v in (tags or {}).items()}
    made = []
    for name in check_trackers(names):
        if name == "tensorboard":
            cb = _tensorboard()
            cb._bind(payload_of, root / "tensorboard" / experiment)
        elif name == "mlflow":
            cb = _mlflow(root / "mlflow", f"{suite}/{table}", tags)
            cb._bind(payload_of, root / "mlflow")
        else:
            cb = _wandb(root / "wandb", f"unisemi-{suite}-{table}", experiment, tags)
            cb._bind(payload_of, root / "wandb" / experiment)
        made.append(cb)
    return made
