"""A toy method with two update groups, as an adversarial method declares them: the segmenter
(SGD, the default settings) and a one-weight "discriminator" d with Adam at its own rate.

Its registration in a test is the one line a real method gets in unisemi/methods/__init__.py:
    METHODS["two_group"] = two_group_method
The generator's loss has an adversarial term d * mean(logits) that depends on d, and the
discriminator's loss (d - target)^2 + d * mean(logits) depends on the logits: if either loss
leaked into the other group's parameters, d or the segmenter would move differently.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unisemi.losses import cross_entropy
from unisemi.optim import Group, default_groups

NEEDS_UNLABELLED = False


@dataclass(frozen=True)
class Config:
    d_lr: float = 0.1           # the discriminator's Adam rate
    d_init: float = 2.0
    target: float = 3.0
    lambda_adv: float = 0.5
    disc_sees_logits: bool = True


def validate(cfg, bad, active: bool) -> None:
    if cfg.two_group.d_lr <= 0:
        bad("two_group.d_lr", cfg.two_group.d_lr, "a learning rate > 0")


def build(cfg, model, stages=None) -> nn.Module:
    state = nn.Module()
    state.settings = cfg.two_group
    state.d = nn.Parameter(torch.tensor(float(cfg.two_group.d_init)))
    return state


def groups(cfg, model, state) -> list[Group]:
    seg = default_groups(cfg, model, nn.Module())[0]          # the model only, not the state
    seg.name = "seg"
    disc = Group("disc", [{"params": [state.d], "lr_mult": 1.0}], "adam", cfg.two_group.d_lr,
                 betas=(0.9, 0.99), poly_power=0.0)
    return [seg, disc]


def losses(model, state, batch: dict, step: int) -> dict:
    c = state.settings
    (domain, (x, y)), = batch["labelled"].items()
    logits = model(x, domain)["logits"]
    return {"seg": {"sup": cross_entropy(logits, y), "adv": c.lambda_adv * state.d * logits.mean()},
            "disc": {"fit": (state.d - c.target) ** 2 + c.disc_sees_logits * state.d * logits.mean()}}
