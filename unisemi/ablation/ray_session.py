"""What the table runner and the search share around Ray: start-up, Tune run settings, and the
check that a trial's resources can ever be placed.

- `ray_session`: start a local Ray instance or join one (`address`), with the workers' warm-import
  hook, for the length of a `with` block.
- `trial_resources`, `trainable`, `tune_config`, `run_config`: the pieces of a `tune.Tuner`.
- `check_placement`: before anything launches, decide whether one trial (its driver plus its
  TorchTrainer workers, each worker on one node) fits the cluster. A fixed-size cluster that is too
  small fails at once; Tune itself would leave such a trial pending forever, silently. An
  autoscaling cluster is told what to wait for, and `pending_reporter` repeats it while trials wait.
"""
from __future__ import annotations

import datetime
import logging
import math
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from unisemi.distributed import worker_resources

# Our own progress lines replace Tune's console tables; the store is the record of every result.
# Of Tune's default loggers only result.json is kept (added in run_config): the TensorBoard one warns
# about every class name with a space, and the CSV one duplicates the store.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

# Workers import torch and the training code once, when they start, not in every trial; Ray
# prestarts a worker per CPU, so this overlaps with Ray and Tuner start-up.
WARM_IMPORTS_HOOK = "unisemi.ablation.trial.warm_imports"
# A trial that runs a TorchTrainer only coordinates it; its workers hold the real slots. It still
# asks for a sliver of CPU so that its placement group is a real reservation on a node that has CPUs.
DRIVER_CPU = 0.01
# The cluster launcher writes the autoscaler's config here on the head node (`ray up`), which is
# where the driver runs (a job, `ray submit` or `ray exec`). Ray Tune tests the same file to tell
# an autoscaling cluster (ray.tune.execution.cluster_info._is_ray_cluster).
LAUNCHER_CONFIG = Path("~/ray_bootstrap_config.yaml")
WAIT_REPORT_EVERY_S = 60.0
# Ray keeps resource quantities to 4 decimals; this absorbs float error in sums like 0.01 + 2 x 0.995.
_EPS = 1e-6


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, env: dict | None = None):
    """Use the running Ray instance, or start one (local, or joined at `address`) and shut it down
    afterwards. `env` is set in this process for the block (Tune reads some settings from there)."""
    import ray

    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    started_here = False
    try:
        if not ray.is_initialized():
            # logging_level: Ray's "Connecting to existing Ray cluster" lines would wrap a refusal's
            # one line on stderr; its warnings still show
            common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                          runtime_env={"worker_process_setup_hook": WARM_IMPORTS_HOOK})
            if address:
                try:
                    ray.init(address=address, **common)
                except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
                    from unisemi.ablation.preflight import RayUnreachable, unreachable_text
                    raise RayUnreachable(unreachable_text(exc, address)) from None
            else:
                common["runtime_env"]["env_vars"] = {"PYTHONPATH": local_pythonpath()}
                ray.init(num_cpus=num_cpus or os.cpu_count(), **common)
            started_here = True
        yield ray
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if started_here:
            ray.shutdown()


def local_pythonpath() -> str:
    """PYTHONPATH for a local instance's workers: the checkout this driver imports unisemi from
    first. Without it a worker imports whatever copy the environment has installed, which may be
    another checkout or none at all, and every trial dies in the warm-import hook."""
    package_root = str(Path(__file__).resolve().parents[2])
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != package_root]
    return os.pathsep.join([package_root, *rest])


def new_run_id() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


# ----------------------------------------------------------------------------------------------
# What one trial asks for

@dataclass(frozen=True)
class TrialResources:
    """One trial's Ray resources: the trial's own process (`driver`, what Tune reserves) and, when
    `workers >= 1`, that many TorchTrainer workers of `worker` each."""
    driver: dict
    workers: int = 0
    worker: dict = field(default_factory=dict)

    def bundles(self) -> list[dict]:
        return [self.driver] + [self.worker] * self.workers

    def total(self) -> dict:
        out: dict = {}
        for bundle in self.bundles():
            for k, v in bundle.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def describe(self) -> str:
        if not self.workers:
            return f"{_fmt(self.driver)} (in-process fit)"
        return (f"driver {_fmt(self.driver)} + {self.workers} worker{'s' if self.workers != 1 else ''} x "
                f"{_fmt(self.worker)} = {_fmt(self.total())}")


def trial_resources(workers: int, cpus: float, gpus: float = 0.0) -> TrialResources:
    """`workers == 0`: the trial fits in its own process on `cpus` CPUs and `gpus` GPUs.
    `workers >= 1`: the trial coordinates a TorchTrainer of `workers` x (`cpus`, `gpus`)."""
    if workers < 0:
        raise ValueError(f"--workers-per-trial {workers}: expected >= 0")
    if cpus < 0 or gpus < 0 or cpus + gpus <= 0:
        raise ValueError(f"--cpus-per-trial {cpus:g} --gpus-per-trial {gpus:g}: expected >= 0 each, "
                         f"and not both 0")
    if workers == 0:
        return TrialResources(driver=worker_resources(cpus, gpus))
    return TrialResources(driver={"CPU": DRIVER_CPU}, workers=workers, worker=worker_resources(cpus, gpus))


def for_resources(config: dict, request: TrialResources) -> dict:
    """A trial's config adjusted to what it was given: one torch thread per CPU of an in-process
    trial (two 1-thread trials do not slow each other), and CUDA when GPUs are reserved (the
    default `train.device` is cpu, which would leave them idle). Changes `config` in place."""
    train = config["train"]
    if request.workers == 0 and not train.get("threads"):
        train["threads"] = max(1, int(request.driver.get("CPU", 1)))
    gets_gpu = (request.worker if request.workers else request.driver).get("GPU", 0) > 0
    if gets_gpu and train.get("device", "cpu") == "cpu":
        train["device"] = "cuda"
    return config


def _fmt(resources: dict) -> str:
    keys = [k for k in ("CPU", "GPU") if k in resources] + sorted(set(resources) - {"CPU", "GPU"})
    return "{" + ", ".join(f"{k}: {resources[k]:g}" for k in keys) + "}"


# ----------------------------------------------------------------------------------------------
# Can it be placed?

def _fits(bundle: dict, node: dict) -> bool:
    return all(node.get(k, 0.0) + _EPS >= v for k, v in bundle.items() if v > 0)


def _minus(node: dict, bundle: dict) -> dict:
    return {**node, **{k: node.get(k, 0.0) - v for k, v in bundle.items()}}


def _copies(bundle: dict, node: dict) -> int:
    """How many `bundle`s fit on `node` at once."""
    counts = [math.floor((node.get(k, 0.0) + _EPS) / v) for k, v in bundle.items() if v > 0]
    return max(0, min(counts)) if counts else 1 << 30


def fits_on(request: TrialResources, nodes: list[dict]) -> bool:
    """Whether one trial fits an otherwise idle cluster of `nodes` (each node's total resources):
    its driver on one node and each worker wholly on one node (a worker is one process). Exact:
    try the driver on every node, then count how many identical workers the nodes still hold."""
    for i, node in enumerate(nodes):
        if not _fits(request.driver, node):
            continue
        rest = [_minus(n, request.driver) if j == i else n for j, n in enumerate(nodes)]
        if not request.workers or sum(_copies(request.worker, n) for n in rest) >= request.workers:
            return True
    return False


def trials_at_once(request: TrialResources, nodes: list[dict], limit: int) -> int:
    """How many trials an idle cluster of `nodes` holds at once (first fit, largest bundles first),
    at least 1 and at most `limit`."""
    free = [dict(n) for n in nodes]
    order = sorted(request.bundles(), key=lambda b: (b.get("GPU", 0.0), b.get("CPU", 0.0)), reverse=True)
    count = 0
    while count < limit:
        for bundle in order:
            i = next((i for i, n in enumerate(free) if _fits(bundle, n)), None)
            if i is None:
                return max(1, count)
            free[i] = _minus(free[i], bundle)
        count += 1
    return max(1, count)


@dataclass(frozen=True)
class Growth:
    """What an autoscaler may add: per node type its resources ({} if unknown) and how many."""
    node_types: dict          # name -> (resources, max_count)

    def known(self) -> bool:
        return all(res for res, _ in self.node_types.values())

    def nodes(self, cap: int = 256) -> list[dict]:
        return [dict(res) for res, count in self.node_types.values() for _ in range(min(count, cap))]

    def describe(self) -> str:
        return ", ".join(f"up to {count} x {name} {_fmt(res) if res else '(resources not known yet)'}"
                         for name, (res, count) in self.node_types.items())


@dataclass(frozen=True)
class Placement:
    verdict: str              # "fits" | "waits" (for the autoscaler) | "never"
    message: str = ""


def _cluster_text(nodes: list[dict], keys) -> str:
    total = {k: sum(n.get(k, 0.0) for n in nodes) for k in keys}
    largest = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in keys}
    return (f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} with {_fmt(total)} in all, "
            f"at most {_fmt(largest)} on one node")


def placement(request: TrialResources, nodes: list[dict], growth: Growth | None = None) -> Placement:
    """The decision on resource dicts alone. `nodes`: each live node's total resources
    (`ray.nodes()`); `growth`: None for a fixed-size cluster, else what its autoscaler may add."""
    keys = sorted({k for b in request.bundles() for k in b} | {"CPU", "GPU"})
    asked = f"each trial asks for {request.describe()}, every worker on one node"
    if fits_on(request, nodes):
        return Placement("fits")
    have = _cluster_text(nodes, keys)
    if growth is None:
        return Placement("never", f"{asked}, but this fixed-size Ray cluster has {have}: no trial could ever "
                                  f"start; lower --workers-per-trial, --cpus-per-trial or --gpus-per-trial, "
                                  f"or join a larger cluster with --address")
    if growth.known() and not fits_on(request, nodes + growth.nodes()):
        return Placement("never", f"{asked}, but even at its largest this autoscaling cluster cannot place "
                                  f"it (it has {have}; its autoscaler may add {growth.describe()})")
    return Placement("waits", waiting_text(request, nodes, growth))


def waiting_text(request: TrialResources, nodes: list[dict], growth: Growth | None,
                 pending: int | None = None) -> str:
    keys = sorted({k for b in request.bundles() for k in b} | {"CPU", "GPU"})
    what = f"{pending} trial{'s' if pending != 1 else ''} pending; " if pending is not None else ""
    adds = f"; it may add {growth.describe()}" if growth else ""
    return (f"waiting for the autoscaler: {what}each trial asks for {request.describe()}, every worker on "
            f"one node; the cluster has {_cluster_text(nodes, keys)} now{adds}")


def growth_from_launcher_config(config: dict) -> Growth | None:
    """The worker node types of a cluster-launcher config that can grow (max_workers > min_workers),
    with their resources (`ray up` fills in those of known cloud instance types) and how many."""
    cap = int(config.get("max_workers", 1 << 10))          # prepare_config always fills it in
    head = config.get("head_node_type")
    types = {}
    for name, spec in (config.get("available_node_types") or {}).items():
        low, high = int(spec.get("min_workers", 0) or 0), int(spec.get("max_workers", cap) or 0)
        if name != head and min(high, cap) > low:
            types[name] = (dict(spec.get("resources") or {}), min(high, cap))
    return Growth(types) if types else None


def growth_from_gcs_config(cluster_config) -> Growth | None:
    """The same from the cluster config an autoscaler v2 (e.g. KubeRay) reports to the GCS:
    node groups with max_count -1 (unbounded) or above min_count."""
    if cluster_config is None:
        return None
    types = {}
    for group in cluster_config.node_group_configs:
        if group.max_count == -1 or group.max_count > group.min_count:
            count = 1 << 10 if group.max_count == -1 else group.max_count
            types[group.name or f"group{len(types)}"] = ({k: float(v) for k, v in group.resources.items()}, count)
    return Growth(types) if types else None


def detect_growth(launcher_config: Path = LAUNCHER_CONFIG) -> Growth | None:
    """What this cluster's autoscaler may add, or None for a fixed-size cluster (a local instance,
    `ray start` by hand, or a launcher config that cannot grow)."""
    import yaml

    path = launcher_config.expanduser()
    if path.exists():
        try:
            return growth_from_launcher_config(yaml.safe_load(path.read_text()) or {})
        except (OSError, yaml.YAMLError, TypeError, ValueError, AttributeError):
            return Growth({"(unreadable autoscaler config)": ({}, 1)})   # an autoscaler, of unknown shape
    try:
        import ray._private.state

        return growth_from_gcs_config(ray._private.state.state.get_cluster_config())
    except Exception:   # a private API (Ray Data reads it the same way); absent means no autoscaler
        return None


def live_nodes() -> list[dict]:
    import ray
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def check_placement(request: TrialResources, growth: Growth | None, error=RuntimeError, log=print) -> Placement:
    """Raise `error` with one line if one trial can never be placed; say what an autoscaling
    cluster (`growth`, from `detect_growth`) has to add before trials start. Needs a connected Ray."""
    decision = placement(request, live_nodes(), growth)
    if decision.verdict == "never":
        raise error(decision.message)
    if decision.verdict == "waits":
        log(decision.message)
    return decision


def default_concurrency(request: TrialResources, n_trials: int, growth: Growth | None = None) -> int:
    """Trials at once: as many as the cluster holds, at its largest when it autoscales. Tune keeps
    the rest pending; on an autoscaling cluster their demand is what makes it add nodes."""
    nodes = live_nodes()
    if growth is not None and not growth.known():
        return max(1, n_trials)
    return trials_at_once(request, nodes + (growth.nodes() if growth else []), max(1, n_trials))


def pending_reporter(request: TrialResources, growth: Growth | None, log, every_s: float = WAIT_REPORT_EVERY_S,
                     clock=time.monotonic, nodes=live_nodes):
    """A Tune callback that, while trials are pending, says every `every_s` seconds how many wait
    and what for: on an autoscaling cluster always (the start-up check said it once); on a
    fixed-size one when the live nodes can no longer hold one trial (a node is gone), since
    pending there is otherwise only a queue."""
    from ray import tune

    class PendingReporter(tune.Callback):
        def __init__(self):
            self.last = clock()

        def on_step_end(self, iteration, trials, **info):
            pending = sum(1 for t in trials if t.status == "PENDING")
            now = clock()
            if not pending:
                self.last = now
            elif now - self.last >= every_s:
                self.last = now
                live = nodes()
                if growth is not None:
                    log(waiting_text(request, live, growth, pending))
                elif not fits_on(request, live):
                    log(stuck_text(request, live, pending))

    return PendingReporter()


def stuck_text(request: TrialResources, nodes: list[dict], pending: int) -> str:
    keys = sorted({k for b in request.bundles() for k in b} | {"CPU", "GPU"})
    return (f"{pending} trial{'s' if pending != 1 else ''} pending that no node can take: each trial asks for "
            f"{request.describe()}, every worker on one node, but this fixed-size Ray cluster now has "
            f"{_cluster_text(nodes, keys)} (a node it had is gone?); waiting for a node that fits to join")


# ----------------------------------------------------------------------------------------------
# Tuner pieces

def trainable(fn, request: TrialResources, **params):
    """`fn` with its fixed parameters, reserving the trial's own (driver) resources in Tune."""
    from ray import tune
    return tune.with_resources(tune.with_parameters(fn, **params), dict(request.driver))


def tune_config(concurrency: int, request: TrialResources, reuse_actors: bool = True, **search):
    """In-process trials reuse their worker process: a fresh one per trial cost ~12 s of process
    start and imports (benchmarks/orchestration.py: makespan/ideal 1.58 -> 1.04). A TorchTrainer
    trial starts its own workers either way, so reuse buys nothing there."""
    from ray import tune
    return tune.TuneConfig(max_concurrent_trials=concurrency,
                           reuse_actors=reuse_actors and request.workers == 0, **search)


def run_config(name: str, storage: str, max_failures: int, callbacks=()):
    """Retries from the last checkpoint (one kept), result.json as the only Tune logger, quiet."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    return tune.RunConfig(name=name, storage_path=str(storage),
                          failure_config=tune.FailureConfig(max_failures=max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                          callbacks=[*callbacks, JsonLoggerCallback()], verbose=0)
