"""Update groups: each group's loss moves only its own parameters, stepped by its own optimiser."""
import pytest
import torch

import two_group_method
from unisemi.config import ConfigError, build_config, load_config, to_dict
from unisemi.methods import METHODS
from unisemi.optim import Group, build_optimizer, step_groups, terms_by_group
from unisemi.train import fit

TINY = ["data.size=[32, 64]", "data.n_labelled=8", "data.batch_size=2", "data.val_images=4",
        "model.width=8", "train.iterations=4", "train.eval_every=2", "train.threads=1",
        "train.progress=false"]


def test_two_groups_by_hand_each_loss_moves_only_its_own_parameters():
    g = torch.nn.Parameter(torch.tensor(1.0))
    d = torch.nn.Parameter(torch.tensor(2.0))
    groups = [Group("gen", [{"params": [g], "lr_mult": 1.0}], "sgd", 0.1, momentum=0.0),
              Group("disc", [{"params": [d], "lr_mult": 1.0}], "adam", 0.1, betas=(0.9, 0.99))]
    opts = {x.name: build_optimizer(x) for x in groups}
    scalers = {x.name: torch.amp.GradScaler("cpu", enabled=False) for x in groups}
    gen_loss = (g * d - 1) ** 2        # d/dg = 2(gd-1)d = 4 (its d/dd = 2 must not reach d)
    disc_loss = (g * d) ** 2           # d/dd = 2 g^2 d = 4 (its d/dg = 8 must not reach g)
    step_groups(groups, {"gen": gen_loss, "disc": disc_loss}, opts, scalers, lambda params: None)
    assert g.grad.item() == 4.0 and d.grad.item() == 4.0
    assert g.item() == pytest.approx(1.0 - 0.1 * 4.0, abs=1e-7)           # SGD: 0.6
    # Adam's first step: lr * m_hat / (sqrt(v_hat) + eps) = 0.1 * 4 / (4 + 1e-8)
    assert d.item() == pytest.approx(2.0 - 0.1 * 4.0 / (4.0 + 1e-8), abs=1e-7)


def test_flat_terms_belong_to_the_first_group_and_unknown_groups_are_named():
    groups = [Group("seg", []), Group("disc", [])]
    assert terms_by_group({"sup": 1}, groups) == {"seg": {"sup": 1}, "disc": {}}
    with pytest.raises(ValueError, match=r"unknown update group\(s\) \['gan'\].*seg, disc"):
        terms_by_group({"gan": {"x": 1}}, groups)


@pytest.fixture
def two_group(monkeypatch):
    monkeypatch.setitem(METHODS, "two_group", two_group_method)     # the method's one registry line
    return load_config("supervised_city", TINY + ["method=two_group", "two_group.d_lr=0.05"])


def test_a_method_registered_with_one_line_brings_its_own_config_section(two_group):
    assert two_group.two_group.d_lr == 0.05 and "two_group" in to_dict(two_group)
    with pytest.raises(ConfigError, match="key 'two_group.d_lr': -1.0 is not valid"):
        build_config({**to_dict(two_group), "two_group": {"d_lr": -1.0}})


def test_fit_steps_the_discriminator_on_its_own_loss_only(two_group, tmp_path):
    cfg = build_config({**to_dict(two_group), "train": {**to_dict(two_group)["train"], "iterations": 1,
                                                          "eval_every": 1}})
    result = fit(cfg, out_dir=tmp_path)
    d = result["state"].d.item()
    # Adam's first step on (d - 3)^2 + d * mean(logits): a step of lr * sign(grad) = 0.05 either
    # way; the generator's adversarial term 0.5 d mean(logits) must not add to it.
    from unisemi import checkpoint
    ck = checkpoint.load(tmp_path)
    assert set(ck["optimizers"]) == {"seg", "disc"} and set(ck["scalers"]) == {"seg", "disc"}
    adam = ck["optimizers"]["disc"]["state"][0]
    grad = adam["exp_avg"].item() / (1 - 0.9)            # m_1 = (1 - beta1) g
    assert adam["exp_avg_sq"].item() == pytest.approx((1 - 0.99) * grad ** 2, rel=1e-6)
    assert d == pytest.approx(2.0 - 0.05 * grad / (abs(grad) + 1e-8), abs=1e-6)
    # and grad is the discriminator loss's own gradient: 2 (d - 3) + mean(logits), with
    # mean(logits) < 1 in magnitude for a fresh head, so it is negative and d moved up
    assert -3.0 < grad < -1.0 and d > 2.0
    assert set(result["final"]["loss"]) == {"seg:sup", "seg:adv", "disc:fit"}
    assert result["final"]["lrs"]["disc"] == 0.05 and result["final"]["lrs"]["seg"] == cfg.optim.lr


def test_changing_one_groups_loss_leaves_the_other_groups_step_unchanged(two_group):
    def one_step(*extra):
        cfg = load_config("supervised_city", TINY + ["method=two_group", "train.iterations=1",
                                                     "train.eval_every=1", *extra])
        r = fit(cfg)
        return r["model"].state_dict(), r["state"].d.grad.item()     # d's gradient of the step

    base_model, base_d = one_step()           # base_d: the discriminator's gradient
    # the discriminator's loss without its logits term: the segmenter's step is bit-identical
    model, d = one_step("two_group.disc_sees_logits=false")
    assert d != base_d
    for k, v in base_model.items():
        assert torch.equal(v, model[k]), k
    # the generator without its adversarial term: the discriminator's step is bit-identical
    model, d = one_step("two_group.lambda_adv=0")
    assert d == base_d
    assert any(not torch.equal(v, model[k]) for k, v in base_model.items())
