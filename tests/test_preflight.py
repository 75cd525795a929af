"""The driver's checks before Ray starts a trial (unisemi/ablation/preflight.py): one line per
problem and a non-zero exit, with nothing launched."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import TINY, tiny_spec
from fixtures_real import cityscapes_tree
from unisemi.ablation import cli, preflight

ROOT = Path(__file__).resolve().parents[1]


def paper_spec(path) -> Path:
    """tiny_spec with a `paper` profile whose one domain is the real Cityscapes."""
    p = tiny_spec(path, cells=("a",), seeds=1, baseline=False)
    spec = yaml.safe_load(p.read_text())
    spec["profiles"]["paper"] = {"domains": {"main": "cityscapes"}, "set": dict(TINY)}
    spec["paper"] = {"a": {"main": 50.0}}
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def _run(argv, capsys):
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def _no_rows(results: Path) -> bool:
    return not list(results.glob("rows/**/*.parquet"))


@pytest.mark.parametrize("kind", ["file", "loop"])
def test_paper_profile_with_unisemi_data_at_a_file_or_a_symlink_loop_stops_with_one_line(
        tmp_path, monkeypatch, capsys, kind):
    data = tmp_path / "data"
    if kind == "file":
        data.write_text("not a folder")
        why = "is a file"
    else:
        os.symlink(data, data)                  # data -> data: ELOOP on every access
        why = "is a symlink loop or a broken symlink"
    monkeypatch.setenv("UNISEMI_DATA", str(data))
    t0 = time.perf_counter()
    rc, err = _run([str(paper_spec(tmp_path / "specs")), "--profile", "paper",
                    "--results", str(tmp_path / "results")], capsys)
    assert rc == cli.EXIT_REFUSED == 2 and time.perf_counter() - t0 < 20
    assert err == (f"error: UNISEMI_DATA={data} {why} (expected the folder holding the datasets, "
                   f"e.g. cityscapes/)\n")
    assert _no_rows(tmp_path / "results")


def test_a_missing_weights_file_stops_with_one_line(tmp_path, capsys):
    missing = tmp_path / "weights" / "resnet101.pth"
    rc, err = _run([str(tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False)),
                    "--results", str(tmp_path / "results"), "--set", f"model.pretrained={missing}"], capsys)
    assert rc == 2
    assert err == (f"error: model.pretrained={missing}: {missing} does not exist (expected a local weights "
                   f"file; nothing is downloaded)\n")
    assert _no_rows(tmp_path / "results")


def test_weights_that_are_a_folder_not_a_checkpoint_or_fine(tmp_path):
    import torch

    from unisemi.models.encoders import ENCODERS
    folder = tmp_path / "w"
    folder.mkdir()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch checkpoint")
    good = tmp_path / "good.pt"
    torch.save(ENCODERS["tiny"](8, 8).state_dict(), good)
    tiny = {"encoder": "tiny", "width": 8}
    configs = [{"model": {**tiny, "pretrained": str(folder)}},
               {"model": {**tiny, "pretrained": str(good)}},
               {"model": {**tiny, "pretrained": str(garbage)}},
               {"model": {**tiny, "pretrained": "synthetic"}},      # built by the runner
               {"model": {**tiny, "pretrained": "none"}},
               {"model": {**tiny, "pretrained": str(folder)}}]      # the same file once
    problems = preflight.weights_problems(configs)
    assert problems[0] == (f"model.pretrained={folder}: {folder} is a folder (expected a local weights file; "
                           f"nothing is downloaded)")
    assert len(problems) == 2 and problems[1].startswith(f"model.pretrained={garbage}: {garbage} is not a readable "
                                                          f"torch checkpoint")
    assert "\n" not in problems[1]
    # the good file for another width does not fill that encoder
    [wrong] = preflight.weights_problems([{"model": {"encoder": "tiny", "width": 16, "pretrained": str(good)}}])
    assert wrong.startswith(f"model.pretrained={good}: ")


def _cfg(**data):
    return {"data": {"domains": ["cityscapes"], **data}}


def test_dataset_roots_missing_folders_counts_and_a_good_tree(tmp_path):
    env = {"UNISEMI_DATA": str(tmp_path / "data")}
    (tmp_path / "data" / "cityscapes").mkdir(parents=True)        # root there, its folders not
    [line] = preflight.dataset_problems([_cfg()], env)
    assert line.startswith(f"cityscapes: no leftImg8bit/ folder under {tmp_path / 'data' / 'cityscapes'}")
    assert line.endswith(f"(python -m unisemi data check cityscapes {tmp_path / 'data' / 'cityscapes'})")
    tree = cityscapes_tree(tmp_path / "good")                      # a few train pairs, not the published 2975
    n = sum(k.startswith("train/") for k in tree["raw"])
    roots = {"cityscapes": str(tmp_path / "good")}
    [line] = preflight.dataset_problems([_cfg(roots=roots)], env)
    assert line.startswith(f"cityscapes: {n} image/label pairs in the train split under {tmp_path / 'good'}, "
                           f"expected 2975")
    assert preflight.dataset_problems([_cfg(roots=roots, check_counts=False)] * 3, env) == []
    # no root at all, and embedded-world domains need none
    assert preflight.dataset_problems([_cfg()], {}) == [
        "cityscapes: no dataset root: set UNISEMI_DATA to the folder holding cityscapes/ (or data.roots.cityscapes)"]
    assert preflight.dataset_problems([{"data": {"domains": ["city", "game"]}}], {}) == []


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                  # nothing listens there now
    return port


def test_a_bad_address_is_one_line_and_exit_4(tmp_path, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    rc, err = _run([str(tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False)),
                    "--results", str(tmp_path / "results"), "--address", address], capsys)
    assert rc == cli.EXIT_NO_CLUSTER == 4 and time.perf_counter() - t0 < 20
    assert err.startswith(f"error: --address {address}: no Ray head answers there (Connection refused); "
                          f"check the address")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _no_rows(tmp_path / "results")


def test_addresses_that_ray_resolves_itself_are_not_probed():
    assert preflight._host_port("auto") is None and preflight._host_port("local") is None
    assert preflight._host_port("ray://10.0.0.5:10001") == ("10.0.0.5", 10001)
    assert preflight._host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert preflight._host_port("http://10.0.0.5:8265") is None      # not an address ray.init takes
    preflight.probe_address(None)
    preflight.probe_address("auto")


def test_connection_and_token_errors_name_what_to_check():
    ray_exc = pytest.importorskip("ray.exceptions")
    refused = ray_exc.AuthenticationError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect")
    wrapped = ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379")
    wrapped.__cause__ = refused
    no_mode = preflight.unreachable_text(wrapped, "10.0.0.5:6379", env={})
    assert no_mode.startswith("the Ray cluster at 10.0.0.5:6379 requires token authentication and refused this "
                              "driver: RAY_AUTH_MODE is unset, so no token was sent")
    assert no_mode.endswith("export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=<the cluster's token file> "
                            "(cluster.yaml copies it to ~/.ray/unisemi_cluster_token on every node)")
    wrong = preflight.unreachable_text(wrapped, "10.0.0.5:6379",
                                       env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"})
    assert "the token it sent was refused (RAY_AUTH_TOKEN_PATH=/t): it is not the cluster's" in wrong
    absent = ray_exc.AuthenticationError("Token authentication is enabled but no authentication token was found")
    assert "RAY_AUTH_MODE=token but no token was found (RAY_AUTH_TOKEN_PATH=unset)" in preflight.unreachable_text(
        absent, "auto", env={"RAY_AUTH_MODE": "token"})
    plain = preflight.unreachable_text(ConnectionError("Could not find any running Ray instance."), "auto", env={})
    assert plain.startswith("cannot join a Ray cluster at auto: Could not find any running Ray instance.; "
                            "check --address")
    for line in (no_mode, wrong, plain):
        assert "\n" not in line


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.slow
def test_a_token_auth_head_refuses_a_driver_without_or_with_a_wrong_token_in_one_line(tmp_path):
    """A real head with token authentication, in its own temp dir and ports, stopped by its
    process group (never `ray stop`). HOME points into tmp_path so no ~/.ray/auth_token is read
    or left behind."""
    pytest.importorskip("ray")
    token = tmp_path / "token"
    token.write_text("a" * 64)
    home = tmp_path / "home"
    home.mkdir()
    port = _free_port()
    ports = [f"--{k}={_free_port()}" for k in (
        "node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "metrics-export-port", "runtime-env-agent-port", "ray-client-server-port")]
    worker = _free_port()
    env = dict(os.environ, HOME=str(home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    # short: Ray's unix sockets live under it (at most 107 characters)
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", f"--port={port}", f"--temp-dir={temp}", "--num-cpus=0",
         "--include-dashboard=false", "--node-ip-address=127.0.0.1", f"--min-worker-port={worker}",
         f"--max-worker-port={worker + 10}", *ports],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert time.time() < deadline and head.poll() is None, (tmp_path / "head.log").read_text()[-2000:]
                time.sleep(0.2)
        spec = tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False)
        cmd = [sys.executable, str(ROOT / "ablations" / "run.py"), str(spec), "--results", str(tmp_path / "r"),
               "--address", f"127.0.0.1:{port}"]
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        # Ray retries a refused connection for ~20 s; 2 s is enough against a head that is up.
        base.update(HOME=str(home), RAY_gcs_server_port_wait_time_s="2")
        cases = {"without": ({}, "RAY_AUTH_MODE is unset, so no token was sent"),
                 "wrong": ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "b" * 64},
                           "the token it sent was refused (RAY_AUTH_TOKEN_PATH=unset, RAY_AUTH_TOKEN is set)")}
        for name, (extra, why) in cases.items():
            out = subprocess.run(cmd, env={**base, **extra}, capture_output=True, text=True, timeout=120)
            errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
            assert out.returncode == 4, (name, out.stderr[-2000:])
            assert len(errors) == 1 and why in errors[0], (name, out.stderr[-2000:])
            assert "Traceback" not in out.stderr
        assert not (home / ".ray" / "auth_token").exists()
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)       # the head's group: only what this test started
        head.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_the_search_runs_the_same_checks_on_its_base_config(tmp_path, capsys):
    from unisemi import cli as unisemi_cli
    space = str(ROOT / "search_spaces" / "supervised.yaml")
    missing = tmp_path / "nope.pt"
    rc = unisemi_cli.main(["tune", space, "--results", str(tmp_path / "r1"), "--samples", "2",
                           "--set", f"model.pretrained={missing}"])
    assert rc == 2 and capsys.readouterr().err == (
        f"error: model.pretrained={missing}: {missing} does not exist (expected a local weights file; "
        f"nothing is downloaded)\n")
    address = f"127.0.0.1:{_closed_port()}"
    rc = unisemi_cli.main(["tune", space, "--results", str(tmp_path / "r2"), "--samples", "2", "--address", address])
    err = capsys.readouterr().err
    assert rc == 4 and err.startswith(f"error: --address {address}: no Ray head answers there") and err.count("\n") == 1
