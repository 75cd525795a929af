"""The training loop: determinism, exact resume, multi-domain heads, non-finite loss."""
import json

import pytest
import torch

from unisemi.config import load_config
from unisemi.train import NonFiniteLoss, fit

FAST = ["data.size=[32, 64]", "data.n_labelled=12", "data.batch_size=4", "data.val_images=8",
        "model.width=8", "train.progress=false", "train.threads=1"]


def cfg(*extra):
    return load_config("supervised_city", FAST + list(extra))


def same(a, b) -> bool:
    """Equality of metric dicts where NaN (a class absent from GT and prediction) equals NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.state_dict().values() if p.is_floating_point()])


def test_same_config_and_seed_give_identical_numbers():
    a = fit(cfg("train.iterations=6", "train.eval_every=3"))
    b = fit(cfg("train.iterations=6", "train.eval_every=3"))
    assert same(a["final"]["domains"], b["final"]["domains"])
    assert torch.equal(params(a["model"]), params(b["model"]))
    c = fit(cfg("train.iterations=6", "train.eval_every=3", "train.seed=1"))
    assert not torch.equal(params(a["model"]), params(c["model"]))


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    straight = fit(cfg("train.iterations=8", "train.eval_every=4"))
    # Same run, stopped after its first evaluation (a checkpoint is written there), then resumed.
    first = fit(cfg("train.iterations=8", "train.eval_every=4", "train.checkpoint_every=0"),
                out_dir=tmp_path, stop_after=4)
    assert first["final"]["iteration"] == 4
    resumed = fit(cfg("train.iterations=8", "train.eval_every=4"), resume=tmp_path)
    assert torch.equal(params(straight["model"]), params(resumed["model"]))
    assert same(straight["final"]["domains"], resumed["final"]["domains"])
    assert [r["iteration"] for r in resumed["history"]] == [4, 8]


def test_two_domains_each_evaluated_in_its_own_label_space():
    out = fit(cfg("data.domains=[city, town]", "train.iterations=2", "train.eval_every=2"))
    assert set(out["final"]["domains"]) == {"city", "town"}
    assert len(out["final"]["domains"]["city"]["iou"]) == 19
    assert list(out["final"]["domains"]["town"]["iou"])[:3] == ["sky", "building", "pole"]
    assert out["final"]["miou_sum"] == pytest.approx(
        out["final"]["domains"]["city"]["miou"] + out["final"]["domains"]["town"]["miou"])


def test_loss_decreases_on_a_short_run():
    out = fit(cfg("train.iterations=40", "train.eval_every=20", "optim.lr=0.05"))
    first, last = out["history"][0]["loss"]["sup/city"], out["history"][-1]["loss"]["sup/city"]
    assert last < first


def test_non_finite_loss_stops_the_run():
    with pytest.raises(NonFiniteLoss, match="non-finite loss"):
        fit(cfg("train.iterations=4", "train.eval_every=2", "optim.lr=1.0e+30"))
