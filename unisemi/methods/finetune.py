"""The `finetune` baseline of the universal paper (Section 4, ablation ii): train on a source
domain's N labels, swap the classifier, fine-tune on the target domain's N labels.

One run: for the first `finetune.source_fraction` of the iterations the shared encoder trains with
a source-only classifier on source batches; then the target's own (so far untouched) head takes
over on target batches. Only the target domain is evaluated, with the model fine-tuned to it.
The learning rate follows one poly schedule over the whole run (the laptop tables), or with
`finetune.restart_schedule` one per phase, the optimiser's momentum dropped at the switch, as two
training runs (train on A, then fine-tune on B) would: the paper profiles' setting.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from unisemi.losses import cross_entropy

NEEDS_UNLABELLED = False


@dataclass(frozen=True)
class Config:
    source_domain: str = ""            # trained first; its labelled split has data.n_labelled images
    source_fraction: float = 0.5       # share of train.iterations spent on the source
    restart_schedule: bool = False     # the target phase starts its own poly schedule at optim.lr


def validate(cfg, bad, active: bool) -> None:
    """Checks of the `finetune:` section; `bad(key, value, expected)` raises the config error."""
    from unisemi.data import known_domains
    if not active:
        return
    f = cfg.finetune
    known = known_domains()
    if len(cfg.data.domains) != 1:
        bad("data.domains", cfg.data.domains, "exactly one (target) domain for method finetune")
    if f.source_domain not in known or f.source_domain in cfg.data.domains:
        bad("finetune.source_domain", f.source_domain, f"a domain other than the target, one of {', '.join(known)}")
    if not 0.0 <= f.source_fraction < 1.0:
        bad("finetune.source_fraction", f.source_fraction, "a fraction in [0, 1)")


def extra_labelled(cfg) -> dict:
    return {cfg.finetune.source_domain: dataclasses.replace(cfg.data)}


class State(nn.Module):
    def __init__(self, cfg, model, n_source: int):
        super().__init__()
        self.cfg = cfg
        self.switch = int(round(cfg.finetune.source_fraction * cfg.train.iterations))
        self.source_head = model.head_builder(model.encoder_channels, int(model.encoder.low_channels),
                                              n_source, model.cfg)


def groups(cfg, model, state) -> list:
    """The default SGD group; with restart_schedule its poly schedule restarts at the switch."""
    from unisemi.optim import default_groups
    out = default_groups(cfg, model, state)
    if cfg.finetune.restart_schedule:
        out[0].restart_at = state.switch
    return out


def build(cfg, model, stages=None) -> nn.Module:
    from unisemi.data import load_domain
    return State(cfg, model, load_domain(cfg.data, cfg.finetune.source_domain).num_classes)


def losses(model, state, batch: dict, step: int) -> dict[str, torch.Tensor]:
    source, target = state.cfg.finetune.source_domain, state.cfg.data.domains[0]
    if step < state.switch:
        x, y = batch["labelled"][source]
        logits, _ = state.source_head(model.encode(x))
        logits = nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {f"source/{source}": cross_entropy(logits, y)}
    x, y = batch["labelled"][target]
    return {f"sup/{target}": cross_entropy(model(x, target)["logits"], y)}

