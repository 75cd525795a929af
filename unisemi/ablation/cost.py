"""What a table costs at paper scale: FLOPs per training step, step time, device-hours.

`--dry-run --profile paper` cannot probe (the paper data is not on a laptop, and a CPU step of
DeepLabv2-R101 says nothing about a GPU), so a step is priced from its FLOPs:

    device-hours = trials x iterations x step time,  step time = FLOPs per step / sustained FLOP/s

- FLOPs per step (step_flops.py): `torch.utils.flop_counter.FlopCounterMode` over one forward
  (and, where the method trains through it, backward) of the real model on the `meta` device:
  shapes only, no data, ~1 s for ResNet-101 at 512x512. Counts are cached per (model config,
  classes, input shape). Each method's step is a list of such passes, read off its `losses()`.
- Sustained FLOP/s: a stated GPU class's dense peak times an assumed utilisation (`GPU`).
- Where finished trials of the same config ran on a GPU (stored rows whose device is not a CPU),
  their measured step time is used instead (`measured_steps`).

FlopCounterMode counts matrix products and convolutions (2 FLOPs per multiply-add), not
elementwise ops, norms or the optimiser: those are memory-bound and folded into the utilisation.
"""
from __future__ import annotations

import dataclasses
import json
import math

from unisemi.ablation.step_flops import (  # noqa: F401  (the counting API, re-exported)
    STEPS, Domain, Term, contrastive_module, count_flops, model_pass)


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


# (H, W) of a real dataset's files where its protocol neither resizes nor crops, so the model
# sees the file as it is: the SegNet CamVid set is 480x360, Cityscapes 2048x1024
# (../shared/notes/datasets.md). VOC and SUN RGB-D vary per image: a config must crop or resize.
NATIVE_SIZE = {"camvid": (360, 480), "cityscapes": (1024, 2048)}


def step_terms(cfg, dom: dict) -> list[Term]:
    """The terms of one training step of a config's method, over its domains `dom`."""
    if cfg.method not in STEPS:
        raise CostError(f"method '{cfg.method}' has no FLOP count in unisemi/ablation/step_flops.py STEPS "
                        f"(known: {', '.join(sorted(STEPS))}); add one read off its losses()")
    return STEPS[cfg.method](cfg, dom)


# ----------------------------------------------------------------------------------------------
# Domains of a resolved config

def _protocol_size(value, default) -> tuple:
    """A data.resize / data.crop value over the dataset's default, as real.load_real reads them:
    () = the dataset's protocol, (0, 0) = none."""
    value = tuple(value or ())
    return () if value == (0, 0) else (value or tuple(default))


def train_input(name: str, data_cfg) -> tuple:
    """(H, W) the model sees in training for a real dataset: the crop, else the resize, else the
    files' own size (a random rescale is cropped back, so it never changes the shape)."""
    from unisemi.data.real import DATASETS
    ds = DATASETS[name]
    size = (_protocol_size(data_cfg.crop, ds.crop) or _protocol_size(data_cfg.resize, ds.resize)
            or NATIVE_SIZE.get(ds.source))
    if not size:
        raise CostError(f"{name}: no training input size (its images vary in size and neither "
                        f"data.crop nor data.resize is set): set one in the spec's profile")
    return tuple(size)


def domain_info(name: str, cfg) -> Domain:
    """Classes, training input and train-set size of a domain (a real dataset or a synthetic one),
    from the data layer's tables: no files are read."""
    from unisemi.data.real import DATASETS, classes_of
    from unisemi.data.sources import get_source
    from unisemi.data.synthetic import DOMAINS
    from unisemi.methods import get_method
    widen = getattr(get_method(cfg.method), "head_classes", None)
    if name in DATASETS:
        ds = DATASETS[name]
        size, classes = train_input(name, cfg.data), len(classes_of(name))
        train = get_source(ds.source).EXPECTED[ds.train]
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


# ----------------------------------------------------------------------------------------------
# Step time and device-hours

def flops_per_step(cfg) -> tuple[float, list[Term], dict]:
    """FLOPs of one training step of a resolved Config, with the terms they come from and the
    domains as priced ({config's name: Domain})."""
    dom = {n: domain_info(n, cfg) for n in config_domains(cfg)}
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
    from unisemi.ablation.spec import expand
    trials, pending = expand(spec, profile, seeds, overrides, only)
    return price_trials(trials, store, gpu), pending


def price_trials(trials, store=None, gpu: GPU = A100) -> list[Priced]:
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
        flops, terms, dom = flops_per_step(cfg)
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
                     + " (the data layer's protocol, or data.crop / data.resize); no data is read")
    if any(p.source == "FLOPs" for p in priced):
        lines.append("not included: evaluation, data loading, checkpoints, cluster start-up, the "
                     "transfer method's L-Net / CAM / diffusion / P-Net pre-training stages")
    return "\n".join(lines)
