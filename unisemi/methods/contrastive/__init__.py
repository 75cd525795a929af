"""Semi-supervised segmentation with pixel-level contrastive learning from a class-wise memory
bank (Alonso et al., ICCV 2021), as one plug-in of the shared training loop.

One step (`losses`): the teacher labels the un-augmented unlabelled images (Eq. 5); the student
sees weakly augmented labelled images and A strong views of the unlabelled ones in one pass;
L = l_sup L_sup + l_pseudo L_pseudo + l_ent L_ent + l_contr L_contr (Eq. 1). The teacher's
projections of labelled pixels refill the memory bank (FQF, attention ranking, FIFO) before the
contrastive term reads it, as in the release. `losses` never writes the state: the refilled bank
and the class counts it computed go to `batch["updates"]`, and `update`, after the optimiser
step, writes them and moves the teacher (EMA, Eq. 2). A second `losses` call pushes nothing.

Interpretation choices where the paper is silent are listed in docs/contrastive.md.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from unisemi.data import augment as aug
from unisemi.data.transforms import normalize_float
from unisemi.losses import IGNORE_INDEX, entropy_from_logp
from unisemi.methods.contrastive.attention import ClassAttention
from unisemi.methods.contrastive.config import Config, validate  # noqa: F401  (the `contrastive:` section)
from unisemi.methods.contrastive.loss import contrastive_loss, l1_normalised
from unisemi.methods.contrastive.memory import push, select
from unisemi.methods.teacher import cosine_tau, ema_update, make_teacher

NEEDS_UNLABELLED = True
RAW_IMAGES = True          # the method augments float [0, 1] images itself, then normalises


def mlp(cin: int, dim: int) -> nn.Sequential:
    """Projection / prediction head: Linear, BN, ReLU, Linear (paper Section 4.2)."""
    return nn.Sequential(nn.Linear(cin, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


class ContrastiveHeads(nn.Module):
    def __init__(self, feature_channels: int, num_classes: int, dim: int, hidden: int):
        super().__init__()
        self.projection = mlp(feature_channels, dim)
        self.prediction = mlp(dim, dim)
        self.attention_pred = ClassAttention(num_classes, dim, hidden)
        self.attention_mem = ClassAttention(num_classes, dim, hidden)


class State(nn.Module):
    """Everything the method adds to the model; all of it is checkpointed."""

    def __init__(self, cfg, model, domain: str, num_classes: int, n_labelled: int):
        super().__init__()
        c = cfg.contrastive
        self.cfg, self.domain, self.num_classes = cfg, domain, num_classes
        self.total_steps = cfg.train.iterations
        # max(1, psi / |X_l|), rounded with Python's round as the release; its VOC branch: x C / 3
        self.per_image = (max(1, int(num_classes / 3 * round(c.memory_size / max(n_labelled, 1))))
                          if c.released_push_count_voc else max(1, round(c.memory_size / max(n_labelled, 1))))
        self.heads = ContrastiveHeads(model.feature_channels, num_classes, c.proj_dim, c.attention_hidden)
        self.teacher = make_teacher(model)
        self.teacher_heads = make_teacher(self.heads)
        self.register_buffer("memory", torch.zeros(num_classes, c.memory_size, c.proj_dim))
        self.register_buffer("fill", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("class_counts", torch.zeros(num_classes, dtype=torch.float64))


def extra_labelled(cfg) -> dict:
    """The DA source domain, every train image labelled (sampled with the target's labelled set)."""
    c = cfg.contrastive
    if not c.source_domain or c.released_source_never_sampled:
        return {}
    return {c.source_domain: dataclasses.replace(cfg.data, labelled_fraction=1.0)}


def build(cfg, model, stages=None) -> nn.Module:
    from unisemi.data import load_domain
    domain = cfg.data.domains[0]
    dd = load_domain(cfg.data, domain)
    return State(cfg, model, domain, dd.num_classes, len(dd.labelled))


# ---------------------------------------------------------------------------------------------
# pieces of the step

def class_weights(counts: torch.Tensor) -> torch.Tensor:
    """alpha_c = sqrt(f_median / f_c) over the classes seen so far; unseen classes get the largest
    weight, and all ones before any count exists."""
    seen = counts > 0
    f = counts / counts.sum().clamp_min(1)
    median = torch.nanmedian(torch.where(seen, f, torch.full_like(f, float("nan"))))
    w = torch.sqrt(median / f.clamp_min(1e-30))
    w = torch.where(seen, w, torch.where(seen, w, torch.full_like(w, -math.inf)).max())
    return torch.where(seen.any(), w, torch.ones_like(w)).float()   # no host sync


def weighted_ce(logits, target, class_weight=None, pixel_weight=None, over_all_pixels: bool = False):
    """Eq. 3: mean over pixels of alpha_y * beta_n * CE. The mean runs over valid pixels, or over
    all pixels (void ones count as 0) when `over_all_pixels`, as the release averages L_pseudo."""
    return weighted_nll(F.log_softmax(logits, 1), target, class_weight, pixel_weight, over_all_pixels)


def weighted_nll(logp, target, class_weight=None, pixel_weight=None, over_all_pixels: bool = False):
    """`weighted_ce` from log-probabilities, so that L_pseudo and L_ent share one log-softmax."""
    valid = target != IGNORE_INDEX
    safe = torch.where(valid, target, torch.zeros_like(target))
    nll = F.nll_loss(logp, safe, reduction="none")
    w = valid.to(nll.dtype)
    if class_weight is not None:
        w = w * class_weight[safe]
    if pixel_weight is not None:
        w = w * pixel_weight
    denom = torch.tensor(float(target.numel()), device=nll.device) if over_all_pixels else valid.sum().clamp_min(1)
    return (nll * w).sum() / denom


def mean_entropy(logp, target):
    """Eq. 7: mean softmax entropy over the non-void pixels of the strong views, from their
    log-probabilities (shared with L_pseudo: one log-softmax)."""
    valid = (target != IGNORE_INDEX).to(logp.dtype)
    return (entropy_from_logp(logp) * valid).sum() / valid.sum().clamp_min(1)


def down(labels: torch.Tensor, size) -> torch.Tensor:
    """Nearest downsampling of a (B, H, W) map to the feature resolution."""
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].to(labels.dtype)


def pixels(features: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B*h*w, C)."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def _teacher_mode(state):
    train = state.cfg.contrastive.released_teacher_train_mode
    state.teacher.train(train)
    state.teacher_heads.train(train)


def quality_filter(logits: torch.Tensor, labels: torch.Tensor, confidence: float) -> torch.Tensor:
    """The Feature Quality Filter: the teacher predicts the true class with confidence > phi."""
    conf, pred = logits.softmax(1).max(1)
    return (labels != IGNORE_INDEX) & (pred == labels) & (conf > confidence)


@torch.no_grad()
def memory_after_push(state, x_l_norm: torch.Tensor, y_l: torch.Tensor, student_feats=None):
    """(memory, fill) after the FQF + attention ranking + FIFO push of the labelled batch's
    (teacher) projections; the state's bank is read, not written."""
    c = state.cfg.contrastive
    _teacher_mode(state)
    out = state.teacher.decode(state.teacher.encode(x_l_norm), state.domain)   # feature resolution
    feats, logits = out["features"], out["logits"]
    size = feats.shape[-2:]
    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False) \
        if logits.shape[-2:] != size else logits
    y = down(y_l, size)
    keep = quality_filter(logits, y, c.confidence) if c.feature_filter else y != IGNORE_INDEX
    if c.memory_from_teacher:
        z = state.teacher_heads.projection(pixels(feats))
    else:
        z = state.heads.projection(pixels(student_feats.detach())).detach()
    cls, keep = y.reshape(-1).long(), keep.reshape(-1)
    image = torch.arange(y.shape[0], device=y.device).repeat_interleave(size[0] * size[1])
    if c.attention:
        score = state.teacher_heads.attention_pred.score(z, torch.where(keep, cls, 0), keep)
    else:
        score = torch.rand(z.shape[0]).to(z.device)         # the paper's "random subset" baseline
    chosen, order = select(torch.where(keep, cls, 0), image, keep, score, state.per_image,
                           state.num_classes, lowest=c.released_keep_lowest_ranked, n_images=y.shape[0],
                           over_batch=c.released_topk_over_batch, in_order_when_fits=True)
    return push(state.memory, state.fill, z, torch.where(keep, cls, 0), chosen, order,
                max_new=state.num_classes * y.shape[0] * state.per_image)


def contrast(state, feats: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, memory: torch.Tensor,
             fill: torch.Tensor) -> torch.Tensor:
    """L_contr for student feature maps (B, C, h, w) with per-pixel classes (B, h, w) against a
    bank `memory` (C, psi, D) holding `fill` (C,) entries per class."""
    c = state.cfg.contrastive
    n = state.num_classes
    z = state.heads.projection(pixels(feats))
    p = state.heads.prediction(z)
    cls = labels.reshape(-1).long()
    ok = valid.reshape(-1) & (cls != IGNORE_INDEX)
    cls = torch.where(ok, cls, torch.zeros_like(cls))
    k = memory.shape[1]
    in_mem = torch.arange(k, device=cls.device).unsqueeze(0) < fill.unsqueeze(1)
    if c.attention:
        # The attention module weighs vectors; its input is detached so it cannot move them.
        w_pred = l1_normalised(state.heads.attention_pred.score(p.detach(), cls, ok), cls, ok, n)
        if c.released_memory_attention_identity:
            w_mem = in_mem.to(p.dtype)
        else:
            s_mem = state.heads.attention_mem.score_grouped(memory, in_mem)
            cls_mem = torch.arange(n, device=cls.device).unsqueeze(1).expand_as(in_mem)
            w_mem = l1_normalised(s_mem.reshape(-1), cls_mem.reshape(-1), in_mem.reshape(-1), n).view_as(s_mem)
    else:
        w_pred, w_mem = ok.to(p.dtype), in_mem.to(p.dtype)
    return contrastive_loss(p, cls, ok, w_pred, memory, fill, w_mem,
                            divide_by_all_classes=c.released_divide_by_all_classes)


def losses(model, state, batch: dict, step: int) -> dict[str, torch.Tensor]:
    c = state.cfg.contrastive
    updates = batch.setdefault("updates", {})      # what `update` writes after the step
    d, n = state.domain, state.num_classes
    x_l, y_l = batch["labelled"][d]
    x_u = batch["unlabelled"][d]
    after_warmup = step >= c.warmup
    x_target, y_target = x_l, y_l                 # the memory bank holds target features only
    source = batch["labelled"].get(c.source_domain) if c.source_domain else None

    # Teacher pseudo-labels on the un-augmented unlabelled images (Eq. 5).
    with torch.no_grad():
        _teacher_mode(state)
        t_prob = state.teacher(normalize_float(x_u), d)["logits"].softmax(1)
        conf_u, pl_u = t_prob.max(1)
    # Augmentations (Table 1): weak for labelled (ClassMix with GT), A strong views for unlabelled.
    if c.augment:
        x_l, y_l, _ = aug.augment(x_l, y_l, (), aug.WEAK, n)
        views = [aug.augment(x_u, pl_u, (conf_u,), aug.STRONG, n) for _ in range(c.views)]
    else:
        views = [aug.flip(x_u, pl_u, (conf_u,)) for _ in range(c.views)]
    x_target, y_target = x_l, y_l
    if source is not None:           # DA: the source joins the labelled batch (own ClassMix pairs)
        xs_src, ys_src = source
        if c.augment:
            xs_src, ys_src, _ = aug.augment(xs_src, ys_src, (), aug.WEAK, n)
        x_l, y_l = torch.cat([x_l, xs_src]), torch.cat([y_l, ys_src])
    x_s = torch.cat([v[0] for v in views])
    pl_s = torch.cat([v[1] for v in views])
    conf_s = torch.cat([v[2][0] for v in views])

    if c.class_balance:
        with torch.no_grad():
            counts = state.class_counts
            for y in (y_l, pl_u):       # void goes to a spare bin n, dropped
                y = y.reshape(-1)
                counts = counts + torch.bincount(torch.where(y == IGNORE_INDEX, n, y), minlength=n + 1)[:n]
        updates["class_counts"] = counts
        alpha = class_weights(counts)
    else:
        alpha = None

    # One student pass over labelled + strong views.
    x_all = normalize_float(torch.cat([x_l, x_s]))
    feats_enc = model.encode(x_all)
    out = model.decode(feats_enc, d)
    # Split before upsampling: the backward of a slice of the full-resolution logits would
    # zero-fill a whole (B, C, H, W) gradient per slice (3 per step, ~6 ms of a ~110 ms step).
    b_l = x_l.shape[0]
    logits_l, logits_s = (F.interpolate(part, size=x_all.shape[-2:], mode="bilinear", align_corners=False)
                          for part in out["logits"].split([b_l, x_all.shape[0] - b_l]))
    terms = {"sup": c.lambda_sup * weighted_ce(logits_l, y_l, alpha)}

    lam_pseudo = c.lambda_pseudo if after_warmup else 0.0
    if c.released_sigmoid_ramp and not after_warmup:
        lam_pseudo = c.lambda_pseudo * math.exp(-5.0 * (1.0 - step / max(c.warmup, 1)) ** 2)
    logp_s = F.log_softmax(logits_s, 1)
    if lam_pseudo > 0:
        terms["pseudo"] = lam_pseudo * weighted_nll(
            logp_s, pl_s, alpha, conf_s ** c.sharpen, over_all_pixels=c.released_pseudo_mean_all_pixels)
    if c.lambda_ent > 0:
        terms["ent"] = c.lambda_ent * mean_entropy(logp_s, pl_s)

    if c.lambda_contr > 0:
        memory, fill = memory_after_push(state, normalize_float(x_target), y_target,
                                         out["features"][:len(x_target)])
        updates["memory"], updates["fill"] = memory, fill
        if after_warmup:
            feats = out["features"]
            size = feats.shape[-2:]
            labels_l = down(y_l, size)
            labels_u = down(pl_s, size)
            valid_l = torch.full_like(labels_l, c.contrast_labelled, dtype=torch.bool)
            valid_u = torch.full_like(labels_u, c.contrast_unlabelled, dtype=torch.bool)
            if not c.released_no_unlabelled_filter:
                valid_u &= down(conf_s, size) > c.confidence
            terms["contr"] = c.lambda_contr * contrast(
                state, feats, torch.cat([labels_l, labels_u]), torch.cat([valid_l, valid_u]), memory, fill)
    return terms


@torch.no_grad()
def update(model, state, batch: dict, step: int) -> None:
    """After the optimiser step: write this step's bank and counts, then move the teacher."""
    for name, value in batch.get("updates", {}).items():
        getattr(state, name).copy_(value)
    c = state.cfg.contrastive
    tau = cosine_tau(step, state.total_steps, c.ema_start, c.ema_end)
    ema_update(state.teacher, model, tau)
    ema_update(state.teacher_heads, state.heads, tau)
