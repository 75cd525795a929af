"""Exact resume for every method: a run stopped at its first evaluation and resumed from the
checkpoint ends with the same parameters, buffers (teacher, memory bank, fill counts, class
counts, centroids), optimiser states and final record as the uninterrupted run."""
import json

import pytest
import torch

import two_group_method
from unisemi.config import load_config
from unisemi.methods import METHODS
from unisemi.train import fit

TINY = ["data.size=[32, 64]", "data.n_labelled=8", "data.batch_size=2", "data.unlabelled_batch_size=2",
        "data.val_images=4", "model.width=8", "train.iterations=6", "train.eval_every=3",
        "train.threads=1", "train.progress=false"]
CASES = {
    "supervised": ("supervised_city", []),
    # warm-up ends before the interruption, and the unfiltered bank fills from the first step
    "contrastive": ("contrastive_city", ["contrastive.warmup=2", "contrastive.memory_size=8",
                                         "contrastive.feature_filter=false", "contrastive.proj_dim=16",
                                         "contrastive.attention_hidden=16"]),
    "contrastive-da": ("contrastive_city", ["contrastive.warmup=2", "contrastive.memory_size=8",
                                            "contrastive.feature_filter=false", "contrastive.proj_dim=16",
                                            "contrastive.attention_hidden=16", "contrastive.source_domain=game"]),
    "universal": ("universal_city_town", ["universal.init=random", "universal.gamma=0.5",
                                          "universal.update_every=2", "universal.embed_dim=8"]),
    "two-group": ("supervised_city", ["method=two_group"]),
}


def assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k}"


def assert_same_optimizer(a: dict, b: dict, what: str) -> None:
    assert a["param_groups"] == b["param_groups"], what
    assert a["state"].keys() == b["state"].keys(), what
    for i in a["state"]:
        assert_same_tensors(a["state"][i], b["state"][i], f"{what} state of parameter {i}")


@pytest.mark.parametrize("case", list(CASES))
def test_a_resumed_run_equals_the_uninterrupted_one_in_every_tensor(case, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "two_group", two_group_method)
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path / "cache"))
    preset, extra = CASES[case]
    cfg = load_config(preset, TINY + extra)
    straight = fit(cfg)
    first = fit(cfg, out_dir=tmp_path / "run", stop_after=3)
    assert first["final"]["iteration"] == 3
    resumed = fit(cfg, resume=tmp_path / "run")
    assert resumed["history"][0]["resumed_from"] == 0 and resumed["final"]["resumed_from"] == 3
    assert_same_tensors(straight["model"].state_dict(), resumed["model"].state_dict(), "model")
    state = straight["state"].state_dict()
    assert_same_tensors(state, resumed["state"].state_dict(), "method state")
    assert straight["optimizers"].keys() == resumed["optimizers"].keys()
    for name, opt in straight["optimizers"].items():
        assert_same_optimizer(opt.state_dict(), resumed["optimizers"][name].state_dict(), f"optimizer {name}")
    # as text, so that NaN (a class absent from ground truth and prediction) equals NaN
    assert json.dumps(straight["final"]["domains"]) == json.dumps(resumed["final"]["domains"])
    assert straight["final"]["loss"] == resumed["final"]["loss"]
    if case == "contrastive-da":            # the source trains; only the target is evaluated
        assert set(straight["final"]["domains"]) == {"city"}
    if case.startswith("contrastive"):      # the case exercises what it claims: a filled bank
        assert int(state["fill"].sum()) > 0 and float(state["class_counts"].sum()) > 0
        assert "contr" in straight["final"]["loss"]


def test_checkpoints_between_evaluations_resume_exactly(tmp_path, monkeypatch):
    """train.checkpoint_every=2 with evaluations every 3: `keep` is called at 2 and 4 (not at the
    evaluations 3 and 6), and a run resumed from the iteration-4 checkpoint, mid-interval, ends with
    the uninterrupted run's parameters and its interval-mean losses."""
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path / "cache"))
    cfg = load_config("supervised_city", TINY + ["train.checkpoint_every=2"])
    kept = []

    def keep(iteration, save_checkpoint):
        kept.append(iteration)
        save_checkpoint(tmp_path / f"at{iteration}")

    straight = fit(cfg, keep=keep)
    assert kept == [2, 4]
    resumed = fit(cfg, resume=tmp_path / "at4")
    assert [r["iteration"] for r in resumed["history"]] == [3, 6]      # the history came with it
    assert resumed["final"]["resumed_from"] == 4
    assert_same_tensors(straight["model"].state_dict(), resumed["model"].state_dict(), "model")
    assert json.dumps(straight["final"]["domains"]) == json.dumps(resumed["final"]["domains"])
    assert straight["final"]["loss"] == resumed["final"]["loss"]


def test_checkpoint_every_is_outside_the_trial_identity():
    """It only adds checkpoints, so a stored trial stays the same trial (and keeps its key)."""
    from unisemi.ablation.spec import config_identity
    from unisemi.config import to_dict
    base = config_identity(to_dict(load_config("supervised_city", TINY)))
    assert config_identity(to_dict(load_config("supervised_city", TINY + ["train.checkpoint_every=2"]))) == base
    assert config_identity(to_dict(load_config("supervised_city", TINY + ["train.eval_every=2"]))) != base
