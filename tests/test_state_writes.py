"""`losses` never writes a method's state; `update`, once per step, is the one place that does."""
import torch

from unisemi.config import load_config
from unisemi.data import load_domain
from unisemi.methods import contrastive as M
from unisemi.models import build_model

TINY = ["data.size=[32, 64]", "data.n_labelled=8", "data.batch_size=2", "data.unlabelled_batch_size=2",
        "data.val_images=4", "model.width=8", "train.threads=1", "train.progress=false",
        "contrastive.warmup=0", "contrastive.memory_size=8", "contrastive.feature_filter=false",
        "contrastive.proj_dim=16", "contrastive.attention_hidden=16"]


def snapshot(state):
    """The method's own state: its buffers and the teacher. (The student heads' batch-norm
    statistics move with every training forward pass, as the model's do; that is not a write.)"""
    return {k: v.clone() for k, v in state.state_dict().items() if not k.startswith("heads.")}


def test_contrastive_losses_called_twice_push_nothing_and_update_pushes_once():
    cfg = load_config("contrastive_city", TINY)
    torch.manual_seed(0)
    dd = load_domain(cfg.data, "city")
    model = build_model(cfg.model, {"city": dd.num_classes})
    state = M.build(cfg, model)
    x, y = dd.fetch("train", dd.labelled[:2])
    xu, _ = dd.fetch("train", dd.unlabelled[:2])
    batch = {"labelled": {"city": (x.float() / 255, y.long())}, "unlabelled": {"city": xu.float() / 255}}
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
