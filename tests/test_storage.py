"""Ray's storage for a run (--storage): how it is resolved, and the probe that refuses a folder some
node does not see (the multi-node refusal itself is in test_multinode.py)."""
from pathlib import Path

import pytest

from unisemi.ablation import storage


def test_storage_is_the_flag_else_the_variable_else_the_results_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(storage.ENV, raising=False)
    assert storage.resolve(None, tmp_path / "res") == str((tmp_path / "res" / "ray").resolve())
    monkeypatch.setenv(storage.ENV, "s3://bucket/runs")
    assert storage.resolve(None, tmp_path) == "s3://bucket/runs"
    assert storage.resolve(str(tmp_path / "nfs"), tmp_path) == str(tmp_path / "nfs")   # the flag wins
    monkeypatch.chdir(tmp_path)
    assert storage.resolve("shared/ray", "x") == str(tmp_path / "shared" / "ray")       # made absolute
    assert storage.resolve(f"file://{tmp_path}/a", "x") == str(tmp_path / "a")
    assert storage.resolve("gs://b/p?project=x", "x") == "gs://b/p?project=x"


def test_an_unknown_scheme_is_one_line_naming_the_value():
    with pytest.raises(storage.StorageError) as err:
        storage.resolve("ftp://host/x", "results")
    assert str(err.value).startswith("--storage ftp://host/x: unknown scheme 'ftp://', expected one of s3://")
    assert "\n" not in str(err.value)


def test_join_and_uri_of_keep_a_query_string_last():
    assert storage.join("s3://b/root?endpoint_override=h:9000", "exp", "trial_1/") == \
        "s3://b/root/exp/trial_1?endpoint_override=h:9000"
    assert storage.join("/mnt/nfs/ray/", "train") == "/mnt/nfs/ray/train"
    # Ray gives paths inside its filesystem: an S3 bucket path has no scheme
    assert storage.uri_of("s3://b/root", "b/root", "b/root/exp/trial_1/checkpoint_000002") == \
        "s3://b/root/exp/trial_1/checkpoint_000002"
    assert storage.uri_of("/mnt/ray", "/mnt/ray", "/mnt/ray") == "/mnt/ray"


def test_a_uri_is_not_probed_and_one_node_needs_no_probe(tmp_path, ray_local):
    assert storage.check_storage("s3://bucket/x", nodes=[]) == "uri"
    assert storage.check_storage(str(tmp_path / "s")) == "one node"


def test_a_node_that_finds_no_marker_is_named_and_the_marker_is_removed(tmp_path, ray_local, monkeypatch):
    """The probe's decision, on one real node posing as another: its task reads the marker through a
    path where the folder is not (what a node with its own disk sees)."""
    import ray
    here = ray.get_runtime_context().get_node_id()
    node = {"NodeID": here, "Alive": True, "NodeManagerAddress": "10.0.0.7"}
    monkeypatch.setattr(ray.runtime_context.RuntimeContext, "get_node_id", lambda self: "driver-node")
    # the same node, reading its marker: a shared folder
    assert storage.check_storage(str(tmp_path / "shared"), nodes=[node]) == "shared by 2 nodes"
    # a reader that sees nothing there: refused, one line, what to pass
    monkeypatch.setattr(storage, "_read_marker", lambda path: None)
    with pytest.raises(storage.StorageError) as err:
        storage.check_storage(str(tmp_path / "local"), nodes=[node])
    msg = str(err.value)
    assert msg.startswith(f"--storage {tmp_path / 'local'}: a folder on the driver's node that node(s) 10.0.0.7 ")
    assert msg.endswith("pass --storage s3://... or a path mounted on every node") and "\n" not in msg
    assert not list(Path(tmp_path / "local").iterdir())           # the marker is gone either way
