"""The paper-scale cost estimator: FLOP counts, step time, device-hours, and `--dry-run --profile paper`."""
import json

import pandas as pd
import pytest
import torch
from torch import nn

from unisemi.ablation import cli, cost, step_flops
from unisemi.ablation.spec import config_identity, expand, load_spec
from unisemi.config import ModelConfig
from unisemi.methods import METHODS


def tiny_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_flop_count_of_a_conv_and_a_linear_matches_the_hand_count():
    # 2 FLOPs per multiply-add; biases and elementwise ops are not counted.
    conv = 2 * (8 * 8 * 4) * (3 * 3 * 3)          # each of 8x8x4 outputs: a 3x3x3 window
    linear = 2 * 256 * 10
    for device in ("cpu", "meta"):
        with torch.device(device):
            net = tiny_net()
        x = torch.zeros(1, 3, 8, 8, device=device)
        assert cost.count_flops(lambda: net(x)) == conv + linear
        # backward: the input needs no gradient, so the conv only computes its weight gradient
        # (one conv's worth); the linear computes its input and weight gradients (two).
        assert cost.count_flops(lambda: net(x).sum().backward()) == 2 * conv + 3 * linear


def test_model_pass_is_cached_per_model_and_shape_and_linear_in_the_batch():
    cost.model_pass.cache_clear()
    model = ModelConfig(encoder="resnet18", head="fcn")
    one, feat = cost.model_pass(model, 19, (64, 64), True)
    again, _ = cost.model_pass(model, 19, (64, 64), True)
    assert one == again and cost.model_pass.cache_info().hits == 1
    assert feat == (512, 8, 8)                    # output stride 8
    with torch.device("meta"):
        net = step_flops._meta_model(model, 19)
    x = torch.empty(3, 3, 64, 64, device="meta")
    assert cost.count_flops(lambda: net(x, "d")["logits"].sum().backward()) == pytest.approx(3 * one, rel=1e-9)


def test_deeplabv2_r101_forward_is_within_2_percent_of_the_contrastive_papers_count():
    # Alonso et al. (Sec. 5.4): 372.04 GFLOPs for one forward at 512x512.
    fwd, feat = cost.model_pass(ModelConfig(encoder="resnet101", head="aspp"), 19, (512, 512), False)
    assert fwd / 1e9 == pytest.approx(372.04, rel=0.02)
    assert feat == (2048, 64, 64)


def test_every_method_has_a_step_and_an_unknown_one_is_a_clear_error():
    assert set(METHODS) <= set(cost.STEPS)

    class Cfg:
        method = "nosuch"
    with pytest.raises(cost.CostError, match="method .nosuch. has no FLOP count in unisemi/ablation/step_flops.py STEPS"):
        cost.step_terms(Cfg, {})


def test_paper_dry_run_prints_the_bill_without_data_or_probe(monkeypatch, tmp_path, capsys):
    def refuse(*a, **k):
        raise AssertionError("a paper dry run must not probe or read data")
    from unisemi.ablation import runner
    from unisemi.data import domain_data
    from unisemi.data import real
    monkeypatch.setattr(runner, "probe_seconds", refuse)
    monkeypatch.setattr(domain_data, "load_domain", refuse)
    monkeypatch.setattr(real, "load_real", refuse)
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path / "no-datasets-here"))
    cost.model_pass.cache_clear()
    assert cli.main(["contrastive/table6", "--profile", "paper", "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # the paper profile's 3 seeds: the paper's mean of three labelled splits
    assert "7 cells x 3 seeds = 21 trials" in out
    assert out.count("3 trials x 150000 iterations x") == 7
    assert "device-hours" in out and "total: 21 trials" in out
    assert "NVIDIA A100" in out and "assumed utilisation 35%" in out and "TFLOP/s sustained" in out
    assert "cityscapes 512x512" in out
    # the seven cells share one model: counted once forward+backward, once forward only
    assert cost.model_pass.cache_info().misses == 2


def test_twice_the_iterations_is_twice_the_device_hours():
    spec = load_spec("universal/table1")
    only = {"method": {"supervised_only"}}
    base, _ = cost.price_table(spec, only=only)
    double, _ = cost.price_table(spec, only=only, overrides={"train": {"iterations": 5200}})
    hours = sum(p.device_hours for p in base)
    assert hours > 0
    assert sum(p.device_hours for p in double) == pytest.approx(2 * hours, rel=1e-12)
    assert [p.flops for p in double] == [p.flops for p in base]


def test_a_stored_gpu_measurement_wins_over_the_flop_estimate():
    spec = load_spec("universal/table1")
    only = {"method": {"supervised_only"}}
    trials, _ = expand(spec, "paper", only=only)
    t = trials[0]

    class Store:
        def exists(self):
            return True

        def final_rows(self):
            return pd.DataFrame([{"status": "ok", "device": "1x NVIDIA H100 80GB HBM3", "iteration": 1000,
                                  "train_s": 90.0, "data_s": 10.0, "workers": 1, "trial": t.key,
                                  "config_json": json.dumps(t.config)}])
    priced = cost.price_trials(trials, Store())
    hit = [p for p in priced if p.source.startswith("measured")]
    assert len(hit) == 1 and hit[0].step_s == pytest.approx(0.1)
    same = [x for x in trials if config_identity(x.config) == config_identity(t.config)]
    iterations = t.config["train"]["iterations"]           # the profile's, not the measured run's
    assert hit[0].device_hours == pytest.approx(len(same) * iterations * 0.1 / 3600)
    assert "measured on 1x NVIDIA H100" in cost.describe_cost(priced)
    # a CPU measurement is not a GPU step time: the estimate stays
    Store.final_rows = lambda self: pd.DataFrame([{"status": "ok", "device": "1x cpu (1 thread, x86_64)",
                                                    "iteration": 1000, "train_s": 90.0, "data_s": 10.0,
                                                    "workers": 1, "trial": t.key,
                                                    "config_json": json.dumps(t.config)}])
    assert all(p.source == "FLOPs" for p in cost.price_trials(trials, Store()))


def test_training_inputs_follow_the_data_layers_protocol_and_a_varying_size_names_the_fix():
    from unisemi.config import build_config
    spec = load_spec("contrastive/table3")                  # VOC: 321x321 crops
    trials, _ = expand(spec, "paper", only={"method": {"ours"}, "fraction": {"r1_50"}})
    cfg = build_config(trials[0].config, "test")
    assert cost.domain_info("pascal_voc", cfg).size == (321, 321)
    assert cost.domain_info("pascal_voc", cfg).classes == 21
    uncropped = build_config({**trials[0].config, "data": {**trials[0].config["data"], "crop": [0, 0]}}, "test")
    with pytest.raises(cost.CostError, match="pascal_voc: no training input size.*data.crop"):
        cost.flops_per_step(uncropped)
