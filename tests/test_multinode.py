"""A real multi-node Ray cluster on one machine, as `cluster.yaml` shapes it: a head of 0 CPUs that
runs the driver and worker nodes that run every trial, each node its own `ray start` process with
its own ports and temp folder, all with token authentication. Each worker node runs in its own mount
namespace (unshare -m, as root) with an empty tmpfs over the head's folder (results, spec, the head's
Ray temp folder), so the only folder it shares with the head is the configured storage (and the
stage cache, which README's cluster section asks to put there). Only the processes started here are
ever stopped, by PID.

Cases: a table runs with every trial on a worker and the numbers of a plain fit; a head-local
storage is refused before any trial; a worker node killed mid-trial is survived from its checkpoint;
a killed driver's --resume continues the interrupted trial from its checkpoint; a TorchTrainer
trial (--workers-per-trial 1, on a cluster of its own with 2-CPU workers) survives a killed worker
node from its Train run's checkpoint in the storage, and a killed driver's --resume continues it
from that checkpoint.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("unshare"),
                       reason="private mount namespaces need Linux, root and unshare"),
]
# A trial slow enough to be killed mid-way on a loaded 2-core machine (10-50 ms a step), with a
# checkpoint every 50 iterations between evaluations every 150.
LONG = ["--set", "train.iterations=600", "--set", "train.eval_every=150", "--set", "train.checkpoint_every=50",
        "--set", "data.size=[64, 128]"]
EVALS = [150, 300, 450, 600]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports() -> list[str]:
    p = _free_ports(6)
    return ["--node-manager-port", str(p[0]), "--object-manager-port", str(p[1]),
            "--dashboard-agent-listen-port", str(p[2]), "--dashboard-agent-grpc-port", str(p[3]),
            "--metrics-export-port", str(p[4]), "--runtime-env-agent-port", str(p[5]),
            "--min-worker-port", "0", "--max-worker-port", "0"]


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid`, from /proc (no psutil here)."""
    children: dict = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Cluster:
    """Head and worker nodes started here; `stop` ends exactly those processes and their children."""

    def __init__(self, base: Path):
        self.base = base
        self.head_dir = base / "head"            # what the workers must not see
        self.shared = base / "shared"            # storage and stage cache, seen by every node
        for d in (self.head_dir, self.shared / "cache"):
            d.mkdir(parents=True, exist_ok=True)
        token = base / "token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "UNISEMI_CACHE": str(self.shared / "cache"), "PYTHONPATH": str(ROOT),
                    # a dead node is noticed in about 3 s instead of 15
                    "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.procs: list[subprocess.Popen] = []
        self.port = _free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self.workers: list[subprocess.Popen] = []

    def _start(self, argv: list[str]) -> subprocess.Popen:
        log = open(self.base / f"node{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_head(self) -> None:
        self._start([RAY, "start", "--head", "--num-cpus=0", "--port", str(self.port), "--block",
                     "--temp-dir", str(self.head_dir / "ray-tmp"), "--include-dashboard=false",
                     "--ray-client-server-port", str(_free_ports(1)[0]), "--disable-usage-stats", *_node_ports()])

    def add_worker(self, cpus: int = 1) -> subprocess.Popen:
        tmp = tempfile.mkdtemp(prefix="w", dir=self.base)    # short: Ray's socket paths are limited
        start = " ".join([RAY, "start", "--address", self.address, f"--num-cpus={cpus}", "--block",
                          "--temp-dir", tmp, "--disable-usage-stats", *_node_ports()])
        script = f"mount --make-rprivate / && mount -t tmpfs tmpfs {self.head_dir} && exec {start}"
        proc = self._start(["unshare", "-m", "sh", "-c", script])
        self.workers.append(proc)
        return proc

    def alive_nodes(self, count: int, timeout: float = 120.0) -> list[dict]:
        """Wait until `count` nodes are alive; their ids, CPUs and whether each is the head."""
        code = textwrap.dedent(f"""
            import json, time, ray
            ray.init(address={self.address!r}, log_to_driver=False)
            deadline = time.time() + {timeout}
            while True:
                nodes = [n for n in ray.nodes() if n["Alive"]]
                if len(nodes) == {count} or time.time() > deadline:
                    break
                time.sleep(0.5)
            print(json.dumps([dict(id=n["NodeID"], cpus=n["Resources"].get("CPU", 0)) for n in nodes]))
        """)
        out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                             timeout=timeout + 60)
        assert out.returncode == 0, out.stderr[-2000:]
        nodes = json.loads(out.stdout.strip().splitlines()[-1])
        assert len(nodes) == count, f"{len(nodes)} alive nodes, waited for {count}"
        return nodes

    def placement_groups(self) -> dict:
        """{state: count} of every placement group the cluster knows (REMOVED ones included)."""
        code = textwrap.dedent(f"""
            import collections, json, ray
            ray.init(address={self.address!r}, log_to_driver=False)
            table = ray.util.placement_group_table()
            print(json.dumps(collections.Counter(g["state"] for g in table.values())))
        """)
        out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def kill_raylet(self, worker: subprocess.Popen) -> int:
        (raylet,) = [p for p in _descendants(worker.pid) if _name(p) == "raylet"]
        os.kill(raylet, signal.SIGKILL)
        return raylet

    def stop(self) -> None:
        for proc in reversed(self.procs):
            pids = [proc.pid, *_descendants(proc.pid)]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster():
    base = Path(tempfile.mkdtemp(prefix="mn", dir="/tmp"))
    c = Cluster(base)
    try:
        c.start_head()
        c.add_worker()
        c.alive_nodes(2)
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def _run(c: Cluster, spec: Path, results: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "ablations" / "run.py"), str(spec), "--results", str(results),
           "--address", c.address, *extra]
    return subprocess.run(cmd, env=c.env, capture_output=True, text=True, timeout=timeout)


def _rows(results: Path):
    import pandas as pd
    import pyarrow.parquet as pq
    files = sorted(results.glob("rows/suite=*/table=*/trial-*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files]) if files else None


def _plain_fit(spec_path: Path, sets: list[str]) -> dict:
    """{(cell, seed): [mIoU at each evaluation]} of a plain single-process fit of every trial's
    config, as the runner resolves it (one thread per 1-CPU trial)."""
    from unisemi.ablation.ray_session import for_resources, trial_resources
    from unisemi.ablation.spec import expand, load_spec
    from unisemi.config import _merge, build_config, parse_override
    from unisemi.train import fit

    overrides: dict = {}
    for text in sets:
        overrides = _merge(overrides, parse_override(text))
    trials, _ = expand(load_spec(str(spec_path)), "laptop", None, overrides)
    out = {}
    for t in trials:
        config = for_resources(t.payload()["config"], trial_resources(0, 1.0))
        res = fit(build_config(config, "reference"))
        out[(t.cell_id, t.seed)] = [r["miou_mean"] for r in res["history"]]
    return out


def test_a_table_runs_on_the_worker_node_with_the_numbers_of_a_single_node_fit(cluster):
    spec = tiny_spec(cluster.head_dir / "specs", seeds=1)
    results = cluster.head_dir / "table"
    out = _run(cluster, spec, results, "--storage", str(cluster.shared / "ray"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"storage {cluster.shared / 'ray'}: shared by 2 nodes (checked in " in out.stdout
    print("\n" + next(ln for ln in out.stdout.splitlines() if ln.startswith("storage ")))
    nodes = cluster.alive_nodes(2)
    workers = {n["id"] for n in nodes if n["cpus"] > 0}
    df = _rows(results)
    final = df[df["is_final"]]
    assert len(final) == 2 and set(df["node"]) <= workers and len(workers) == 1   # never the head
    assert final["checkpoints"].str.startswith(str(cluster.shared / "ray") + "/").all()
    reference = _plain_fit(spec, [])
    for (cell, seed), g in df.groupby(["cell", "seed"]):
        assert list(g.sort_values("iteration")["miou"]) == pytest.approx(reference[(cell, seed)], abs=1e-9)


def test_a_head_local_storage_is_refused_before_any_trial_in_one_line(cluster):
    spec = tiny_spec(cluster.head_dir / "specs-local", cells=("a",), seeds=1, baseline=False)
    results = cluster.head_dir / "local"
    t0 = time.perf_counter()
    out = _run(cluster, spec, results)                    # the default: results/ray, on the head only
    err = out.stderr.strip()
    assert out.returncode == 2 and err.count("\n") == 0 and "Traceback" not in err, err[-3000:]
    assert err.startswith(f"error: --storage {results.resolve() / 'ray'}: a folder on the driver's node that node(s)")
    assert err.endswith("pass --storage s3://... or a path mounted on every node")
    assert _rows(results) is None and time.perf_counter() - t0 < 120


def _wait_rows(results: Path, proc: subprocess.Popen, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        df = _rows(results)
        if df is not None and len(df):
            return df
        assert proc.poll() is None, "the driver ended before the first evaluation"
        time.sleep(0.2)
    pytest.fail("no evaluation stored in time")


def _wait_next_checkpoint(results: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the driver's pointer to the trial's checkpoint moves on (a checkpoint-only report)."""
    (pointer,) = results.glob("checkpoints/suite=*/table=*/*.txt")
    first = pointer.read_text()
    deadline = time.time() + timeout
    while pointer.read_text() == first:
        assert proc.poll() is None and time.time() < deadline, "no later checkpoint"
        time.sleep(0.05)


def _long_table(c: Cluster, name: str) -> tuple[Path, Path, list[str]]:
    spec = tiny_spec(c.head_dir / f"specs-{name}", cells=("a",), seeds=1, baseline=False)
    return spec, c.head_dir / name, [*LONG, "--storage", str(c.shared / "ray")]


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    spec = tiny_spec(tmp_path_factory.mktemp("specs-reference"), cells=("a",), seeds=1, baseline=False)
    return _plain_fit(spec, LONG[1::2])[("variant=a", 0)]


def _check_long(df, reference) -> dict:
    assert sorted(df["iteration"]) == EVALS                              # 0 lost, 0 duplicated
    assert df["is_final"].sum() == 1 and (df["status"] == "ok").all()
    assert list(df.sort_values("iteration")["miou"]) == pytest.approx(reference, abs=1e-9)
    return df[df["is_final"]].iloc[0].to_dict()


def test_a_killed_worker_node_costs_one_checkpoint_interval(cluster, long_reference):
    spec, results, args = _long_table(cluster, "node-lost")
    cmd = [sys.executable, str(ROOT / "ablations" / "run.py"), str(spec), "--results", str(results),
           "--address", cluster.address, *args]
    log = open(cluster.base / "node-lost.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=cluster.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        first = _wait_rows(results, proc)
        _wait_next_checkpoint(results, proc)            # kill between evaluations, after a checkpoint
        killed_after = int(_rows(results)["iteration"].max())
        cluster.kill_raylet(cluster.workers[-1])
        t_kill = time.perf_counter()
        cluster.add_worker()                             # a new node joins; the trial moves there
        proc.wait(timeout=300)
        t_end = time.perf_counter()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, (cluster.base / "node-lost.log").read_text()[-3000:]
    final = _check_long(_rows(results), long_reference)
    assert killed_after < EVALS[-1], "killed too late: the trial had already finished"
    # from a checkpoint between evaluations: at most one interval (50 iterations) was lost
    assert final["retries"] == 1 and final["resumed_from"] > killed_after and final["resumed_from"] % 50 == 0
    table = next(results.glob("tables/*/*/table.md")).read_text()
    assert "1 trial(s) retried 1 time(s) after a lost node or an error, each from its last checkpoint" in table
    print(f"\nlost node: killed after the iteration-{killed_after} evaluation, resumed from the iteration-"
          f"{final['resumed_from']} checkpoint; {final['lost_s']:.1f} s of work from the last checkpoint to the "
          f"retry; {t_end - t_kill:.1f} s from the kill to the end, {t_end - t0:.1f} s in all")


def test_a_killed_driver_resumes_the_interrupted_trial_from_its_checkpoint(cluster, long_reference):
    spec, results, args = _long_table(cluster, "driver-lost")
    cmd = [sys.executable, str(ROOT / "ablations" / "run.py"), str(spec), "--results", str(results),
           "--address", cluster.address, *args]
    proc = subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        first = _wait_rows(results, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_after = int(first["iteration"].max())
    assert killed_after < EVALS[-1]
    out = subprocess.run(cmd + ["--resume"], env=cluster.env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    final = _check_long(_rows(results), long_reference)
    assert final["resumed_from"] >= killed_after                          # not iteration 0
    print(f"\nkilled driver: killed after the iteration-{killed_after} evaluation, --resume continued from "
          f"the iteration-{final['resumed_from']} checkpoint")


@pytest.fixture()
def trainer_cluster():
    """A cluster of its own for a TorchTrainer trial: its driver (0.01 CPU) and its one worker
    (1 CPU) on one node, so each worker node has 2 CPUs (the module's worker has 1)."""
    base = Path(tempfile.mkdtemp(prefix="mt", dir="/tmp"))
    c = Cluster(base)
    try:
        c.start_head()
        c.add_worker(cpus=2)
        c.alive_nodes(2)
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_torchtrainer_trial_survives_a_killed_worker_node_from_its_train_checkpoint(trainer_cluster, long_reference):
    """README's cluster path (--workers-per-trial 1): the Train run lives in the shared storage
    under a name per trial key, so the retry on a fresh node re-creates it and Train resumes it."""
    c = trainer_cluster
    spec, results, args = _long_table(c, "trainer-lost")
    cmd = [sys.executable, str(ROOT / "ablations" / "run.py"), str(spec), "--results", str(results),
           "--address", c.address, "--workers-per-trial", "1", *args]
    log = open(c.base / "trainer-lost.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=c.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_rows(results, proc)
        _wait_next_checkpoint(results, proc)            # kill between evaluations, after a checkpoint
        killed_after = int(_rows(results)["iteration"].max())
        c.kill_raylet(c.workers[-1])
        t_kill = time.perf_counter()
        c.add_worker(cpus=2)
        try:
            proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            pytest.fail("the run did not end after the kill:\n" + (c.base / "trainer-lost.log").read_text()[-6000:])
        t_end = time.perf_counter()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, (c.base / "trainer-lost.log").read_text()[-3000:]
    df = _rows(results)
    final = _check_long(df, long_reference)
    assert killed_after < EVALS[-1], "killed too late: the trial had already finished"
    assert (df["workers"] == 1).all()
    run = c.shared / "ray" / "train" / f"contrastive-table1-{final['trial']}"    # <suite>-<table>-<key>
    assert final["checkpoints"] == str(run) and run.is_dir()
    assert final["retries"] == 1 and final["resumed_from"] > killed_after and final["resumed_from"] % 50 == 0
    table = next(results.glob("tables/*/*/table.md")).read_text()
    assert "1 trial(s) retried 1 time(s) after a lost node or an error, each from its last checkpoint" in table
    print(f"\nlost node (TorchTrainer): killed after the iteration-{killed_after} evaluation, resumed from the "
          f"iteration-{final['resumed_from']} checkpoint; {final['lost_s']:.1f} s of work from the last checkpoint "
          f"to the retry; {t_end - t_kill:.1f} s from the kill to the end, {t_end - t0:.1f} s in all")


def test_a_killed_driver_resumes_a_torchtrainer_trial_from_its_train_checkpoint(trainer_cluster, long_reference):
    """--workers-per-trial 1, the driver killed after a Train checkpoint between evaluations: the
    killed job's actors and placement groups go with it, and --resume re-creates the Train run
    under the same name (<storage>/train/<suite>-<table>-<key>), which Train V2 resumes."""
    c = trainer_cluster
    spec, results, args = _long_table(c, "trainer-driver")
    cmd = [sys.executable, str(ROOT / "ablations" / "run.py"), str(spec), "--results", str(results),
           "--address", c.address, "--workers-per-trial", "1", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=c.env, stdout=open(c.base / "trainer-driver.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_rows(results, proc)
        _wait_next_checkpoint(results, proc)            # kill between evaluations, after a checkpoint
        killed_after = int(_rows(results)["iteration"].max())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)             # the driver this test started, nothing else
        proc.wait()
    t_kill = time.perf_counter()
    assert killed_after < EVALS[-1], "killed too late: the trial had already finished"
    out = subprocess.run(cmd + ["--resume"], env=c.env, capture_output=True, text=True, timeout=300)
    t_end = time.perf_counter()
    assert out.returncode == 0, out.stderr[-3000:]
    df = _rows(results)
    final = _check_long(df, long_reference)
    assert (df["workers"] == 1).all()
    run = c.shared / "ray" / "train" / f"contrastive-table1-{final['trial']}"    # <suite>-<table>-<key>
    assert final["checkpoints"] == str(run) and run.is_dir()
    # from the Train run's checkpoint after the last stored evaluation, not from iteration 0
    assert final["resumed_from"] > killed_after and final["resumed_from"] % 50 == 0
    # Ray removed the killed job's placement groups (Tune's trial and its Train worker group) with
    # the job: none is left holding a bundle, as a retry's orphan would (see runner._drop_group)
    groups = c.placement_groups()
    assert set(groups) == {"REMOVED"} and groups["REMOVED"] >= 4, groups
    print(f"\nkilled driver (TorchTrainer): killed after the iteration-{killed_after} evaluation, --resume "
          f"continued from the iteration-{final['resumed_from']} checkpoint; {t_end - t_kill:.1f} s for the "
          f"--resume run, {t_end - t0:.1f} s in all")


def _fake_launcher_config(port: int) -> dict:
    """cluster.yaml as the fake multi-node provider can run it on one machine: its node types, head
    of 0 CPUs, worker counts and autoscaling settings kept; the provider, the instances (node_config)
    and the file mounts replaced, and a GPU worker given {CPU: 1} (this machine has no GPU, and the
    fake provider knows no instance type's resources)."""
    import yaml
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["provider"] = {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{port}"}
    for name, spec in config["available_node_types"].items():
        spec["node_config"] = {}
        if name != config["head_node_type"]:
            spec["resources"] = {"CPU": 1}
    config["file_mounts"] = {}
    config["cluster_synced_files"] = []            # what `ray up` fills in (prepare_config needs an
    config.setdefault("file_mounts_sync_continuously", False)   # example file the wheel lacks)
    return config


def test_cluster_yaml_autoscales_a_worker_under_rays_fake_multinode_provider(tmp_path):
    """`RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config`: the autoscaler reads cluster.yaml's
    node types and starts a worker node when the run's trial is pending; the run says what it waits
    for (it reads the config where `ray up` leaves it on the head, ~/ray_bootstrap_config.yaml).
    The fake provider starts nodes as local processes: setup and start commands are not run."""
    import yaml
    base = Path(tempfile.mkdtemp(prefix="fk", dir="/tmp"))
    home = base / "home"
    home.mkdir()
    port = _free_ports(1)[0]
    launcher = home / "ray_bootstrap_config.yaml"
    launcher.write_text(yaml.safe_dump(_fake_launcher_config(port)))
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT)}
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--num-cpus=0", "--port", str(port), "--autoscaling-config",
         str(launcher), "--temp-dir", str(base / "rt"), "--include-dashboard=false", "--disable-usage-stats",
         "--ray-client-server-port", str(_free_ports(1)[0]), *_node_ports()],
        env={**env, "RAY_FAKE_CLUSTER": "1"}, stdout=open(base / "head.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        spec = tiny_spec(base / "specs", cells=("a",), seeds=1, baseline=False)
        out = subprocess.run([sys.executable, str(ROOT / "ablations" / "run.py"), str(spec), "--results",
                              str(base / "results"), "--address", f"127.0.0.1:{port}"],
                             env=env, capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stderr[-3000:] + (base / "head.log").read_text()[-2000:]
        assert "waiting for the autoscaler: each trial asks for {CPU: 1} (in-process fit)" in out.stdout
        assert "it may add up to 8 x worker_gpu {CPU: 1}" in out.stdout        # cluster.yaml's count
        final = _rows(base / "results")
        assert final["is_final"].sum() == 1 and (final["status"] == "ok").all()
    finally:
        for pid in [head.pid, *_descendants(head.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        head.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
