"""Alleviating Semantic-level Shift (ASS; Wang et al., CVPR-W 2020): semi-supervised domain
adaptation with a global adversarial module on the softmax outputs (GA, as AdaptSegNet, Tsai et
al., CVPR 2018) and a class-level one (SA) in two variants, FCSA and CSA.

Two update groups: `seg` (the segmentation network G with CH; SGD with Nesterov momentum) and
`disc` (D_g and D_s; Adam). One step (`losses`): G sees the fully labelled source batch and the
target's labelled and unlabelled batches; it returns Eq. 9's terms for `seg` (the adversarial ones
computed through the discriminators, whose parameters the loop keeps out of `seg`'s backward) and
Eq. 10's terms for `disc` (on detached G outputs, so they could not reach G even without the
loop's restriction). `ass.source_domain: ""` is the paper's Oracle: L_seg on the labelled target
only, nothing adversarial.

Multi-level GA (`ass.multi_level`, AdaptSegNet's multi-level recipe, which the paper's #City = 0
numbers are): a second classifier (the model's head type, AdaptSegNet's `layer5`) on the encoder's
"mid" output (layer3, AdaptSegNet's conv4) with its own D_g. Eq. 1 and Eq. 2 gain that level's
terms, lambda_seg_aux * L_seg(aux) and lambda_gadv_aux * L_gadv(aux) (AdaptSegNet's 0.1 and
0.0002), and Eq. 10 gains lambda_gd * (L_gd(aux, source) + L_gd(aux, target)); FCSA / CSA stay on
F, the main level (Sec. 3.3). The auxiliary classifier trains with G (`seg`, at the heads' rate);
its D with the others in `disc` (one Adam over both: Adam is per parameter, so it steps each D as
its own optimiser with AdaptSegNet's settings would). Off (the default), nothing of it is built.

Equation by equation, and the choices where the paper is silent: docs/ass.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unisemi import ddp
from unisemi.losses import IGNORE_INDEX, cross_entropy
from unisemi.optim import Group, default_groups

NEEDS_UNLABELLED = True        # D_g learns source against the unlabelled target (Eq. 3)
TRAINS_WITHOUT_LABELS = True   # #City = 0: GA alone is unsupervised DA (Table 1's first row)
VARIANTS = ("none", "fcsa", "csa")


@dataclass(frozen=True)
class Config:
    source_domain: str = "game"        # fully labelled source; "" = the Oracle (target labels only)
    variant: str = "csa"               # SA module: none (GA only) | fcsa (Eq. 4-6) | csa (Eq. 7-8)
    lambda_seg: float = 1.0            # Eq. 9; AdaptSegNet's weight of L_seg
    lambda_gadv: float = 0.001         # Eq. 9; AdaptSegNet's single-level lambda_adv
    lambda_sadv: float = 0.01          # Eq. 9; the CSA value whose Table 2 cell equals Table 1 (c500)
    lambda_gd: float = 1.0             # Eq. 10; AdaptSegNet trains D on an unweighted BCE
    lambda_sd: float = 1.0             # Eq. 10; as lambda_gd
    d_lr: float = 1e-4                 # Adam rate of every discriminator (paper 4.2)
    d_betas: tuple[float, ...] = (0.9, 0.99)
    d_poly_power: float = 0.9          # "the same polynomial decay rule"
    nesterov: bool = True              # G's SGD (paper 4.2); momentum, decay, lr from `optim:`
    gd_width: int = 64                 # D_g's first conv width (AdaptSegNet ndf); x2 per layer
    hidden: int = 1024                 # D_s's hidden width, FCSA and CSA (paper 4.1)
    leaky_slope: float = 0.2           # LeakyReLU of every discriminator
    # AdaptSegNet's multi-level GA (its #City = 0 numbers): an auxiliary classifier and D_g on
    # the encoder's layer3. Off by default, so stored laptop trials keep their keys; every
    # paper profile turns it on (docs/ass.md).
    multi_level: bool = False
    lambda_gadv_aux: float = 0.0002    # AdaptSegNet's LAMBDA_ADV_TARGET1 (the layer3 level)
    lambda_seg_aux: float = 0.1        # AdaptSegNet's LAMBDA_SEG (the auxiliary L_seg)


def validate(cfg, bad, active: bool) -> None:
    """Checks of the `ass:` section; `bad(key, value, expected)` raises the config error."""
    c = cfg.ass
    if c.variant not in VARIANTS:
        bad("ass.variant", c.variant, " | ".join(VARIANTS))
    for key in ("lambda_seg", "lambda_gadv", "lambda_sadv", "lambda_gd", "lambda_sd", "lambda_gadv_aux",
                "lambda_seg_aux"):
        if getattr(c, key) < 0:
            bad(f"ass.{key}", getattr(c, key), "a weight >= 0")
    if c.d_lr <= 0:
        bad("ass.d_lr", c.d_lr, "a learning rate > 0")
    if len(c.d_betas) != 2 or not all(0.0 <= b < 1.0 for b in c.d_betas):
        bad("ass.d_betas", c.d_betas, "two Adam betas in [0, 1)")
    for key in ("gd_width", "hidden"):
        if getattr(c, key) < 1:
            bad(f"ass.{key}", getattr(c, key), "an integer >= 1")
    if active:
        _validate_domains(cfg, bad)
        _validate_multi_level(cfg, bad)
        _validate_no_target_labels(cfg, bad)


def _validate_domains(cfg, bad) -> None:
    from unisemi.data import known_domains, label_space
    c = cfg.ass
    if len(cfg.data.domains) != 1:
        bad("data.domains", cfg.data.domains, "exactly one (target) domain for method ass")
    if not c.source_domain:
        return
    if c.source_domain not in known_domains() or c.source_domain in cfg.data.domains:
        bad("ass.source_domain", c.source_domain,
            f"a domain other than the target, one of {', '.join(known_domains())}")
    # The source is segmented by the target's head and D_s's 2c outputs pair class k of both
    # domains: the source's classes must be target classes, matched by name (SYNTHIA's 16 are
    # Cityscapes classes; `source_to_target` maps their ids).
    target = label_space(cfg.data.domains[0])
    missing = [k for k in label_space(c.source_domain) if k not in target]
    if missing:
        bad("ass.source_domain", c.source_domain,
            f"a domain whose classes are all classes of '{cfg.data.domains[0]}' ('{missing[0]}' is not)")


def _validate_multi_level(cfg, bad) -> None:
    from unisemi.models import ENCODERS
    if not cfg.ass.multi_level or cfg.model.encoder not in ENCODERS:
        return
    with torch.device("meta"):          # shapes only: whether the encoder exposes a "mid" output
        enc = ENCODERS[cfg.model.encoder](int(cfg.model.output_stride), int(cfg.model.width))
    if not hasattr(enc, "mid_channels"):
        bad("ass.multi_level", True, f"false with model.encoder {cfg.model.encoder} (it has no 'mid' output "
            "for the auxiliary classifier)")


def _validate_no_target_labels(cfg, bad) -> None:
    """#City = 0 (an explicit `data.n_labelled: 0`) is unsupervised DA: GA only. The Oracle has
    nothing to train on, and D_s's target half (Eq. 6, 8) is fed by the labelled target only."""
    if cfg.data.n_labelled or cfg.data.labelled_fraction:
        return
    if not cfg.ass.source_domain:
        bad("data.n_labelled", 0, "a count >= 1 for the Oracle (ass.source_domain: ''): it trains on "
            "the labelled target images only")
    if cfg.ass.variant != "none":
        bad("ass.variant", cfg.ass.variant, "none when data.n_labelled is 0: D_s learns its target "
            "classes from labelled target images (#City = 0 is GA alone)")


def extra_labelled(cfg) -> dict:
    """The source domain, every train image labelled, sampled alongside the target's batches."""
    src = cfg.ass.source_domain
    return {src: dataclasses.replace(cfg.data, labelled_fraction=1.0)} if src else {}


# ---------------------------------------------------------------------------------------------
# the discriminators

def global_discriminator(num_classes: int, width: int, slope: float) -> nn.Sequential:
    """D_g (AdaptSegNet): four 4x4 stride-2 convs (width x1, x2, x4, x8), LeakyReLU between, and a
    4x4 stride-2 classifier to one logit per cell: sigmoid = the probability of "target" (z = 1)."""
    layers, cin = [], num_classes
    for mult in (1, 2, 4, 8):
        layers += [nn.Conv2d(cin, width * mult, 4, 2, 1), nn.LeakyReLU(slope)]
        cin = width * mult
    layers.append(nn.Conv2d(cin, 1, 4, 2, 1))
    return nn.Sequential(*layers)


def semantic_discriminator(variant: str, channels: int, num_classes: int, hidden: int,
                           slope: float) -> nn.Sequential:
    """D_s: two layers, `hidden` wide, LeakyReLU between, 2c logits: [0, c) class k of the source,
    [c, 2c) class k of the target. FCSA: fully connected on (..., n) vectors V^k; CSA: the same
    as 1x1 convs on the (B, n, h, w) feature map, i.e. FCSA applied at every pixel."""
    if variant == "fcsa":
        return nn.Sequential(nn.Linear(channels, hidden), nn.LeakyReLU(slope), nn.Linear(hidden, 2 * num_classes))
    return nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.LeakyReLU(slope), nn.Conv2d(hidden, 2 * num_classes, 1))


def source_to_target(source_classes, target_classes) -> torch.Tensor:
    """A 256-entry lookup: source label id -> target label id of the class of the same name;
    void (and any id that names no class) stays void."""
    lut = torch.full((256,), IGNORE_INDEX, dtype=torch.long)
    index = {name: k for k, name in enumerate(target_classes)}
    lut[:len(source_classes)] = torch.tensor([index[name] for name in source_classes])
    return lut


class State(nn.Module):
    def __init__(self, cfg, model, num_classes: int):
        super().__init__()
        c = cfg.ass
        self.settings, self.target, self.num_classes = c, cfg.data.domains[0], num_classes
        if c.source_domain:
            from unisemi.data import label_space
            lut = source_to_target(label_space(c.source_domain),
                                   label_space(self.target))
            # not persistent: a function of the config, so checkpoints stay as they were
            self.register_buffer("source_labels", lut, persistent=False)
        self.d_global = global_discriminator(num_classes, c.gd_width, c.leaky_slope)
        self.d_semantic = (semantic_discriminator(c.variant, model.feature_channels, num_classes, c.hidden,
                                                  c.leaky_slope) if c.variant != "none" else None)
        # Built after the single-level modules, so these draw their init from the same RNG state
        # with or without the second level. The Oracle has no adversarial level to add to.
        self.aux_head = self.d_aux = None
        if c.multi_level and c.source_domain:
            enc = model.encoder
            self.aux_head = model.head_builder(int(enc.mid_channels), int(enc.low_channels), num_classes,
                                               model.cfg)
            self.aux_head.to(next(enc.parameters()).device)
            self.d_aux = global_discriminator(num_classes, c.gd_width, c.leaky_slope)


def build(cfg, model, stages=None) -> nn.Module:
    return State(cfg, model, model.head_outputs[cfg.data.domains[0]])


def groups(cfg, model, state) -> list[Group]:
    """G (the model: SGD, Nesterov, `optim:` rate, decay and poly) and the discriminators (Adam)."""
    seg = default_groups(cfg, model, nn.Module())[0]        # the model only, not the state
    seg.name, seg.nesterov = "seg", cfg.ass.nesterov
    c = cfg.ass
    aux = [p for n, p in state.named_parameters() if n.startswith("aux_head.") and p.requires_grad]
    if aux:        # a classifier of G, at the heads' rate as the main one (AdaptSegNet: layer5 and 6 at 10x)
        seg.params.append({"params": aux, "lr_mult": cfg.optim.head_lr_mult})
    d = [p for n, p in state.named_parameters() if not n.startswith("aux_head.")]
    disc = Group("disc", [{"params": d, "lr_mult": 1.0}], "adam", c.d_lr,
                 betas=tuple(c.d_betas), poly_power=c.d_poly_power)
    return [seg, disc]


# ---------------------------------------------------------------------------------------------
# pieces of the step

def down(labels: torch.Tensor, size) -> torch.Tensor:
    """y of the paper: nearest downsampling of (B, H, W) labels to the feature map's (h, w)."""
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Eq. 4 per image: V (B, c, n), V[b, k] = mean of F[b, :, h, w] over the pixels labelled k,
    and present (B, c) bool. Void pixels count nowhere; an absent class's vector is 0 (and masked
    out of every loss by `present`). One index_add over all pixels: no loop over classes."""
    b, n = features.shape[:2]
    y = labels.reshape(b, -1)
    valid = y != IGNORE_INDEX
    # slot b * c + k per valid pixel; void pixels go to a spare slot B * c, dropped
    slot = torch.where(valid, y + num_classes * torch.arange(b, device=y.device)[:, None],
                       torch.full_like(y, b * num_classes)).reshape(-1)
    pix = features.permute(0, 2, 3, 1).reshape(-1, n)
    sums = pix.new_zeros(b * num_classes + 1, n).index_add_(0, slot, pix)
    counts = torch.bincount(slot, minlength=b * num_classes + 1).to(pix.dtype)
    sums, counts = sums[:-1].view(b, num_classes, n), counts[:-1].view(b, num_classes)
    return sums / counts.clamp_min(1)[..., None], counts > 0


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked entries of the global batch (every rank's); 0, with a zero gradient
    everywhere, when no rank has one.

    On W ranks each rank divides its own sum by (global count) / W rather than by its own count:
    the loop averages gradients over ranks, so the result is the gradient of the mean over all
    ranks' entries, as one process on the concatenated batch computes it, however the classes
    fall on the ranks (a per-rank mean would weight an entry by 1 / its rank's count). A rank
    whose batch lacks a class, or every class, contributes a zero sum, never NaN."""
    m = mask.to(values.dtype)
    _, size = ddp.world()
    count = ddp.sum_over_ranks(m.sum().detach().clone())   # one scalar all-reduce; none on 1 rank
    return (values * m).sum() * size / count.clamp_min(1)


def bce(logits: torch.Tensor, z: float) -> torch.Tensor:
    """-mean[z log D + (1 - z) log(1 - D)] over the cells of D_g's map, D = sigmoid(logits)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, z))


def ga_generator(d_global, p_source) -> torch.Tensor:
    """Eq. 2: G makes D_g call the source softmax maps "target"."""
    return bce(d_global(p_source), 1.0)


def ga_discriminator(d_global, p_source, p_target) -> torch.Tensor:
    """Eq. 3 for z = 0 (source) plus z = 1 (unlabelled target), on detached maps: L_gd(F_s) +
    L_gd(F_tu) of Eq. 10."""
    return bce(d_global(p_source.detach()), 0.0) + bce(d_global(p_target.detach()), 1.0)


def forward_levels(model, aux_head, x: torch.Tensor, domain: str):
    """The model's output dict and the auxiliary classifier's logits on the encoder's "mid"
    features (AdaptSegNet's layer5 on layer3), both upsampled to the input size as the model's."""
    feats = model.encode(x)
    out = model.decode(feats, domain, tuple(x.shape[-2:]))
    aux, _ = aux_head({"out": feats["mid"], "low": feats["low"]})
    return out, F.interpolate(aux, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)


def aux_seg_terms(aux_s, y_s, aux_tl, y_tl, source: str, target: str) -> dict:
    """L_seg (Eq. 1) of the auxiliary classifier on every labelled batch that the main L_seg sees
    (the source and, when there is one, the labelled target), unweighted."""
    terms = {source: cross_entropy(aux_s, y_s)}
    if aux_tl.shape[0]:
        terms[target] = cross_entropy(aux_tl, y_tl)
    return terms


def multi_level_terms(state, aux_s, y_s, aux_t, y_tl, b: int) -> tuple[dict, dict]:
    """AdaptSegNet's second level, weighted: G's auxiliary L_seg and Eq. 2 through D_aux on the
    auxiliary softmax maps; D_aux's Eq. 3 on them, detached (source 0, unlabelled target 1)."""
    c, t = state.settings, state.target
    seg = {f"seg_aux/{d}": c.lambda_seg_aux * v
           for d, v in aux_seg_terms(aux_s, y_s, aux_t[:b], y_tl, c.source_domain, t).items()}
    p_s, p_tu = aux_s.softmax(1), aux_t[b:].softmax(1)
    seg["gadv_aux"] = c.lambda_gadv_aux * ga_generator(state.d_aux, p_s)
    return seg, {"gd_aux": c.lambda_gd * ga_discriminator(state.d_aux, p_s, p_tu)}


def pick(logp: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """logp[..., index] along dim 1 (channels), index shaped like logp without dim 1."""
    return logp.gather(1, index.unsqueeze(1)).squeeze(1)


def fcsa_terms(d_semantic, v_source, present_s, v_target, present_t):
    """Eq. 5 (G's) and Eq. 6 for source plus labelled target (D's), means over the classes present
    in each image. Vectors (B, c, n) go through D_s as (B, c, 2c) log-softmax rows."""
    c = v_source.shape[1]
    k = torch.arange(c, device=v_source.device)

    def logp(v):                                  # (B, c, 2c) -> channels in dim 1: (B, 2c, c)
        return F.log_softmax(d_semantic(v), -1).transpose(1, 2)

    kk = k.expand(v_source.shape[0], c)
    g = masked_mean(-pick(logp(v_source), kk + c), present_s)
    d = (masked_mean(-pick(logp(v_source.detach()), kk), present_s)
         + masked_mean(-pick(logp(v_target.detach()), k.expand(v_target.shape[0], c) + c), present_t))
    return g, d


def csa_terms(d_semantic, f_source, y_source, f_target, y_target, c: int):
    """Eq. 7 (G's) and Eq. 8 for source plus labelled target (D's), means over the non-void
    pixels; y are the labels at the feature resolution."""
    def nll(f, y, shift):
        valid = y != IGNORE_INDEX
        k = torch.where(valid, y, torch.zeros_like(y)) + shift
        return masked_mean(-pick(F.log_softmax(d_semantic(f), 1), k), valid)

    g = nll(f_source, y_source, c)
    d = nll(f_source.detach(), y_source, 0) + nll(f_target.detach(), y_target, c)
    return g, d


def losses(model, state, batch: dict, step: int) -> dict:
    c, t, n = state.settings, state.target, state.num_classes
    if not c.source_domain:                                      # the Oracle
        x_tl, y_tl = batch["labelled"][t]
        return {"seg": {f"seg/{t}": c.lambda_seg * cross_entropy(model(x_tl, t)["logits"], y_tl)}}
    x_s, y_s = batch["labelled"][c.source_domain]
    y_s = state.source_labels[y_s]                               # source ids -> the target's
    x_tu = batch["unlabelled"][t]
    # #City = 0: no labelled target batch (validate allows GA only); T_L is then empty.
    x_tl, y_tl = batch["labelled"].get(t, (x_tu[:0], y_s[:0]))
    # Source and target in separate passes, as AdaptSegNet: BN statistics of one domain each.
    x_t, b = torch.cat([x_tl, x_tu]), x_tl.shape[0]
    if state.aux_head is None:
        out_s, out_t = model(x_s, t), model(x_t, t)
    else:
        (out_s, aux_s), (out_t, aux_t) = (forward_levels(model, state.aux_head, x, t) for x in (x_s, x_t))
    logits_tl, logits_tu = out_t["logits"][:b], out_t["logits"][b:]
    seg = {f"seg/{c.source_domain}": c.lambda_seg * cross_entropy(out_s["logits"], y_s)}
    if b:
        seg[f"seg/{t}"] = c.lambda_seg * cross_entropy(logits_tl, y_tl)
    p_s, p_tu = out_s["logits"].softmax(1), logits_tu.softmax(1)
    seg["gadv"] = c.lambda_gadv * ga_generator(state.d_global, p_s)
    disc = {"gd": c.lambda_gd * ga_discriminator(state.d_global, p_s, p_tu)}
    if state.aux_head is not None:
        seg_aux, disc_aux = multi_level_terms(state, aux_s, y_s, aux_t, y_tl, b)
        seg.update(seg_aux)
        disc.update(disc_aux)
    if state.d_semantic is not None:
        f_s, f_tl = out_s["features"], out_t["features"][:b]
        ys, yt = down(y_s, f_s.shape[-2:]), down(y_tl, f_tl.shape[-2:])
        if c.variant == "fcsa":
            g, d = fcsa_terms(state.d_semantic, *class_means(f_s, ys, n), *class_means(f_tl, yt, n))
        else:
            g, d = csa_terms(state.d_semantic, f_s, ys, f_tl, yt, n)
        seg["sadv"], disc["sd"] = c.lambda_sadv * g, c.lambda_sd * d
    return {"seg": seg, "disc": disc}
