"""What a table costs at paper scale: FLOPs per training step, step time, device-hours.

`--dry-run --profile paper` cannot probe (the paper data is not on a laptop, and a CPU step of
DeepLabv2-R101 says nothing about a GPU), so a step is priced from its FLOPs:

    device-hours = trials x iterations x step time,  step time = FLOPs per step / sustained FLOP/s

- FLOPs per step: `torch.utils.flop_counter.FlopCounterMode` over one forward (and, where the
  method trains through it, backward) of the real model on the `meta` device: shapes only, no
  data, ~1 s for ResNet-101 at 512x512. Counts are cached per (model config, classes, input shape).
  Each method's step is a list of such passes, read off its `losses()` (`STEPS` below).
- Sustained FLOP/s: a stated GPU class's dense peak times an assumed utilisation (`GPU`).
- Where finished trials of the same config ran on a GPU (stored rows whose device is not a CPU),
  their measured step time is used instead (`measured_steps`).

FlopCounterMode counts matrix products and convolutions (2 FLOPs per multiply-add), not
elementwise ops, norms or the optimiser: those are memory-bound and folded into the utilisation.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import re

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode


class CostError(ValueError):
    """A config the estimator cannot price; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class GPU:
    name: str
    peak_tflops: dict          # dense peak per precision (train.amp value -> TFLOP/s)
    utilisation: float         # assumed sustained fraction of that peak over a training step

    def sustained(self, amp: str) -> float:
        """FLOP/s a step of precision `amp` is assumed to sustain."""
        return self.peak_tflops.get(amp, self.peak_tflops["off"]) * 1e12 * self.utilisation

    def describe(self, amp: str = "off") -> str:
        precision = {"off": "TF32", "bf16": "BF16", "fp16": "FP16"}.get(amp, amp)
        peak = self.peak_tflops.get(amp, self.peak_tflops["off"])
        return (f"{self.name}, {precision} dense peak {peak:g} TFLOP/s x assumed utilisation "
                f"{self.utilisation:.0%} = {self.sustained(amp) / 1e12:.1f} TFLOP/s sustained")


# A100 SXM4 80GB dense (no sparsity) peaks from NVIDIA's A100 datasheet. An fp32 config
# (train.amp: off) is priced at TF32 because PyTorch runs convolutions, nearly all of these FLOPs,
# on TF32 tensor cores by default (torch.backends.cudnn.allow_tf32 is True). 35% is an assumption:
# a dilated ResNet-101 step keeps large feature maps (memory-bound BN/ReLU/interpolation between
# the convolutions), and the contrastive step adds small matmuls and augmentations.
A100 = GPU("NVIDIA A100 SXM4 80GB", {"off": 156.0, "bf16": 312.0, "fp16": 312.0}, 0.35)


# Training input (H, W) per suite and dataset where a config leaves data.size empty: each paper's
# protocol, ../shared/notes/datasets.md and official_code.md.
TRAIN_SIZE = {
    # Alonso et al.: Cityscapes halved to 512x1024, then a 512x512 crop; VOC 321x321 crops.
    "contrastive": {"cityscapes": (512, 512), "pascal_voc": (321, 321), "gta5": (512, 512)},
    # Kalluri et al. state "a uniform crop size across datasets" (the number is lost from our
    # copy of the text); the release crops Cityscapes and IDD to 512x512, taken for all four.
    "universal": {"cityscapes": (512, 512), "camvid": (512, 512), "idd": (512, 512),
                  "sunrgbd": (512, 512)},
    # ASS states no resolution; AdaptSegNet's, whose batch and schedule the spec takes: whole
    # images, Cityscapes at 512x1024, GTA5 at 720x1280, SYNTHIA at 760x1280.
    "ass": {"cityscapes": (512, 1024), "gta5": (720, 1280), "synthia": (760, 1280)},
    # The transfer paper's loader settings are not in this table yet: a config must set data.size.
}


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


@functools.lru_cache(maxsize=None)
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
    return [Term(f"student fwd+bwd, {b} labelled {d} images",
                 b * model_pass(cfg.model, dom[d].classes, dom[d].size, True)[0]) for d in cfg.data.domains]


def steps_finetune(cfg, dom: dict) -> list[Term]:
    """finetune.losses: source batches for the first source_fraction of the run, then target ones."""
    f, b = cfg.finetune.source_fraction, cfg.data.batch_size
    src, tgt = dom[cfg.finetune.source_domain], dom[cfg.data.domains[0]]
    return [Term(f"source phase ({f:.0%} of steps), fwd+bwd, {b} images",
                 f * b * model_pass(cfg.model, src.classes, src.size, True)[0]),
            Term(f"target phase ({1 - f:.0%} of steps), fwd+bwd, {b} images",
                 (1 - f) * b * model_pass(cfg.model, tgt.classes, tgt.size, True)[0])]


def steps_universal(cfg, dom: dict) -> list[Term]:
    """universal.losses: labelled batches through the model; with alpha or beta > 0 the unlabelled
    batches through the encoder and the entropy module; centroid refreshes when gamma < 1."""
    from unisemi.methods.universal import scores
    u, b, bu = cfg.universal, cfg.data.batch_size, cfg.data.unlabelled_batch_size
    terms = steps_supervised(cfg, dom)
    if u.alpha <= 0 and u.beta <= 0:
        return terms
    for d in cfg.data.domains:
        enc, (ch, h, w) = model_pass(cfg.model, dom[d].classes, dom[d].size, True, "encoder")
        size = dom[d].size if u.released_full_resolution else (h, w)

        def entropy_module():
            with torch.device("meta"):
                proj = torch.nn.Conv2d(ch, u.embed_dim, 1)
            e = proj(_meta(1, ch, h, w, grad=True))
            e = F.interpolate(e, size=size, mode="bilinear") if u.released_full_resolution else e
            sum(scores(e, _meta(dom[i].classes, u.centroids, u.embed_dim), cfg).sum()
                for i in cfg.data.domains).backward()
        terms.append(Term(f"encoder + entropy module fwd+bwd, {bu} unlabelled {d} images",
                          bu * (enc + count_flops(entropy_module))))
    if u.gamma < 1.0:
        # update(): every update_every steps (default: one labelled epoch) an encoder pass over
        # every labelled image of each domain, i.e. per step about `batch_size` images per domain.
        for d in cfg.data.domains:
            n_l = labelled_count(cfg, dom[d])
            every = u.update_every or max(1, n_l // max(b, 1))
            fwd = model_pass(cfg.model, dom[d].classes, dom[d].size, False, "encoder")[0]
            terms.append(Term(f"centroid refresh: encoder fwd over {n_l} labelled {d} images "
                              f"every {every} steps", n_l / every * fwd))
    if u.init == "pretrain":
        # Appendix A: each domain's own supervised model first, init_iterations steps of
        # batch_size, spread over this run's steps (a stage, so trials that share its recipe
        # build it once: an upper bound).
        for d in cfg.data.domains:
            fb = model_pass(cfg.model, dom[d].classes, dom[d].size, True)[0]
            terms.append(Term(f"label-embedding pre-fit of {d}: {u.init_iterations} steps of {b}, "
                              f"spread over {cfg.train.iterations} steps",
                              u.init_iterations * b * fb / cfg.train.iterations))
    return terms


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


@functools.lru_cache(maxsize=None)
def _heads(key: tuple, classes: int, channels: int):
    from unisemi.methods.contrastive import ContrastiveHeads, Config
    c = Config(**dict(zip(CONTRAST_FIELDS, key)))
    return c, ContrastiveHeads(channels, classes, c.proj_dim, c.attention_hidden).double().train()


@functools.lru_cache(maxsize=None)
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


@functools.lru_cache(maxsize=None)
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

    terms = [Term(f"model fwd+bwd, {b} source images", b * fb_s),
             Term(f"model fwd+bwd, {b} labelled + {bu} unlabelled target images", (b + bu) * fb_t),
             Term(f"D_g fwd+bwd: G's term on {b} source maps, D's on {b} source + {bu} target maps",
                  2 * b * d_global(s.size, True) + bu * d_global(t.size, False))]
    if d_s is not None:
        def d_sem(feat, grad_input):
            # CSA: 1x1 convs at every feature pixel; FCSA: the same layers on (classes, C) means.
            x = (_meta(1, feat[0], *feat[1:], grad=grad_input) if a.variant == "csa"
                 else _meta(1, t.classes, feat[0], grad=grad_input))
            return count_flops(lambda: d_s(x).sum().backward())
        terms.append(Term(f"D_s ({a.variant}) fwd+bwd: G's term on source, D's on source + labelled target",
                          2 * b * d_sem(feat_s, True) + b * d_sem(feat_t, False)))
    return terms


# Method name -> its step. A method without an entry cannot be priced: add one beside it.
STEPS = {"supervised": steps_supervised, "finetune": steps_finetune, "universal": steps_universal,
         "contrastive": steps_contrastive, "ass": steps_ass}


def step_terms(cfg, dom: dict) -> list[Term]:
    if cfg.method not in STEPS:
        raise CostError(f"method '{cfg.method}' has no FLOP count in unisemi/ablation/cost.py STEPS "
                        f"(known: {', '.join(sorted(STEPS))}); add one read off its losses()")
    return STEPS[cfg.method](cfg, dom)


def labelled_count(cfg, d: Domain) -> int:
    if cfg.data.labelled_fraction > 0:
        return max(1, round(cfg.data.labelled_fraction * d.train_images))
    return min(cfg.data.n_labelled, d.train_images)


# ----------------------------------------------------------------------------------------------
# Domains of a resolved config, and a table's trials at a profile whose data is not on disk

def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def stand_ins() -> dict:
    """{real dataset: the synthetic domain that stands in for it}, e.g. cityscapes -> city."""
    from unisemi.data.sources import SOURCES
    from unisemi.data.synthetic import DOMAINS
    by_name = {_norm(spec.stands_in_for): name for name, spec in DOMAINS.items()}
    return {real: by_name[_norm(real)] for real in SOURCES if _norm(real) in by_name}


def domain_info(name: str, cfg, suite: str) -> Domain:
    """Classes, training input and train-set size of a domain (a real dataset or a synthetic one)."""
    from unisemi.data.sources import SOURCES
    from unisemi.data.synthetic import DOMAINS
    from unisemi.methods import get_method
    widen = getattr(get_method(cfg.method), "head_classes", None)
    if name in SOURCES:
        src = SOURCES[name]
        size = tuple(cfg.data.size) or TRAIN_SIZE.get(suite, {}).get(name)
        if size is None:
            raise CostError(f"no training input size for {name} in suite '{suite}': set data.size in "
                            f"the spec's paper profile, or add it to TRAIN_SIZE in unisemi/ablation/cost.py")
        # VOC's semi-supervised protocols draw from the 10582-image SBD-augmented train set.
        train = src.EXPECTED.get("train_aug", src.EXPECTED["train"])
        classes = len(src.CLASSES)
    elif name in DOMAINS:
        spec = DOMAINS[name]
        size, train, classes = tuple(cfg.data.size) or spec.size, spec.train_size, spec.num_classes
    else:
        raise CostError(f"unknown domain '{name}' (neither a real dataset nor a synthetic domain)")
    return Domain(name, widen(cfg, name, classes) if widen else classes, tuple(size), train)


def config_domains(cfg) -> list[str]:
    """Every domain a step reads: the config's, and a method's source domain."""
    names = list(cfg.data.domains)
    for section in ("finetune", "ass", "contrastive"):
        src = getattr(getattr(cfg, section, None), "source_domain", "") if cfg.method == section else ""
        if src and src not in names:
            names.append(src)
    return names


def priced_trials(spec, profile: str = "paper", seeds=None, overrides=None, only=None):
    """(trials, pending, real): `expand` of the spec, and {synthetic domain: real dataset} for
    pricing. Where the profile maps table domains to real datasets that configs cannot resolve
    yet, each is replaced by its synthetic stand-in (same label space and train-set size) for the
    expansion. In the paper profile every stand-in is priced as the dataset it stands in for,
    also one a level names (contrastive/table4's `game` source is GTA5). No data is read."""
    from unisemi.ablation.spec import Spec, SpecError, expand
    real = {s: r for r, s in stand_ins().items()} if profile == "paper" else {}
    try:
        trials, pending = expand(spec, profile, seeds, overrides, only)
        return trials, pending, real
    except SpecError:
        prof = (spec.raw.get("profiles") or {}).get(profile) or {}
        swap = {r: s for r, s in stand_ins().items()
                if r in (prof.get("domains") or {}).values() or r in (prof.get("set") or {}).values()}
        if not swap:
            raise
    raw = copy.deepcopy(spec.raw)
    body = raw["profiles"][profile]
    body["domains"] = {k: swap.get(v, v) for k, v in body["domains"].items()}
    body["set"] = {k: swap.get(v, v) if isinstance(v, str) else v for k, v in (body.get("set") or {}).items()}
    trials, pending = expand(Spec(spec.suite, spec.name, spec.path, raw), profile, seeds, overrides, only)
    return trials, pending, {**real, **{s: r for r, s in swap.items()}}


# ----------------------------------------------------------------------------------------------
# Step time and device-hours

def flops_per_step(cfg, suite: str, real: dict | None = None) -> tuple[float, list[Term], dict]:
    """FLOPs of one training step of a resolved Config, with the terms they come from and the
    domains as priced ({config's name: Domain})."""
    dom = {n: domain_info((real or {}).get(n, n), cfg, suite) for n in config_domains(cfg)}
    terms = step_terms(cfg, dom)
    return sum(t.flops for t in terms), terms, dom


def measured_steps(store) -> dict:
    """{config_identity: (seconds per step, devices, device name)} from the stored finished trials
    that ran on a GPU: (train_s + data_s) / iterations of their final rows."""
    from unisemi.ablation.spec import config_identity
    fin = store.final_rows() if store is not None and store.exists() else None
    if fin is None or not len(fin):
        return {}
    fin = fin[(fin["status"] == "ok") & ~fin["device"].fillna("cpu").str.contains("cpu")
              & (fin["iteration"] > 0)].drop_duplicates("trial")
    out = {}
    for key, g in fin.groupby(fin["config_json"].map(lambda j: config_identity(json.loads(j)))):
        per_step = ((g["train_s"].fillna(0) + g["data_s"].fillna(0)) / g["iteration"]).mean()
        out[key] = (float(per_step), int(g["workers"].fillna(1).clip(lower=1).iloc[0]), str(g["device"].iloc[0]))
    return out


@dataclasses.dataclass
class Priced:
    """One distinct config of a table, priced."""
    cells: list                # cell ids sharing it
    trials: int
    iterations: int
    flops: float               # per step (nan when measured)
    terms: list
    step_s: float
    devices: int
    source: str                # "FLOPs" or "measured on <device>"
    amp: str = "off"           # train.amp: which peak the FLOPs are priced at
    inputs: dict = dataclasses.field(default_factory=dict)   # dataset -> training input (H, W)

    @property
    def device_hours(self) -> float:
        return self.trials * self.iterations * self.step_s * self.devices / 3600.0


def price_table(spec, profile: str = "paper", seeds=None, overrides=None, only=None, store=None,
                gpu: GPU = A100) -> tuple[list[Priced], dict]:
    """Every distinct config (seeds aside) of the table, priced (`price_trials`); plus the pending cells."""
    trials, pending, real = priced_trials(spec, profile, seeds, overrides, only)
    return price_trials(trials, spec.suite, real, store, gpu), pending


def price_trials(trials, suite: str, real: dict | None = None, store=None, gpu: GPU = A100) -> list[Priced]:
    """Trials grouped by config (seeds aside), each group with its step time and device-hours.
    A measured GPU step time from `store` wins over the FLOP estimate. The estimate is for one
    device: DDP over N devices splits the same FLOPs, so device-hours stay (ideal scaling)."""
    from unisemi.ablation.spec import config_identity
    from unisemi.config import build_config
    measured = measured_steps(store)
    groups: dict = {}
    for t in trials:
        groups.setdefault(config_identity(t.config), []).append(t)
    out = []
    for key, ts in groups.items():
        cfg = build_config(ts[0].config, f"trial {ts[0].key}")
        cells = list(dict.fromkeys(t.cell_id for t in ts))
        if key in measured:
            step, devices, name = measured[key]
            out.append(Priced(cells, len(ts), cfg.train.iterations, math.nan, [], step, devices,
                              f"measured on {name}"))
            continue
        flops, terms, dom = flops_per_step(cfg, suite, real)
        out.append(Priced(cells, len(ts), cfg.train.iterations, flops, terms,
                          flops / gpu.sustained(cfg.train.amp), 1, "FLOPs", cfg.train.amp,
                          {d.dataset: d.size for d in dom.values()}))
    return out


def describe_cost(priced: list[Priced], gpu: GPU = A100) -> str:
    """The dry-run's lines: per config, trials x iterations x step time = device-hours; a total."""
    lines = [f"paper-scale cost: trials x iterations x step time = device-hours, on one {gpu.name}"]
    for p in priced:
        what = (f"{p.flops / 1e12:.3g} TFLOPs/step" if p.source == "FLOPs"
                else f"x {p.devices} device(s), {p.source}")
        lines.append(f"  {', '.join(p.cells)}: {p.trials} trials x {p.iterations} iterations x "
                     f"{p.step_s:.3g} s = {p.device_hours:.3g} device-hours ({what})")
    total = sum(p.device_hours for p in priced)
    lines.append(f"total: {sum(p.trials for p in priced)} trials, {total:.3g} device-hours "
                 f"(= {total / 24:.3g} device-days)")
    for amp in dict.fromkeys(p.amp for p in priced if p.source == "FLOPs"):
        lines.append(f"step time from FLOPs (torch FlopCounterMode over every pass of the method's "
                     f"step, fwd+bwd), no GPU measurement stored: {gpu.describe(amp)}")
    inputs = {k: v for p in priced for k, v in p.inputs.items()}
    if inputs:
        lines.append("training inputs (H x W): " + ", ".join(f"{k} {h}x{w}" for k, (h, w) in inputs.items())
                     + " (data.size, else the paper's protocol: cost.TRAIN_SIZE); no data is read")
    if any(p.source == "FLOPs" for p in priced):
        lines.append("not included: evaluation, data loading, checkpoints, cluster start-up")
    return "\n".join(lines)
