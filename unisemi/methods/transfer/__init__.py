"""Transferable semi-supervised segmentation (Xiao et al., AAAI 2018): L-Net and P-Net.

Strong categories have pixel labels, weak ones only image-level labels, and no category is both
(`setting.py`; split-sets in `config.py`). The pipeline, each step a cached stage (`recipes.py`):

1. L-Net (Eq. 1, `lnet.py`): the segmentation network on strong images, labels binarised, BCE;
   its sigmoid is the class-agnostic object mask M of any image.
2. CAM (`cam.py`): a classifier on image-level labels; its maps give seeds per class present.
3. Self-diffusion (Eq. 2, `labels.py` over `unisemi.diffusion`): L_w of every weak image.
4. The segmenter on L_s (strong images' ground truth) plus L_w: `phase: lnet`, the "L-Net" row.
5. P-Net (Table 1, `pnet.py`): pre-trained on strong images, then the segmenter (from stage 4)
   fine-tuned adversarially with it (Eq. 4 for `seg` at 1e-5, Eq. 5 for `pnet` at 1e-3, two update
   groups): `phase: pnet`, the "P-Net" row.
6. The upper bound is method `supervised` on the same images with every label.

Weak images give pixel labels only through L_w. In the embedded world `relabel` replaces the
ground truth of every weak image in a batch before any loss sees it; on a real dataset
(`data.domains: [pascal_voc]`) `label_files` gives the stream the stage's PNG map of every weak
image, which its workers read instead of the ground truth and crop and flip with the image.
Choices the paper leaves open, and what comes from where on real VOC: docs/transfer.md.
"""
from __future__ import annotations

import torch
from torch import nn

from unisemi.losses import cross_entropy
from unisemi.methods.transfer import labels, pnet, recipes
from unisemi.methods.transfer.config import Config, validate  # noqa: F401  (the `transfer:` section)
from unisemi.optim import Group, default_groups

NEEDS_UNLABELLED = False        # weak images are labelled: by L_w, through `relabel`


class State(nn.Module):
    """The generated labels (CPU tables, or a real domain's map files, rebuilt from the stage by
    `build`, not checkpointed) and, in the pnet phase, P-Net."""

    def __init__(self, cfg, weak: dict, pnet_module: nn.Module | None):
        super().__init__()
        from unisemi.data import load_domain
        self.settings = cfg.transfer
        self.domain = cfg.data.domains[0]
        dd = load_domain(cfg.data, self.domain)
        idx = weak["indices"]
        self.weak_row = torch.full((len(dd.labelled) + len(dd.unlabelled),), -1, dtype=torch.long)
        self.weak_row[idx] = torch.arange(len(idx))
        self.weak_maps = weak.get("labels", torch.zeros(0, dtype=torch.uint8))
        # pool index -> L_w file (real domains): every weak image of the pool has one
        self.weak_files = {int(i): str(f) for i, f in zip(idx.tolist(), weak.get("files", []))}
        self.pnet = pnet_module


def build(cfg, model, stages) -> nn.Module:
    c = cfg.transfer
    weak = labels.load(recipes.labels_stage(cfg, stages.get))
    pnet_module = None
    if c.phase == "pnet":
        seg = recipes.segmenter_stage(cfg, stages.get, stages.fit, cfg.train.threads)
        model.load_state_dict(torch.load(seg / recipes.SEGMENTER_FILE, map_location="cpu")["state_dict"])
        pnet_module = pnet.load(recipes.pnet_stage(cfg, stages.get))
    return State(cfg, weak, pnet_module)


def relabel(state, domain: str, indices: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_I of a batch: ground truth for strong images, L_w for weak ones (their ground truth is
    discarded here, before any loss)."""
    if not len(state.weak_maps):
        return y
    rows = state.weak_row[indices.to(torch.long)]
    weak = rows >= 0
    generated = state.weak_maps[rows.clamp_min(0)].to(y.device, y.dtype)
    return torch.where(weak.to(y.device)[:, None, None], generated, y)


def label_files(state, domain: str) -> dict | None:
    """{pool index: L_w file} of a real domain's weak images, which its labelled stream reads in
    place of their ground truth (None for the embedded world, whose maps go through `relabel`)."""
    from unisemi.data import is_real
    if not is_real(domain):
        return None
    if domain == state.domain and len(state.weak_files) != int((state.weak_row >= 0).sum()):
        raise RuntimeError(f"{domain}: the diffusion stage lists no map file for some weak images")
    return state.weak_files if domain == state.domain else {}


def groups(cfg, model, state) -> list[Group]:
    """lnet: one SGD group at `optim.lr`. pnet: the segmenter at `seg_lr` and P-Net at `pnet_lr`
    (SGD with the `optim:` momentum, as the DeepLab setting the paper trains in)."""
    if cfg.transfer.phase == "lnet":
        return default_groups(cfg, model, nn.Module())
    seg = default_groups(cfg, model, nn.Module())[0]
    seg.name, seg.lr = "seg", cfg.transfer.seg_lr
    o = cfg.optim
    disc = Group("pnet", [{"params": list(state.pnet.parameters()), "lr_mult": 1.0}], "sgd",
                 cfg.transfer.pnet_lr, o.momentum, weight_decay=o.weight_decay, poly_power=o.poly_power)
    return [seg, disc]


def losses(model, state, batch: dict, step: int) -> dict:
    c = state.settings
    x, y = batch["labelled"][state.domain]
    logits = model(x, state.domain)["logits"]
    ce = cross_entropy(logits, y)                       # J_m(L_I, O_S(I))
    if c.phase == "lnet":
        return {"ce": ce}
    gen, disc = pnet.adversarial_terms(state.pnet, x, logits, y, c.pnet_max_classes, c.lambda_adv)
    return {"seg": {"ce": ce, "adv": gen}, "pnet": {"bce": disc}}
