"""The runner beyond one process: cluster.yaml validity, several Ray nodes, a killed driver,
and trials that each launch a TorchTrainer."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[1]


def _validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config
    validate_config(prepare_config(config))


def test_cluster_yaml_passes_rays_own_validation():
    pytest.importorskip("ray")
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    _validate(config)
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}       # no trials on the head
    assert any("pip install -e" in c for c in config["setup_commands"])
    assert any("g5" in t["node_config"]["InstanceType"] for t in types.values())


def _start_commands(config: dict) -> list[str]:
    cmds = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in config[key]]
    return [c for c in cmds if "ray start" in c]


def test_every_node_starts_with_token_auth_and_the_dashboard_stays_on_localhost():
    pytest.importorskip("ray")
    text = (ROOT / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    _validate(config)
    starts = _start_commands(config)
    assert len(starts) == 2                                       # the head's and the workers'
    token_paths = set()
    for cmd in starts:
        env = cmd[:cmd.index("ray start")]                        # exported before Ray starts
        assert "RAY_AUTH_MODE=token" in env
        path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+?);", env).group(1)
        token_paths.add(path.replace("$HOME", "/home/" + config["auth"]["ssh_user"]))
        assert "--dashboard-host" not in cmd                      # default: the head's localhost
    assert "0.0.0.0" not in text
    # the token file reaches every node through file_mounts, from a git-ignored file
    (remote,) = token_paths
    local = config["file_mounts"][remote]
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert Path(local).name in ignored
    # and the token itself is never in the config: no secret-looking literal, no RAY_AUTH_TOKEN=
    assert not re.search(r"[0-9a-fA-F]{32}", text)
    assert "RAY_AUTH_TOKEN=" not in text


def test_cluster_yaml_validation_catches_a_broken_config():
    pytest.importorskip("ray")
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["head_node_type"] = "no_such_type"
    with pytest.raises(ValueError, match="head_node_type"):
        _validate(config)


def _stored(results: Path):
    import pandas as pd
    import pyarrow.parquet as pq
    files = list(results.glob("rows/suite=*/table=*/trial-*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files]) if files else None


@pytest.mark.slow
def test_trials_spread_over_several_ray_nodes(tmp_path):
    spec = tiny_spec(tmp_path / "specs", seeds=2)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from ray.cluster_utils import Cluster
        from unisemi.ablation.runner import run_table
        from unisemi.ablation.spec import load_spec
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = run_table(load_spec({str(spec)!r}), results_dir={str(tmp_path / "results")!r},
                        address=cluster.address)
        cluster.shutdown()
        print("MISSING", out["missing"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MISSING []" in proc.stdout
    df = _stored(tmp_path / "results")
    final = df[df["is_final"]]
    assert len(final) == 4 and final["node"].nunique() == 2


@pytest.mark.slow
def test_killed_driver_resumes_with_exactly_one_final_row_per_cell_and_seed(tmp_path):
    spec = tiny_spec(tmp_path / "specs", seeds=2)
    results = tmp_path / "results"
    cmd = [sys.executable, str(ROOT / "ablations" / "run.py"), str(spec), "--results", str(results),
           "--set", "train.iterations=30", "--set", "train.eval_every=10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:           # wait for the first finished trial, then kill
            df = _stored(results)
            if df is not None and df["is_final"].any():
                break
            assert proc.poll() is None, "the driver ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("no trial finished in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _stored(results)
    assert before["is_final"].sum() < 4, "killed too late: the table had already finished"
    out = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "already stored" in out.stdout
    df = _stored(results)
    final = df[df["is_final"]]
    assert sorted(zip(final["cell"], final["seed"])) == [
        ("variant=a", 0), ("variant=a", 1), ("variant=b", 0), ("variant=b", 1)]
    assert sorted(df.groupby("trial").size()) == [3, 3, 3, 3]   # iterations 10, 20, 30 once each
    assert (results / "tables" / "contrastive" / "table1" / "table.md").exists()


def test_a_trial_bigger_than_the_local_cluster_fails_at_once_with_what_was_asked_and_what_exists(
        tmp_path, ray_local, capsys):
    """On 2 CPUs, 2 workers x 1 CPU plus the trial's driver can never start: this used to wait
    forever after 'running 1 trials'."""
    from unisemi.ablation.cli import main

    spec = tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False)
    t0 = time.perf_counter()
    rc = main([str(spec), "--results", str(tmp_path / "results"), "--workers-per-trial", "2",
               "--cpus-per-trial", "1"])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    assert rc == 2 and elapsed < 60
    assert err.startswith("error: each trial asks for driver {CPU: 0.01} + 2 workers x {CPU: 1} = {CPU: 2.01}")
    assert "fixed-size Ray cluster has 1 node with {CPU: 2, GPU: 0} in all" in err
    assert "\n" not in err and "Traceback" not in err
    assert not list((tmp_path / "results").glob("rows/suite=*/table=*/trial-*.parquet"))   # nothing ran


@pytest.mark.slow
def test_a_trial_can_run_a_two_worker_torch_trainer(tmp_path, ray_local):
    from unisemi.ablation.runner import run_table
    from unisemi.ablation.spec import load_spec
    spec = load_spec(str(tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False)))
    out = run_table(spec, results_dir=tmp_path / "results", workers_per_trial=2, cpus_per_trial=0.5,
                    log=lambda *a: None)
    df = out["store"].read()
    assert out["missing"] == [] and sorted(df["iteration"]) == [3, 6]
    final = df[df["is_final"]].iloc[0]
    assert final["status"] == "ok" and final["workers"] == 2 and final["device"].startswith("2x cpu")


@pytest.mark.slow
def test_a_retry_is_counted_and_resume_continues_from_the_stored_checkpoint(tmp_path, ray_local):
    """A trial that dies after its iteration-3 checkpoint with no retries left keeps a pointer to
    that checkpoint in the store; `--resume` (a new Tune experiment, as after a killed driver)
    continues it from iteration 3, not 0, and its numbers equal an unbroken run's. With a retry
    allowed, the row counts one retry and where the checkpoints lived."""
    from unisemi.ablation.runner import run_table
    from unisemi.ablation.spec import load_spec
    spec = load_spec(str(tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False)))
    quiet = dict(log=lambda *a: None)
    clean = run_table(spec, results_dir=tmp_path / "clean", **quiet)["store"].read().sort_values("iteration")

    fault = {"after_iteration": 3, "marker": str(tmp_path / "fired")}
    out = run_table(spec, results_dir=tmp_path / "broken", max_failures=0, inject_fault=fault, **quiet)
    store = out["store"]
    (key,) = [t.key for t in out["trials"]]
    assert out["failed"] == 1 and store.pointer(key).startswith(str((tmp_path / "broken" / "ray").resolve()))
    out = run_table(spec, results_dir=tmp_path / "broken", resume=True, **quiet)
    df = store.read().sort_values("iteration")
    assert out["failed"] == 0 and list(df["iteration"]) == [3, 6]
    assert df[df["is_final"]]["resumed_from"].item() == 3
    assert list(df["miou"]) == pytest.approx(list(clean["miou"]), abs=1e-9)
    assert store.pointer(key) is None                                  # finished: dropped

    (tmp_path / "fired").unlink()
    storage = tmp_path / "shared"
    out = run_table(spec, results_dir=tmp_path / "retried", inject_fault=fault, storage=str(storage), **quiet)
    final = out["store"].final_rows().iloc[0]
    assert final["resumed_from"] == 3 and final["retries"] == 1 and 0 <= final["lost_s"] < 30
    assert final["checkpoints"].startswith(str(storage) + "/contrastive-table1-")
    assert final["miou"] == pytest.approx(clean["miou"].iloc[-1], abs=1e-9)


def test_the_footnote_counts_retries_and_the_work_they_recomputed_from_final_rows():
    import pandas as pd

    from unisemi.ablation.rows import retries_note
    df = pd.DataFrame({"trial": ["t1", "t1", "t2", "t3", "t3"], "is_final": [False, True, True, True, True],
                       "retries": [1, 2, 0, 1, 1], "lost_s": [4.0, 10.4, 0.0, 3.0, 3.0]})
    # t1's final row counts 2 retries; t3 has two domains (one final row each): counted once
    assert retries_note(df) == ("2 trial(s) retried 3 time(s) after a lost node or an error, each from its "
                                "last checkpoint; about 13 s of work recomputed.")
    assert retries_note(df.assign(retries=0)) is None
    assert retries_note(df.assign(retries=None)) is None          # rows written before the column


@pytest.mark.slow
def test_an_error_of_the_code_is_retried_max_failures_times_then_reported(tmp_path, ray_local):
    """A trial that raises at every attempt is retried --max-failures times (1 here), not as often
    as the larger budget for lost nodes (--max-preemptions) allows, and ends as a failure row."""
    from unisemi.ablation.runner import run_table
    from unisemi.ablation.spec import load_spec
    spec = load_spec(str(tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False)))
    fault = {"after_iteration": 3, "marker": str(tmp_path / "fired"), "every": True}
    out = run_table(spec, results_dir=tmp_path / "res", max_failures=1, max_preemptions=5, inject_fault=fault,
                    log=lambda *a: None)
    final = out["store"].final_rows()
    assert out["failed"] == 1 and len(final) == 1
    row = final.iloc[0]
    assert row["status"] == "error" and row["error"] == "RuntimeError: injected fault after iteration 6"
    assert row["retries"] == 1        # failed at 3; retried from its checkpoint, failed at 6: reported
    (key,) = [t.key for t in out["trials"]]
    assert out["store"].pointer(key) is not None         # unfinished: --resume continues it
