"""Update groups: each a set of parameters with its own optimiser, learning-rate schedule and
gradient scaler, stepped by the loop on that group's own loss terms.

One group (`default_groups`: SGD over the model and the method state, the heads at
`optim.head_lr_mult`) covers every method that trains one network. Adversarial methods declare
more (the segmenter with SGD, a discriminator with Adam), so that a discriminator never
minimises the generator's objective and the generator's adversarial term never moves it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_GROUP = "main"


@dataclass
class Group:
    """`params` is a list of torch parameter groups, each {"params": [...], "lr_mult": m}."""
    name: str
    params: list
    optimizer: str = "sgd"             # sgd | adam
    lr: float = 0.01
    momentum: float = 0.9              # SGD
    nesterov: bool = False             # SGD
    betas: tuple = (0.9, 0.999)        # Adam
    weight_decay: float = 0.0
    poly_power: float = 0.9            # lr_t = lr * (1 - t / T) ** power
    # > 0: two phases, as two training runs: the poly schedule decays to 0 at this step and starts
    # again from lr, and the optimiser's state (momentum) is dropped there (finetune's target phase)
    restart_at: int = 0

    def parameters(self) -> list:
        return [p for g in self.params for p in g["params"]]


def default_groups(cfg, model, state) -> list[Group]:
    """One SGD group over the model and the method state, as the papers train one network."""
    head = [p for n, p in model.named_parameters() if n.startswith("heads.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("heads.") and p.requires_grad]
    rest += [p for p in state.parameters() if p.requires_grad]
    o = cfg.optim
    return [Group(DEFAULT_GROUP, [{"params": rest, "lr_mult": 1.0},
                                  {"params": head, "lr_mult": o.head_lr_mult}],
                  "sgd", o.lr, o.momentum, weight_decay=o.weight_decay, poly_power=o.poly_power)]


def build_optimizer(group: Group) -> torch.optim.Optimizer:
    if group.optimizer == "sgd":
        return torch.optim.SGD(group.params, lr=group.lr, momentum=group.momentum,
                               weight_decay=group.weight_decay, nesterov=group.nesterov)
    if group.optimizer == "adam":
        return torch.optim.Adam(group.params, lr=group.lr, betas=tuple(group.betas),
                                weight_decay=group.weight_decay)
    raise ValueError(f"update group '{group.name}': optimizer {group.optimizer!r} is not sgd or adam")


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    return base * (1.0 - step / total) ** power


def set_lr(optimizer: torch.optim.Optimizer, group: Group, step: int, total: int) -> float:
    """Apply the group's poly schedule at `step`; returns the base (multiplier 1) rate."""
    r = group.restart_at
    if 0 < r < total:
        if step == r:
            optimizer.state.clear()
        lr = poly_lr(group.lr, step, r, group.poly_power) if step < r else \
            poly_lr(group.lr, step - r, total - r, group.poly_power)
    else:
        lr = poly_lr(group.lr, step, total, group.poly_power)
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
    return lr


def check_groups(groups: list[Group]) -> None:
    """Names unique, and no parameter in two groups (it would be stepped twice)."""
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"update groups have duplicate names: {names}")
    seen: dict[int, str] = {}
    for g in groups:
        for p in g.parameters():
            if id(p) in seen:
                raise ValueError(f"a parameter is in update groups '{seen[id(p)]}' and '{g.name}'")
            seen[id(p)] = g.name


def terms_by_group(terms: dict, groups: list[Group]) -> dict[str, dict]:
    """A method's loss terms per group: a flat {term: tensor} belongs to the first group."""
    names = [g.name for g in groups]
    if terms and all(isinstance(v, dict) for v in terms.values()):
        unknown = sorted(set(terms) - set(names))
        if unknown:
            raise ValueError(f"losses returned terms for unknown update group(s) {unknown} "
                             f"(groups: {', '.join(names)})")
        return {n: terms.get(n, {}) for n in names}
    return {names[0]: terms, **{n: {} for n in names[1:]}}


def step_groups(groups: list[Group], losses: dict, optimizers: dict, scalers: dict, average) -> None:
    """Backpropagate each group's loss into that group's parameters only, then average each
    group's gradients over ranks (`average(params)`) and step its optimiser, in the groups' order.

    Every backward runs before any step, on the weights the losses were computed with; `inputs`
    keeps a discriminator's loss off the generator and the generator's adversarial term off the
    discriminator; the graph is kept until the last backward, as the groups' terms may share it."""
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    stepped = [g for g in groups if g.name in losses]
    for i, g in enumerate(stepped):
        only = g.parameters() if len(groups) > 1 else None
        scalers[g.name].scale(losses[g.name]).backward(inputs=only, retain_graph=i < len(stepped) - 1)
    for g in stepped:
        average(g.parameters())
        scalers[g.name].step(optimizers[g.name])
        scalers[g.name].update()
