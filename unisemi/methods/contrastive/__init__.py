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
from unisemi.data.transforms import input_scheme, normalize_float
from unisemi.losses import IGNORE_INDEX, entropy_from_logp
from unisemi.methods.contrastive.attention import ClassAttention
from unisemi.methods.contrastive.config import Config, validate  # noqa: F401  (the `contrastive:` section)
from unisemi.methods.contrastive.loss import contrastive_loss, l1_normalised
from unisemi.methods.contrastive.memory import push, select
from unisemi.methods.teacher import cosine_tau, ema_update, make_teacher, warmup_tau

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

    def __init__(self, cfg, model, domain: str, num_classes: int, n_labelled: int, n_train: int | None = None,
                 background: int | None = None):
        super().__init__()
        c = cfg.contrastive
        self.cfg, self.domain, self.num_classes = cfg, domain, num_classes
        self.scheme = input_scheme(cfg)     # the model's input (data.normalize)
        self.background = background       # VOC's class 0: ClassMix picks it only when alone
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
        # Class-balancing windows of per-batch class pixel counts (utils/class_balancing.py of the
        # release): the first N_l / B labelled batches, filled once, and a ring over the last
        # (N_train - N_l) / B_u unlabelled batches' pseudo-labels (B_u = unlabelled images per
        # step, the release's batch_size / 2). Rows are summed, so a ring equals its FIFO.
        n_train = n_labelled if n_train is None else n_train
        rows_l = max(1, n_labelled // cfg.data.batch_size)
        rows_u = max(1, (n_train - n_labelled) // max(cfg.data.unlabelled_batch_size, 1))
        self.register_buffer("balance_labelled", torch.zeros(rows_l, num_classes, dtype=torch.float64))
        self.register_buffer("balance_unlabelled", torch.zeros(rows_u, num_classes, dtype=torch.float64))


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
    # The data layer names a background class "background" (VOC's class 0, and the `objects`
    # domain that stands in for it); no other label space has one.
    background = 0 if dd.classes and dd.classes[0] == "background" else None
    return State(cfg, model, domain, dd.num_classes, len(dd.labelled),
                 len(dd.labelled) + len(dd.unlabelled), background)


# ---------------------------------------------------------------------------------------------
# pieces of the step

def class_histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) float64 pixel counts of each class in a label map; void goes to a spare bin, dropped."""
    y = labels.reshape(-1)
    y = torch.where(y == IGNORE_INDEX, torch.full_like(y, num_classes), y)
    return torch.bincount(y, minlength=num_classes + 1)[:num_classes].to(torch.float64)


def class_weights(counts: torch.Tensor) -> torch.Tensor:
    """alpha_c = sqrt(f_m / f_c), f_m the median of ALL C class frequencies (paper 4.2), unseen
    classes included, as np.median does in the release (utils/class_balancing.py:109; the mean of
    the two middle values for an even C). A class never seen gets the largest weight, and at
    least 1 (the release sets its inf to 1, then to the max). When the median is 0 (more than
    half the classes unseen, or no counts at all) the release's weights are 0 and NaN; ours are
    all ones, as before the statistics exist. No host sync."""
    counts = counts.to(torch.float64)
    median = torch.quantile(counts, 0.5)
    seen = counts > 0
    w = torch.sqrt(median / counts.clamp_min(1e-30))
    top = torch.where(seen, w, torch.zeros_like(w)).max().clamp_min(1.0)
    w = torch.where(seen, w, top)
    return torch.where(median > 0, w, torch.ones_like(w)).float()


def balance_windows(labelled: torch.Tensor, unlabelled: torch.Tensor, counts_l: torch.Tensor,
                    counts_u: torch.Tensor, step: int):
    """The release's class-balancing windows after step `step` (0-based, one row per step):
    labelled row `step` is written during the first rows_l steps only; unlabelled row
    step % rows_u always (the oldest falls out). Returns (labelled, unlabelled, ready): the weights
    exist once both windows are full, i.e. step + 1 >= max(rows_l, rows_u) (the release returns
    ones before). Functional: the state's windows are read, never written."""
    rows_l, rows_u = labelled.shape[0], unlabelled.shape[0]
    if step < rows_l:
        labelled = labelled.index_copy(0, torch.tensor([step], device=labelled.device), counts_l[None])
    unlabelled = unlabelled.index_copy(0, torch.tensor([step % rows_u], device=unlabelled.device), counts_u[None])
    return labelled, unlabelled, step + 1 >= max(rows_l, rows_u)


def weighted_ce(logits, target, class_weight=None, pixel_weight=None, over_all_pixels: bool = False,
                weighted_mean: bool = False):
    """Eq. 3: (1/N) sum over pixels of alpha_y * beta_n * CE, N the valid pixels; or N all pixels
    (void ones count as 0) when `over_all_pixels`, as the release averages L_pseudo
    (utils/loss.py:37-42); or, when `weighted_mean`, divided by sum_n alpha_y instead, which is
    what F.cross_entropy(weight=...) does in the release's L_sup (utils/loss.py:31). All-void
    targets give 0 (the release's L_sup gives NaN)."""
    return weighted_nll(F.log_softmax(logits, 1), target, class_weight, pixel_weight, over_all_pixels,
                        weighted_mean)


def weighted_nll(logp, target, class_weight=None, pixel_weight=None, over_all_pixels: bool = False,
                 weighted_mean: bool = False):
    """`weighted_ce` from log-probabilities, so that L_pseudo and L_ent share one log-softmax."""
    valid = target != IGNORE_INDEX
    safe = torch.where(valid, target, torch.zeros_like(target))
    nll = F.nll_loss(logp, safe, reduction="none")
    w = valid.to(nll.dtype)
    if class_weight is not None:
        w = w * class_weight[safe]
    class_w = w                       # alpha_y on valid pixels, 0 on void
    if pixel_weight is not None:
        w = w * pixel_weight
    if weighted_mean:
        denom = class_w.sum().clamp_min(1e-12)      # 0 only when every pixel is void
    elif over_all_pixels:
        denom = torch.tensor(float(target.numel()), device=nll.device)
    else:
        denom = valid.sum().clamp_min(1)
    return (nll * w).sum() / denom


def mean_entropy(logp, target, normalised: bool = False):
    """Eq. 7: mean softmax entropy (nats) over the non-void pixels of the strong views, from
    their log-probabilities (shared with L_pseudo: one log-softmax). `normalised` divides by
    log C, the entropy of the uniform distribution, as the release's entropy_loss does
    (trainSSL.py:32-48: log2 entropy / log2 C, averaged over the non-void pixels); the same
    pixels and mean, so the two differ by exactly the factor 1 / ln C."""
    valid = (target != IGNORE_INDEX).to(logp.dtype)
    ent = (entropy_from_logp(logp) * valid).sum() / valid.sum().clamp_min(1)
    return ent / math.log(logp.shape[1]) if normalised else ent


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


def quality_filter(logits: torch.Tensor, labels: torch.Tensor, confidence: float, crop_size=None) -> torch.Tensor:
    """The Feature Quality Filter on `labels` (B, h, w) at the feature resolution: the teacher
    predicts the true class with confidence > phi. The paper does not say at which resolution;
    the release (trainSSL.py:606-619) upsamples the teacher's logits to the crop (bilinear,
    align_corners=True), takes softmax, argmax and max-probability there, and nearest-downsamples
    prediction and max-probability to the feature resolution: so does this with `crop_size`."""
    if crop_size is not None and tuple(logits.shape[-2:]) != tuple(crop_size):
        logits = F.interpolate(logits, size=tuple(crop_size), mode="bilinear", align_corners=True)
    conf, pred = logits.softmax(1).max(1)
    size = tuple(labels.shape[-2:])
    if tuple(pred.shape[-2:]) != size:
        pred = down(pred, size)
        conf = F.interpolate(conf[:, None], size=size, mode="nearest")[:, 0]
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
    y = down(y_l, size)
    keep = quality_filter(logits, y, c.confidence, y_l.shape[-2:]) if c.feature_filter else y != IGNORE_INDEX
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
        t_prob = state.teacher(normalize_float(x_u, state.scheme), d)["logits"].softmax(1)
        conf_u, pl_u = t_prob.max(1)
    # Augmentations (Table 1): weak for labelled (ClassMix with GT), A strong views for unlabelled.
    y_raw = y_l                 # class balancing counts the labels before augmentation, as the release
    bg = state.background
    if c.augment:
        x_l, y_l, _ = aug.augment(x_l, y_l, (), aug.WEAK, n, background=bg)
        views = [aug.augment(x_u, pl_u, (conf_u,), aug.STRONG, n, background=bg) for _ in range(c.views)]
    else:
        views = [aug.flip(x_u, pl_u, (conf_u,)) for _ in range(c.views)]
    x_target, y_target = x_l, y_l
    if source is not None:           # DA: the source joins the labelled batch (own ClassMix pairs)
        xs_src, ys_src = source
        if c.augment:
            xs_src, ys_src, _ = aug.augment(xs_src, ys_src, (), aug.WEAK, n, background=bg)
        x_l, y_l = torch.cat([x_l, xs_src]), torch.cat([y_l, ys_src])
    x_s = torch.cat([v[0] for v in views])
    pl_s = torch.cat([v[1] for v in views])
    conf_s = torch.cat([v[2][0] for v in views])

    alpha = None
    if c.class_balance:
        # Counted every step from step 0 (raw target labels + the teacher's pseudo-labels of the
        # un-augmented unlabelled images); weights used only after the warm-up, as the release
        # (trainSSL.py:531, 567-569). Every branch below is on Python values: no host sync.
        with torch.no_grad():
            counts_l, counts_u = class_histogram(y_raw, n), class_histogram(pl_u, n)
            if c.class_balance_cumulative:
                counts = state.class_counts + counts_l + counts_u
                updates["class_counts"] = counts
                ready = True
            else:
                lab, unl, ready = balance_windows(state.balance_labelled, state.balance_unlabelled,
                                                  counts_l, counts_u, step)
                updates["balance_labelled"], updates["balance_unlabelled"] = lab, unl
                counts = lab.sum(0) + unl.sum(0)
        if ready and after_warmup:
            alpha = class_weights(counts)

    # One student pass over labelled + strong views.
    x_all = normalize_float(torch.cat([x_l, x_s]), state.scheme)
    feats_enc = model.encode(x_all)
    out = model.decode(feats_enc, d)
    # Split before upsampling: the backward of a slice of the full-resolution logits would
    # zero-fill a whole (B, C, H, W) gradient per slice (3 per step, ~6 ms of a ~110 ms step).
    b_l = x_l.shape[0]
    logits_l, logits_s = (F.interpolate(part, size=x_all.shape[-2:], mode="bilinear", align_corners=False)
                          for part in out["logits"].split([b_l, x_all.shape[0] - b_l]))
    terms = {"sup": c.lambda_sup * weighted_ce(logits_l, y_l, alpha, weighted_mean=c.released_weighted_mean_ce)}

    lam_pseudo = c.lambda_pseudo if after_warmup else 0.0
    if c.released_sigmoid_ramp and not after_warmup:
        lam_pseudo = c.lambda_pseudo * math.exp(-5.0 * (1.0 - step / max(c.warmup, 1)) ** 2)
    logp_s = F.log_softmax(logits_s, 1)
    if lam_pseudo > 0:
        terms["pseudo"] = lam_pseudo * weighted_nll(
            logp_s, pl_s, alpha, conf_s ** c.sharpen, over_all_pixels=c.released_pseudo_mean_all_pixels)
    if c.lambda_ent > 0:
        terms["ent"] = c.lambda_ent * mean_entropy(logp_s, pl_s, normalised=c.released_normalised_entropy)

    if c.lambda_contr > 0:
        memory, fill = memory_after_push(state, normalize_float(x_target, state.scheme), y_target,
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
    if c.released_ema_warmup:
        tau = warmup_tau(step, tau)
    buffers = not c.released_ema_parameters_only
    ema_update(state.teacher, model, tau, buffers)
    ema_update(state.teacher_heads, state.heads, tau, buffers)
