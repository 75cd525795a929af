"""A tiny contrastive setting shared by the contrastive tests: its config and one step's inputs."""
import torch

from unisemi.config import load_config
from unisemi.data import load_domain
from unisemi.methods import contrastive as M
from unisemi.models import build_model

TINY = ["data.size=[32, 64]", "data.labelled_fraction=0", "data.n_labelled=8", "data.batch_size=2",
        "data.unlabelled_batch_size=2", "data.val_images=4", "model.width=8", "train.iterations=6",
        "train.eval_every=3", "train.threads=1", "train.progress=false", "contrastive.warmup=2",
        "contrastive.proj_dim=8", "contrastive.attention_hidden=8", "contrastive.memory_size=16",
        "contrastive.confidence=0.0",
        # the method's default class balancing (the release's windows), not the laptop preset's
        "contrastive.class_balance_cumulative=false"]


def state_and_batch(overrides=()):
    """(config, model, method state, one batch of 2 labelled + 2 unlabelled city images)."""
    cfg = load_config("contrastive_city", TINY + list(overrides))
    torch.manual_seed(0)
    dd = load_domain(cfg.data, "city")
    model = build_model(cfg.model, {"city": dd.num_classes})
    state = M.build(cfg, model)
    x, y = dd.fetch("train", dd.labelled[:2])
    xu, _ = dd.fetch("train", dd.unlabelled[:2])
    batch = {"labelled": {"city": (x.float() / 255, y.long())}, "unlabelled": {"city": xu.float() / 255}}
    return cfg, model, state, batch
