"""The launch files of the other clusters: cluster.yaml's spot workers and install, and the SLURM
batch script, run against stand-ins of srun, scontrol and python that record what they are asked."""
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "cluster" / "slurm.sbatch"


def test_the_cluster_extra_brings_the_job_server_at_the_same_ray_version():
    tomllib = pytest.importorskip("tomllib")              # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    ray_pin = next(r for r in extras["ray"] if r.startswith("ray["))
    cluster_pin = next(r for r in extras["cluster"] if r.startswith("ray["))
    assert "default" in cluster_pin.split("]")[0]
    assert cluster_pin.split("==")[1] == ray_pin.split("==")[1]
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    installs = [c for c in config["setup_commands"] + config["head_setup_commands"] if "pip install -e" in c]
    assert installs and all(re.search(r'"\.\[[^]]*\bcluster\b[^]]*\]"', c) for c in installs)


def test_spot_workers_are_a_second_node_type_that_is_off_until_swapped():
    pytest.importorskip("ray")
    from ray.autoscaler._private.util import prepare_config, validate_config

    from unisemi.ablation.ray_session import growth_from_launcher_config
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    types = config["available_node_types"]
    spot, demand = types["worker_gpu_spot"], types["worker_gpu"]
    assert spot["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    assert "InstanceMarketOptions" not in demand["node_config"]
    assert spot["node_config"]["InstanceType"] == demand["node_config"]["InstanceType"]
    assert set(growth_from_launcher_config(prepare_config(config)).node_types) == {"worker_gpu"}
    spot["max_workers"], demand["max_workers"] = demand["max_workers"], spot["max_workers"]   # the switch
    validate_config(prepare_config(config))
    assert set(growth_from_launcher_config(prepare_config(config)).node_types) == {"worker_gpu_spot"}


def test_the_slurm_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    text = SBATCH.read_text()
    assert re.search(r"^#SBATCH --nodes=\d+$", text, re.M)
    assert "ray stop" not in text


def _shim(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def slurm(tmp_path):
    """Stand-ins: scontrol lists three nodes, srun records each step with the token variables it
    saw, python records the driver's arguments (exit $DRIVER_RC) and runs anything else for real.
    A listening socket plays the head's port."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    _shim(bin_dir, "scontrol", 'printf "n1\\nn2\\nn3\\n"\n')
    _shim(bin_dir, "srun", f'echo "srun $* | $RAY_AUTH_MODE $RAY_AUTH_TOKEN_PATH" >> {log}\n'
                           'case "$*" in *hostname*) echo "127.0.0.1 fe80::1";; esac\n')
    _shim(bin_dir, "python", f'if [ "$1" = ablations/run.py ]; then\n'
                             f'  echo "driver $* | $RAY_AUTH_MODE $RAY_AUTH_TOKEN_PATH $UNISEMI_CACHE" >> {log}\n'
                             f'  cat "$RAY_AUTH_TOKEN_PATH" >> {log}.token; stat -c %a "$RAY_AUTH_TOKEN_PATH" >> {log}.mode; exit "${{DRIVER_RC:-0}}"\n'
                             f'elif [ "$1" = - ]; then echo "wait $2 $3" >> {log}; cat > /dev/null; exit 0\n'
                             f'fi\nexec {sys.executable} "$@"\n')
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_JOB_NODELIST": "n[1-3]", "SLURM_SUBMIT_DIR": str(ROOT), "SLURM_CPUS_PER_TASK": "8",
           "UNISEMI_SHARED": str(tmp_path / "shared"), "RAY_PORT": str(port), "HOME": str(tmp_path)}
    for k in ("UNISEMI_STORAGE", "UNISEMI_CACHE", "UNISEMI_RESULTS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        env.pop(k, None)
    yield env, log, port, tmp_path / "shared"
    listener.close()


def test_the_slurm_script_starts_a_token_head_and_workers_and_runs_the_table_on_shared_storage(slurm):
    env, log, port, shared = slurm
    run = subprocess.run(["bash", str(SBATCH), "table6", "--profile", "paper"], env={**env, "DRIVER_RC": "3"},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, run.stderr                   # the run's own exit code
    lines = log.read_text().splitlines()
    token = str(shared / ".ray-token-4242")
    auth = f"| token {token}"
    heads = [ln for ln in lines if "ray start --head" in ln]
    workers = [ln for ln in lines if "ray start --block --address" in ln]
    assert len(heads) == 1 and "-w n1 " in heads[0] and f"--port={port}" in heads[0] and heads[0].endswith(auth)
    assert "--node-ip-address=127.0.0.1" in heads[0] and "--num-cpus=8" in heads[0]
    assert sorted(re.search(r"-w (\S+)", w).group(1) for w in workers) == ["n2", "n3"]
    assert all(f"--address=127.0.0.1:{port}" in w and w.endswith(auth) for w in workers)
    assert f"wait 127.0.0.1:{port} 3" in lines                  # every node joined before the driver
    [driver] = [ln for ln in lines if ln.startswith("driver ")]
    assert driver == (f"driver ablations/run.py table6 --profile paper --address 127.0.0.1:{port} --results "
                      f"{shared / 'results'} --storage {shared / 'ray-storage'} | token {token} {shared / 'cache'}")
    assert len(Path(f"{log}.token").read_text().strip()) == 64     # a fresh secret the driver could read
    assert Path(f"{log}.mode").read_text().strip() == "600"        # and nobody else
    assert not Path(token).exists()                                 # and gone with the job
    assert lines.index(heads[0]) < min(lines.index(w) for w in workers)
