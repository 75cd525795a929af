"""`losses` never writes a method's state; `update`, once per step, is the one place that does."""
import torch

from contrastive_case import state_and_batch
from unisemi.methods import contrastive as M


def snapshot(state):
    """The method's own state: its buffers and the teacher. (The student heads' batch-norm
    statistics move with every training forward pass, as the model's do; that is not a write.)"""
    return {k: v.clone() for k, v in state.state_dict().items() if not k.startswith("heads.")}


def test_contrastive_losses_called_twice_push_nothing_and_update_pushes_once():
    cfg, model, state, batch = state_and_batch([
        "contrastive.warmup=0", "contrastive.memory_size=8", "contrastive.feature_filter=false",
        "contrastive.class_balance_cumulative=true"])
    before = snapshot(state)
    M.losses(model, state, batch, step=1)
    M.losses(model, state, batch, step=1)
    after = snapshot(state)
    assert {"memory", "fill", "class_counts"} <= set(before)
    for k in before:                              # bank, fill, counts, teacher: untouched
        assert torch.equal(before[k], after[k]), k
    proposed = batch["updates"]
    assert int(proposed["fill"].sum()) > 0 and float(proposed["class_counts"].sum()) > 0
    M.update(model, state, batch, step=1)
    assert torch.equal(state.fill, proposed["fill"]) and torch.equal(state.memory, proposed["memory"])
    assert torch.equal(state.class_counts, proposed["class_counts"])
    # one push: the second losses call replaced the first call's proposal, it did not add to it
    assert int(state.fill.max()) <= 2 * state.per_image
