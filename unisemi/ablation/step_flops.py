"""FLOPs of one training step, pass by pass, for each method: the counting half of cost.py.

Each method's step is a list of `Term`s read off its `losses()` (`STEPS`): which images go through
which network, forward only or forward + backward. Networks are the real modules, counted with
`torch.utils.flop_counter.FlopCounterMode` on the `meta` device (shapes only: no weights, no data).
"""
from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode


@dataclasses.dataclass(frozen=True)
class Domain:
    """What the estimator needs of one data domain."""
    dataset: str               # real dataset (paper profile) or synthetic domain name
    classes: int
    size: tuple                # training input (H, W)
    train_images: int


@dataclasses.dataclass(frozen=True)
class Term:
    what: str
    flops: float               # per training step (averaged over the schedule where it varies)


# ----------------------------------------------------------------------------------------------
# Counting

def count_flops(fn) -> float:
    """FLOPs of everything `fn()` runs (forward and any backward it calls)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _meta_model(model_cfg, classes: int):
    from unisemi.models import build_model
    with torch.device("meta"):      # shapes only: no memory, no weights to load
        model = build_model(dataclasses.replace(model_cfg, pretrained="none"), {"d": classes})
    return model.train()


@functools.cache
def model_pass(model_cfg, classes: int, size: tuple, backward: bool, part: str = "model") -> tuple:
    """(FLOPs, feature shape (C, h, w)) of ONE image through the model ('model': encoder + head,
    logits upsampled to the input; 'encoder': the encoder only), plus its backward if asked.
    Convolution FLOPs are linear in the batch, so callers scale by images; cached per shape, so a
    table whose cells share a model counts it once."""
    model = _meta_model(model_cfg, classes)
    x = torch.empty(1, 3, *size, device="meta")
    shape = {}

    def run():
        out = model(x, "d") if part == "model" else model.encode(x)
        feats = out["features"] if part == "model" else out["out"]
        shape["features"] = tuple(feats.shape[1:])
        if backward:
            loss = out["logits"].sum() if part == "model" else feats.sum()
            loss.backward()
    with torch.set_grad_enabled(backward):
        flops = count_flops(run)
    return flops, shape["features"]


def _meta(*shape, grad: bool = False):
    return torch.zeros(*shape, device="meta", requires_grad=grad)


# ----------------------------------------------------------------------------------------------
# One training step per method, read off its losses(): which images go through which network

def steps_supervised(cfg, dom: dict) -> list[Term]:
    """supervised.losses: one encoder pass over every domain's labelled batch, each through its head."""
    b = cfg.data.batch_size
    return [Term(f"student fwd+bwd, {b} labelled {dom[d].dataset} images",
                 b * model_pass(cfg.model, dom[d].classes, dom[d].size, True)[0]) for d in cfg.data.domains]


def steps_finetune(cfg, dom: dict) -> list[Term]:
    """finetune.losses: source batches for the first source_fraction of the run, then target ones."""
    f, b = cfg.finetune.source_fraction, cfg.data.batch_size
    src, tgt = dom[cfg.finetune.source_domain], dom[cfg.data.domains[0]]
    return [Term(f"source phase ({f:.0%} of steps), fwd+bwd, {b} {src.dataset} images",
                 f * b * model_pass(cfg.model, src.classes, src.size, True)[0]),
            Term(f"target phase ({1 - f:.0%} of steps), fwd+bwd, {b} {tgt.dataset} images",
                 (1 - f) * b * model_pass(cfg.model, tgt.classes, tgt.size, True)[0])]


def steps_universal(cfg, dom: dict) -> list[Term]:
    """universal.losses: labelled batches through the model; with alpha or beta > 0 the unlabelled
    batches through the encoder and the entropy module; centroid refreshes when gamma < 1."""
    u, b, bu = cfg.universal, cfg.data.batch_size, cfg.data.unlabelled_batch_size
    terms = steps_supervised(cfg, dom)
    if u.alpha <= 0 and u.beta <= 0:
        return terms
    for d in cfg.data.domains:
        enc, feat = model_pass(cfg.model, dom[d].classes, dom[d].size, True, "encoder")
        terms.append(Term(f"encoder + entropy module fwd+bwd, {bu} unlabelled {dom[d].dataset} images",
                          bu * (enc + entropy_module(cfg, dom, feat, dom[d].size))))
    if u.gamma < 1.0:
        # update(): every update_every steps (default: one labelled epoch) an encoder pass over
        # every labelled image of each domain, i.e. per step about `batch_size` images per domain.
        # The default period is one labelled epoch of the FIRST domain (universal.build).
        every = u.update_every or max(1, labelled_count(cfg, dom[cfg.data.domains[0]]) // max(b, 1))
        for d in cfg.data.domains:
            n_l = labelled_count(cfg, dom[d])
            fwd = model_pass(cfg.model, dom[d].classes, dom[d].size, False, "encoder")[0]
            terms.append(Term(f"centroid refresh: encoder fwd over {n_l} labelled {dom[d].dataset} images "
                              f"every {every} steps", n_l / every * fwd))
    if u.init == "pretrain":
        # Appendix A: each domain's own supervised model first, init_iterations steps of
        # batch_size, spread over this run's steps (a stage, so trials that share its recipe
        # build it once: an upper bound).
        for d in cfg.data.domains:
            fb = model_pass(cfg.model, dom[d].classes, dom[d].size, True)[0]
            terms.append(Term(f"label-embedding pre-fit of {dom[d].dataset}: {u.init_iterations} steps of {b}, "
                              f"spread over {cfg.train.iterations} steps",
                              u.init_iterations * b * fb / cfg.train.iterations))
    return terms


def entropy_module(cfg, dom: dict, feat: tuple, size: tuple) -> float:
    """FLOPs of the universal entropy module on one image's encoder features (C, h, w): the 1x1
    projection and the scores against every domain's label embeddings, fwd+bwd."""
    from unisemi.methods.universal import scores
    u, (ch, h, w) = cfg.universal, feat

    def run():
        with torch.device("meta"):
            proj = torch.nn.Conv2d(ch, u.embed_dim, 1)
        e = proj(_meta(1, ch, h, w, grad=True))
        if u.released_full_resolution:
            e = F.interpolate(e, size=size, mode="bilinear")
        sum(scores(e, _meta(dom[i].classes, u.centroids, u.embed_dim), cfg).sum()
            for i in cfg.data.domains).backward()
    return count_flops(run)


def steps_contrastive(cfg, dom: dict) -> list[Term]:
    """contrastive.losses: teacher on the unlabelled images; ONE student pass over labelled (+ DA
    source) and `views` strong views of each unlabelled image; with lambda_contr > 0 a teacher pass
    over the labelled images (memory-bank push) and, after the warm-up, the contrastive heads."""
    c, b, bu = cfg.contrastive, cfg.data.batch_size, cfg.data.unlabelled_batch_size
    t = dom[cfg.data.domains[0]]
    fb, feat = model_pass(cfg.model, t.classes, t.size, True)
    fwd = model_pass(cfg.model, t.classes, t.size, False)[0]
    source = bool(c.source_domain) and not c.released_source_never_sampled
    student = b * (2 if source else 1) + c.views * bu
    terms = [Term(f"teacher fwd, {bu} unlabelled images (pseudo-labels)", bu * fwd),
             Term(f"student fwd+bwd, {b} labelled{f' + {b} source' if source else ''} + "
                  f"{c.views} x {bu} strong views", student * fb)]
    if c.lambda_contr > 0:
        terms.append(Term(f"teacher fwd, {b} labelled images (memory-bank push)", b * fwd))
        push, loss = contrastive_module(cfg, t.classes, feat, b, student)
        after = max(0, cfg.train.iterations - c.warmup) / max(cfg.train.iterations, 1)
        terms.append(Term("contrastive heads: push projection + attention", push))
        terms.append(Term(f"contrastive heads: projection, prediction, attention, bank "
                          f"(fwd+bwd, {after:.0%} of steps, after the warm-up)", after * loss))
    return terms


# The fields of the `contrastive:` section that change what the contrastive module computes.
CONTRAST_FIELDS = ("proj_dim", "attention_hidden", "memory_size", "attention",
                   "released_memory_attention_identity", "released_divide_by_all_classes")


def contrastive_module(cfg, classes: int, feat: tuple, push_images: int, student_images: int,
                       backward: bool = True) -> tuple:
    """FLOPs of the contrastive module of one step: (the push's teacher projection and attention
    ranking, the loss's student heads, fwd and, if `backward`, bwd), run through the method's own modules.

    The attention module sorts pixels by class with bincount, which has no meta kernel, so this
    runs on CPU with random tensors, in float64: in float32 the CPU takes a grouped_mm path that
    FlopCounterMode does not count, while float64 takes the batched-matmul path a GPU runs. The
    cost is affine in the pixel count (per-pixel heads, per-class bank terms), so it is counted at
    two small pixel counts and extrapolated, and cached per setting: well under a second."""
    c = cfg.contrastive
    key = tuple(getattr(c, f) for f in CONTRAST_FIELDS)
    ch, h, w = feat
    return (_affine(lambda n: _push_flops(key, classes, ch, n), push_images * h * w, classes),
            _affine(lambda n: _contrast_flops(key, classes, ch, n, backward), student_images * h * w, classes))


def _affine(count, pixels: int, classes: int) -> float:
    small = 32 * classes     # from 16 rows per class on, the attention's block padding is linear
    one, two = count(small), count(2 * small)
    return one + (two - one) * (pixels - small) / small


@functools.cache
def _heads(key: tuple, classes: int, channels: int):
    from unisemi.methods.contrastive import Config, ContrastiveHeads
    c = Config(**dict(zip(CONTRAST_FIELDS, key)))
    return c, ContrastiveHeads(channels, classes, c.proj_dim, c.attention_hidden).double().train()


@functools.cache
def _push_flops(key: tuple, classes: int, channels: int, n: int) -> float:
    c, heads = _heads(key, classes, channels)
    g = torch.Generator().manual_seed(0)

    def push():
        with torch.no_grad():
            z = heads.projection(torch.randn(n, channels, generator=g, dtype=torch.float64))
            if c.attention:
                heads.attention_pred.score(z, torch.randint(classes, (n,), generator=g),
                                           torch.ones(n, dtype=torch.bool))
    return count_flops(push)


@functools.cache
def _contrast_flops(key: tuple, classes: int, channels: int, n: int, backward: bool = True) -> float:
    from unisemi.methods.contrastive import contrast
    c, heads = _heads(key, classes, channels)
    g = torch.Generator().manual_seed(0)
    state = _ContrastState(_Section(c), classes, heads)
    memory = torch.randn(classes, c.memory_size, c.proj_dim, generator=g, dtype=torch.float64)
    fill = torch.full((classes,), c.memory_size)

    def loss():      # n pixels as a (1, C, 1, n) feature map
        x = torch.randn(1, channels, 1, n, generator=g, dtype=torch.float64, requires_grad=backward)
        with torch.set_grad_enabled(backward):
            value = contrast(state, x, torch.randint(classes, (1, 1, n), generator=g),
                             torch.ones(1, 1, n, dtype=torch.bool), memory, fill)
        if backward:
            value.backward()
    return count_flops(loss)


@dataclasses.dataclass(frozen=True)
class _Section:
    contrastive: object


@dataclasses.dataclass
class _ContrastState:
    """The fields of contrastive.State that `contrast` reads."""
    cfg: object
    num_classes: int
    heads: object


def steps_ass(cfg, dom: dict) -> list[Term]:
    """ass.losses: source and target in separate model passes, D_g on both softmax maps (G's term
    through D_g, D's on detached maps), D_s on the features; the Oracle: labelled target only."""
    from unisemi.methods.ass import global_discriminator, semantic_discriminator
    a, b, bu = cfg.ass, cfg.data.batch_size, cfg.data.unlabelled_batch_size
    t = dom[cfg.data.domains[0]]
    fb_t, feat_t = model_pass(cfg.model, t.classes, t.size, True)
    if not a.source_domain:
        return [Term(f"Oracle: student fwd+bwd, {b} labelled target images", b * fb_t)]
    s = dom[a.source_domain]
    fb_s, feat_s = model_pass(cfg.model, t.classes, s.size, True)
    with torch.device("meta"):
        d_g = global_discriminator(t.classes, a.gd_width, a.leaky_slope)
        d_s = (semantic_discriminator(a.variant, feat_t[0], t.classes, a.hidden, a.leaky_slope)
               if a.variant != "none" else None)

    def d_global(size, grad_input):
        return count_flops(lambda: d_g(_meta(1, t.classes, *size, grad=grad_input)).sum().backward())

    terms = [Term(f"model fwd+bwd, {b} source ({s.dataset}) images", b * fb_s),
             Term(f"model fwd+bwd, {b} labelled + {bu} unlabelled target images", (b + bu) * fb_t),
             Term(f"D_g fwd+bwd: G's term on {b} source maps, D's on {b} source + {bu} target maps",
                  2 * b * d_global(s.size, True) + bu * d_global(t.size, False))]
    if a.multi_level:
        terms += multi_level_terms(cfg, t, s, b, bu, d_global)
    if d_s is not None:
        def d_sem(feat, grad_input):
            # CSA: 1x1 convs at every feature pixel; FCSA: the same layers on (classes, C) means.
            x = (_meta(1, feat[0], *feat[1:], grad=grad_input) if a.variant == "csa"
                 else _meta(1, t.classes, feat[0], grad=grad_input))
            return count_flops(lambda: d_s(x).sum().backward())
        terms.append(Term(f"D_s ({a.variant}) fwd+bwd: G's term on source, D's on source + labelled target",
                          2 * b * d_sem(feat_s, True) + b * d_sem(feat_t, False)))
    return terms


def multi_level_terms(cfg, t: Domain, s: Domain, b: int, bu: int, d_global) -> list[Term]:
    """ass.multi_level: the auxiliary classifier (the head's type) on the encoder's "mid" output of
    every source and target image, upsampled to the input, fwd+bwd (its gradient joins the
    encoder's backward, already counted in the model's pass), and D_aux on those maps, as D_g."""
    def aux_pass(size):
        model = _meta_model(cfg.model, t.classes)
        with torch.device("meta"):
            feats = model.encoder(torch.empty(1, 3, *size))
            head = model.head_builder(int(model.encoder.mid_channels), int(model.encoder.low_channels),
                                      t.classes, model.cfg)
        x, low = _meta(*feats["mid"].shape, grad=True), _meta(*feats["low"].shape)

        def run():
            logits, _ = head({"out": x, "low": low})
            F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False).sum().backward()
        return count_flops(run)
    return [Term(f"auxiliary classifier fwd+bwd on layer3: {b} source + {b + bu} target images",
                 b * aux_pass(s.size) + (b + bu) * aux_pass(t.size)),
            Term(f"D_aux fwd+bwd: G's term on {b} source maps, D's on {b} source + {bu} target maps",
                 2 * b * d_global(s.size, True) + bu * d_global(t.size, False))]


def steps_transfer(cfg, dom: dict) -> list[Term]:
    """transfer.losses: the segmenter on its labelled batch (strong labels + generated L_w); in the
    pnet phase also P-Net on `pnet_max_classes` masked images per image, real and fake (G's term
    through P-Net, P-Net's on the detached fake). The L-Net, CAM and diffusion stages are fits of
    their own, built once per recipe and shared, and are not part of a row's step."""
    from unisemi.methods.transfer.pnet import PNet
    b, d = cfg.data.batch_size, dom[cfg.data.domains[0]]
    fb = model_pass(cfg.model, d.classes, d.size, True)[0]
    terms = [Term(f"segmenter fwd+bwd, {b} {d.dataset} images", b * fb)]
    if cfg.transfer.phase == "pnet":
        side = cfg.transfer.pnet_size
        size = (side, side) if side else tuple(d.size)
        with torch.device("meta"):
            net = PNet(size)

        def one(grad_input):
            return count_flops(lambda: net(_meta(1, 3, *size, grad=grad_input)).sum().backward())
        k = cfg.transfer.pnet_max_classes
        terms.append(Term(f"P-Net fwd+bwd on {k} masks x {b} images: fake twice (G, D), real once",
                          b * k * (2 * one(True) + one(False))))
    return terms


# Method name -> its step. A method without an entry cannot be priced: add one beside it.
STEPS = {"supervised": steps_supervised, "finetune": steps_finetune, "universal": steps_universal,
         "contrastive": steps_contrastive, "ass": steps_ass, "transfer": steps_transfer}


def labelled_count(cfg, d: Domain) -> int:
    """N labelled images of domain `d`, as the data layer draws them."""
    from unisemi.data.splits import n_from_config
    return n_from_config(cfg.data.n_labelled, cfg.data.labelled_fraction, d.train_images, d.dataset)
