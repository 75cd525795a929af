"""What a trial asks Ray for, and whether a cluster can ever give it: pure functions on resource
dicts, no Ray instance needed (the end-to-end check is in test_ablation_cluster.py)."""
import os
from pathlib import Path

import pytest
import yaml

from unisemi.ablation import ray_session as rs

ROOT = Path(__file__).resolve().parents[1]
LAPTOP = [{"CPU": 2.0, "memory": 1e10, "node:__internal_head__": 1.0}]


def test_a_torch_trainer_trial_is_its_driver_plus_n_workers_of_the_asked_resources():
    r = rs.trial_resources(workers=2, cpus=1, gpus=0.5)
    assert r.driver == {"CPU": rs.DRIVER_CPU}
    assert r.bundles() == [{"CPU": 0.01}, {"CPU": 1.0, "GPU": 0.5}, {"CPU": 1.0, "GPU": 0.5}]
    assert r.total() == pytest.approx({"CPU": 2.01, "GPU": 1.0})
    assert r.describe() == "driver {CPU: 0.01} + 2 workers x {CPU: 1, GPU: 0.5} = {CPU: 2.01, GPU: 1}"
    inproc = rs.trial_resources(workers=0, cpus=1, gpus=0.25)
    assert inproc.bundles() == [{"CPU": 1.0, "GPU": 0.25}] and inproc.describe().endswith("(in-process fit)")
    with pytest.raises(ValueError, match="--workers-per-trial -1"):
        rs.trial_resources(-1, 1)
    with pytest.raises(ValueError, match="not both 0"):
        rs.trial_resources(0, 0, 0)


def _reserved(trainable) -> dict:
    pgf = getattr(trainable, "_resources", None) or trainable.default_resource_request({})
    return {k: v for k, v in pgf.required_resources.items() if v}


def test_tune_reserves_the_trial_driver_and_gpus_for_in_process_trials():
    pytest.importorskip("ray")
    def fn(config):
        pass
    assert _reserved(rs.trainable(fn, rs.trial_resources(0, 2, 1))) == {"CPU": 2.0, "GPU": 1.0}
    assert _reserved(rs.trainable(fn, rs.trial_resources(3, 1, 1))) == {"CPU": 0.01}   # workers: Ray Train's


def test_only_in_process_trials_reuse_their_actor():
    pytest.importorskip("ray")
    assert rs.tune_config(2, rs.trial_resources(0, 1)).reuse_actors is True
    assert rs.tune_config(2, rs.trial_resources(2, 1)).reuse_actors is False
    assert rs.tune_config(2, rs.trial_resources(0, 1), reuse_actors=False).reuse_actors is False


def test_gpus_make_trials_train_on_cuda_and_cpu_slots_set_threads():
    cfg = rs.for_resources({"train": {"device": "cpu", "threads": 0}}, rs.trial_resources(0, 2, 1))
    assert cfg["train"] == {"device": "cuda", "threads": 2}
    cfg = rs.for_resources({"train": {"device": "cpu", "threads": 0}}, rs.trial_resources(2, 1, 0))
    assert cfg["train"] == {"device": "cpu", "threads": 0}        # TorchTrainer workers: torch's default
    cfg = rs.for_resources({"train": {"device": "auto", "threads": 3}}, rs.trial_resources(2, 1, 0.5))
    assert cfg["train"] == {"device": "auto", "threads": 3}       # explicit choices stay


def test_a_fixed_cluster_too_small_is_an_error_naming_the_request_and_the_cluster():
    decision = rs.placement(rs.trial_resources(2, 1), LAPTOP)
    assert decision.verdict == "never"
    msg = decision.message
    assert "\n" not in msg
    assert "driver {CPU: 0.01} + 2 workers x {CPU: 1} = {CPU: 2.01}" in msg
    assert "fixed-size Ray cluster has 1 node with {CPU: 2, GPU: 0} in all, at most {CPU: 2, GPU: 0} on one node" in msg
    # GPUs on a CPU-only machine can never be had either
    msg = rs.placement(rs.trial_resources(0, 1, 1), LAPTOP).message
    assert "{CPU: 1, GPU: 1} (in-process fit)" in msg and "{CPU: 2, GPU: 0} in all" in msg


def test_a_request_that_fits_is_ok():
    assert rs.placement(rs.trial_resources(2, 0.5), LAPTOP) == rs.Placement("fits")
    assert rs.placement(rs.trial_resources(0, 2), LAPTOP).verdict == "fits"
    gpu_node = [{"CPU": 4.0, "GPU": 1.0}]
    assert rs.placement(rs.trial_resources(2, 1, 0.5), gpu_node).verdict == "fits"    # two workers share it
    assert rs.placement(rs.trial_resources(3, 1, 0.5), gpu_node).verdict == "never"


def test_each_worker_must_fit_on_one_node_not_just_in_the_total():
    two_small = [{"CPU": 1.0}, {"CPU": 1.0}]
    assert rs.placement(rs.trial_resources(2, 0.9), two_small).verdict == "fits"     # one worker per node
    # 1.51 CPU in all is less than the 2 there are, but no node holds a 1.5-CPU worker
    decision = rs.placement(rs.trial_resources(1, 1.5), two_small)
    assert decision.verdict == "never" and "at most {CPU: 1, GPU: 0} on one node" in decision.message
    # the driver takes its sliver from a node that then cannot hold a whole worker
    assert rs.placement(rs.trial_resources(2, 1), two_small).verdict == "never"
    assert rs.placement(rs.trial_resources(2, 1), two_small + [{"CPU": 0.5}]).verdict == "fits"


def test_an_autoscaling_cluster_says_what_it_waits_for():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    growth = rs.growth_from_launcher_config(config)
    assert set(growth.node_types) == {"worker_gpu"}               # the head never grows
    assert growth.node_types["worker_gpu"][1] == 8
    head_only = [{"memory": 3e10}]                                # cluster.yaml's head has CPU: 0
    decision = rs.placement(rs.trial_resources(1, 1, 1), head_only, growth)
    assert decision.verdict == "waits"
    assert decision.message.startswith("waiting for the autoscaler: each trial asks for driver {CPU: 0.01} + 1 worker x {CPU: 1, GPU: 1}")
    assert "up to 8 x worker_gpu" in decision.message and "\n" not in decision.message
    # with the instance types' resources known (ray up fills them in), a request beyond any node fails
    config["available_node_types"]["worker_gpu"]["resources"] = {"CPU": 8, "GPU": 1}
    growth = rs.growth_from_launcher_config(config)
    assert rs.placement(rs.trial_resources(1, 1, 1), head_only, growth).verdict == "waits"
    decision = rs.placement(rs.trial_resources(1, 1, 2), head_only, growth)
    assert decision.verdict == "never" and "even at its largest" in decision.message


def test_a_launcher_config_that_cannot_grow_is_a_fixed_cluster():
    config = {"max_workers": 2, "head_node_type": "head",
              "available_node_types": {"head": {"resources": {"CPU": 4}, "max_workers": 0},
                                       "w": {"resources": {"CPU": 4}, "min_workers": 2, "max_workers": 2}}}
    assert rs.growth_from_launcher_config(config) is None
    config["max_workers"] = 0                                     # the global cap wins
    config["available_node_types"]["w"].update(min_workers=0, max_workers=4)
    assert rs.growth_from_launcher_config(config) is None
    # no launcher config here, and no autoscaler has reported a cluster config to the GCS
    assert rs.detect_growth(ROOT / "no_such_bootstrap_config.yaml") is None


def test_an_autoscaler_v2_cluster_config_in_the_gcs_counts_as_growth():
    pytest.importorskip("ray")
    from ray.core.generated import autoscaler_pb2

    config = autoscaler_pb2.ClusterConfig()
    fixed = config.node_group_configs.add(name="fixed", min_count=2, max_count=2)
    fixed.resources["CPU"] = 4
    gpu = config.node_group_configs.add(name="gpu", min_count=0, max_count=-1)
    gpu.resources.update({"CPU": 8, "GPU": 1})
    growth = rs.growth_from_gcs_config(config)
    assert set(growth.node_types) == {"gpu"} and growth.node_types["gpu"][0] == {"CPU": 8.0, "GPU": 1.0}
    assert rs.growth_from_gcs_config(None) is None


def test_default_concurrency_counts_whole_trials_per_node():
    assert rs.trials_at_once(rs.trial_resources(0, 1), LAPTOP, limit=14) == 2
    assert rs.trials_at_once(rs.trial_resources(2, 0.5), LAPTOP, limit=14) == 1   # 1.01 + 1.01 > 2
    assert rs.trials_at_once(rs.trial_resources(0, 1), LAPTOP, limit=1) == 1
    assert rs.trials_at_once(rs.trial_resources(0, 4), LAPTOP, limit=5) == 1      # never 0
    eight_gpus = [{"CPU": 8.0, "GPU": 1.0}] * 8
    assert rs.trials_at_once(rs.trial_resources(1, 1, 1), eight_gpus, limit=20) == 8


def test_pending_trials_on_an_autoscaling_cluster_are_reported_periodically():
    pytest.importorskip("ray")
    now, lines = [0.0], []

    class T:
        def __init__(self, status):
            self.status = status

    growth = rs.Growth({"worker_gpu": ({}, 8)})
    reporter = rs.pending_reporter(rs.trial_resources(1, 1, 1), growth, lines.append, every_s=60,
                                   clock=lambda: now[0], nodes=lambda: [{}])
    for t in (10, 59, 61, 100, 125, 200):
        now[0] = t
        reporter.on_step_end(0, [T("PENDING"), T("PENDING"), T("RUNNING")])
    assert len(lines) == 3                                        # at 61, 125 and 200 s
    assert lines[0].startswith("waiting for the autoscaler: 2 trials pending; each trial asks for driver")
    now[0] = 400
    reporter.on_step_end(0, [T("RUNNING")])                       # nothing waits: silence
    now[0] = 450
    reporter.on_step_end(0, [T("PENDING")])
    assert len(lines) == 3


def test_local_workers_import_the_drivers_checkout_first(monkeypatch):
    import unisemi
    from unisemi.ablation.ray_session import local_pythonpath
    root = str(Path(unisemi.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", root, "/other"]))
    assert local_pythonpath().split(os.pathsep) == [root, "/elsewhere", "/other"]
    monkeypatch.delenv("PYTHONPATH")
    assert local_pythonpath() == root
