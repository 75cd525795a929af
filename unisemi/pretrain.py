"""A pretrained encoder for the embedded world: the stand-in for every paper's ImageNet backbone.

Nothing may be downloaded, so the encoder is pretrained on a generic task that shares no domain
and no class with any evaluation domain: dense prediction on random textured shapes
(`unisemi.data.synthetic.shapes`), three heads on the encoder (shape category at stride 8,
texture family at stride 8, region boundaries from the stride-4 and stride-8 features). The heads
are light (1x1 convs), like the FCN head downstream, so what is learnt lives in the encoder.

    python -m unisemi pretrain --encoder tiny [--width 32] [--iterations N] [--out PATH] [--force]

writes `{"state_dict": encoder weights, "meta": {...}}` as the `pretrained` stage
(`unisemi.stages`: `$UNISEMI_CACHE/stages/pretrained-<hash>/encoder.pt`, default cache
`~/.cache/unisemi`); the recipe holds the pretraining config and the world version, so a changed
generator, world or recipe never reuses a stale file. `model.pretrained=synthetic` resolves to
that file (building it under the stage lock if missing) through `ensure_pretrained`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from unisemi.atomic import atomic_write
from unisemi.data.synthetic import shapes
from unisemi.data.transforms import normalize_float
from unisemi.stages import stage, stage_dir

log = logging.getLogger("unisemi")
STAGE = "pretrained"
WEIGHTS_FILE = "encoder.pt"


class PretrainedCacheError(ValueError):
    """A cached pretrained file is unreadable or does not match its key; one line for the user."""


@dataclass(frozen=True)
class PretrainConfig:
    encoder: str = "tiny"
    width: int = 32
    output_stride: int = 8
    iterations: int = 2000
    batch_pixels: int = 16 * 64 * 64   # pixels per step; the batch size follows from the size drawn
    # Multi-scale: each step draws one size, so shapes and textures are seen at several scales.
    sizes: tuple[tuple[int, int], ...] = ((64, 64), (64, 128), (48, 96), (96, 96))
    lr: float = 0.1
    warmup: int = 50
    momentum: float = 0.9
    weight_decay: float = 1e-4
    edge_weight: float = 1.0
    background_weight: float = 0.25    # shape CE weight of background (~3/4 of the pixels)
    seed: int = 0
    generator: str = shapes.GENERATOR_VERSION


DEFAULT = PretrainConfig()
CLI_FIELDS = {"width": "--width", "output_stride": "--output-stride", "iterations": "--iterations",
              "seed": "--seed"}


def config_for(model_cfg) -> PretrainConfig:
    """The default recipe for a model config's encoder, width and output stride."""
    return dataclasses.replace(DEFAULT, encoder=str(model_cfg.encoder),
                               width=int(getattr(model_cfg, "width", DEFAULT.width)),
                               output_stride=int(getattr(model_cfg, "output_stride", 8)))


def world_version() -> str:
    # Read at call time: the generator lives with the embedded world and follows its version.
    from unisemi.data import synthetic
    return str(synthetic.WORLD_VERSION)


def cache_key(cfg: PretrainConfig) -> str:
    text = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    digest = hashlib.sha256(f"{world_version()}|{text}".encode()).hexdigest()[:12]
    # Only the tiny encoder has a width; ResNets ignore it.
    name = f"{cfg.encoder}-w{cfg.width}" if cfg.encoder == "tiny" else cfg.encoder
    return f"{name}-world{world_version()}-{digest}"


def recipe(cfg: PretrainConfig) -> dict:
    """Everything that determines the weights: the pretraining config and the world version."""
    return {"key": cache_key(cfg), "config": dataclasses.asdict(cfg), "world": world_version()}


def cache_path(cfg: PretrainConfig) -> Path:
    """Where the weights of `cfg` live: the file of its `pretrained` stage (unisemi.stages)."""
    return stage_dir(STAGE, recipe(cfg)) / WEIGHTS_FILE


def rebuild_command(cfg: PretrainConfig, out: Path | None = None) -> str:
    parts = ["python -m unisemi pretrain", f"--encoder {cfg.encoder}"]
    for name, flag in CLI_FIELDS.items():
        if name == "width" and cfg.encoder != "tiny":
            continue
        if name == "width" or getattr(cfg, name) != getattr(DEFAULT, name):
            parts.append(f"{flag} {getattr(cfg, name)}")
    if out is not None:
        parts.append(f"--out {out}")
    return " ".join(parts + ["--force"])


# ----------------------------------------------------------------------------------------------
# The pretraining network and its own evaluation

class PretrainNet(nn.Module):
    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        from unisemi.models.encoders import ENCODERS
        if cfg.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {cfg.encoder!r}; known: {sorted(ENCODERS)}")
        self.encoder = ENCODERS[cfg.encoder](cfg.output_stride, cfg.width)
        c, low = int(self.encoder.out_channels), int(self.encoder.low_channels)
        self.shape = nn.Conv2d(c, len(shapes.SHAPES), 1)
        self.texture = nn.Conv2d(c, len(shapes.TEXTURES), 1)
        self.edge_low, self.edge_out = nn.Conv2d(low, 1, 1), nn.Conv2d(c, 1, 1)

    def forward(self, x):
        f = self.encoder(x)
        size = x.shape[-2:]
        up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
        edge = self.edge_low(f["low"]) + F.interpolate(
            self.edge_out(f["out"]), size=f["low"].shape[-2:], mode="bilinear", align_corners=False)
        return {"shape": up(self.shape(f["out"])), "texture": up(self.texture(f["out"])),
                "edge": up(edge)[:, 0]}


def _losses(out, y, cfg: PretrainConfig):
    # Edges are ~10% of pixels: weighting positives keeps the head from predicting "no edge".
    pos = torch.tensor(4.0)
    w = torch.ones(len(shapes.SHAPES))
    w[0] = cfg.background_weight
    return {"shape": F.cross_entropy(out["shape"], y["shape"], weight=w),
            "texture": F.cross_entropy(out["texture"], y["texture"]),
            "edge": cfg.edge_weight * F.binary_cross_entropy_with_logits(
                out["edge"], y["edge"], pos_weight=pos)}


def _miou(pred, target, n):
    conf = torch.bincount(target.flatten() * n + pred.flatten(), minlength=n * n).view(n, n).double()
    inter, union = conf.diag(), conf.sum(0) + conf.sum(1) - conf.diag()
    iou = inter[union > 0] / union[union > 0]
    return 100.0 * float(iou.mean())


@torch.no_grad()
def evaluate(net: PretrainNet, cfg: PretrainConfig, images: int = 64) -> dict:
    """The task's own accuracy on a fixed held-out set at the city size (64 x 128): shape and
    texture mIoU (%), edge F1 (%), and the chance-level shape mIoU of predicting background."""
    g = torch.Generator().manual_seed(10_000 + cfg.seed)   # disjoint from the training stream
    was = net.training
    net.eval()
    preds = {"shape": [], "texture": [], "edge": []}
    targets = {"shape": [], "texture": [], "edge": []}
    for _ in range(images // 16):
        x, y = shapes.draw_batch(16, 64, 128, g)
        out = net(normalize_float(x))
        preds["shape"].append(out["shape"].argmax(1))
        preds["texture"].append(out["texture"].argmax(1))
        preds["edge"].append(out["edge"] > 0)
        for k in targets:
            targets[k].append(y[k])
    net.train(was)
    p = {k: torch.cat(v) for k, v in preds.items()}
    t = {k: torch.cat(v) for k, v in targets.items()}
    tp = float((p["edge"] & (t["edge"] > 0)).sum())
    f1 = 2 * tp / max(float(p["edge"].sum()) + float(t["edge"].sum()), 1.0)
    return {"shape_miou": _miou(p["shape"], t["shape"], len(shapes.SHAPES)),
            "texture_miou": _miou(p["texture"], t["texture"], len(shapes.TEXTURES)),
            "edge_f1": 100.0 * f1,
            "shape_miou_chance": _miou(torch.zeros_like(t["shape"]), t["shape"], len(shapes.SHAPES)),
            "images": images}


def train_encoder(cfg: PretrainConfig, progress: bool = True, eval_every: int = 500) -> tuple[dict, dict]:
    """Pretrain; returns (encoder state dict, metrics). Deterministic given cfg and thread count."""
    from tqdm import tqdm
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    net = PretrainNet(cfg)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    t0 = time.perf_counter()
    history, sums = [], {}
    bar = tqdm(total=cfg.iterations, desc=f"pretrain {cfg.encoder}", unit="it",
               disable=not progress, dynamic_ncols=True)
    for step in range(cfg.iterations):
        # Linear warm-up, then poly decay: from random init a full lr step on the first batches
        # can wreck the BN statistics.
        scale = min(1.0, (step + 1) / max(cfg.warmup, 1)) * (1 - step / cfg.iterations) ** 0.9
        for group in opt.param_groups:
            group["lr"] = cfg.lr * scale
        H, W = cfg.sizes[int(torch.randint(len(cfg.sizes), (1,), generator=g))]
        x, y = shapes.draw_batch(max(2, cfg.batch_pixels // (H * W)), H, W, g)
        terms = _losses(net(normalize_float(x)), y, cfg)
        loss = sum(terms.values())
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"pretraining diverged at iteration {step} (loss {float(loss.detach())})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        bar.update(1)
        done = step + 1
        if done % eval_every == 0 or done == cfg.iterations:
            m = evaluate(net, cfg)
            m.update(iteration=done, loss={k: v / eval_every for k, v in sums.items()})
            history.append(m)
            sums = {}
            bar.set_postfix(shape=f"{m['shape_miou']:.1f}", texture=f"{m['texture_miou']:.1f}",
                            edge=f"{m['edge_f1']:.1f}")
    bar.close()
    metrics = dict(history[-1], seconds=time.perf_counter() - t0, threads=torch.get_num_threads(),
                   history=history)
    return net.encoder.state_dict(), metrics


# ----------------------------------------------------------------------------------------------
# The cache

def check_file(path: Path, cfg: PretrainConfig) -> dict:
    """Return the file's meta if it holds this config's encoder weights; else a one-line error
    that names the file and the command that rebuilds it."""
    from unisemi.models.encoders import ENCODERS

    def fail(reason):
        out = None if path == cache_path(cfg) else path
        return PretrainedCacheError(f"pretrained weights {path} {reason}; rebuild with: "
                                    f"{rebuild_command(cfg, out)}")

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign files raise pickle/zip errors that vary
        raise fail(f"is not a readable torch file ({type(e).__name__})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict) \
            or not isinstance(obj.get("meta"), dict):
        raise fail("is not a pretrained-encoder file (no state_dict/meta)")
    meta = obj["meta"]
    if meta.get("key") != cache_key(cfg):
        raise fail(f"has key {meta.get('key')!r}, expected {cache_key(cfg)!r}")
    target = ENCODERS[cfg.encoder](cfg.output_stride, cfg.width).state_dict()
    state = obj["state_dict"]
    bad = sorted(set(target) ^ set(state)) + sorted(
        k for k in target if k in state and state[k].shape != target[k].shape)
    if bad:
        raise fail(f"does not match the {cfg.encoder} encoder ({len(bad)} keys differ, "
                   f"e.g. {bad[0]})")
    return meta


def pretrain(cfg: PretrainConfig = DEFAULT, out: str | Path | None = None, force: bool = False,
             progress: bool = True) -> tuple[Path, dict]:
    """Build (or reuse) the pretrained encoder file; returns (path, meta).

    Without `out` the file is the `pretrained` stage of `cfg`: concurrent callers serialise on the
    stage lock, the first trains and the others reuse its file. With `out`, the file is written
    there (atomically) and no cache is involved."""
    def build(where: Path) -> None:
        log.info(f"pretraining {cache_key(cfg)} -> {where}")
        state, metrics = train_encoder(cfg, progress=progress)
        meta = {"key": cache_key(cfg), "world_version": world_version(),
                "config": dataclasses.asdict(cfg), "metrics": metrics,
                "torch": torch.__version__,
                "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        obj = {"state_dict": state, "meta": json.loads(json.dumps(meta))}
        atomic_write(where, lambda tmp: torch.save(obj, tmp))

    if out is not None:
        path = Path(out)
        if force or not path.exists():
            build(path)
        return path, check_file(path, cfg)
    folder = stage(STAGE, recipe(cfg), lambda d: build(d / WEIGHTS_FILE), force=force)
    path = folder / WEIGHTS_FILE
    return path, check_file(path, cfg)


def ensure_pretrained(model_cfg, config: PretrainConfig | None = None) -> Path:
    """The cache file of `model.pretrained=synthetic` for this model config, built if missing."""
    cfg = config or config_for(model_cfg)
    path = cache_path(cfg)
    if path.exists():
        check_file(path, cfg)
        return path
    return pretrain(cfg, progress=True)[0]


def rebuild_stage(recipe: dict, fit=None, configure=None) -> Path:
    """`python -m unisemi stages rebuild pretrained-<hash>`: retrain from the stored recipe."""
    values = dict(recipe["config"])
    values["sizes"] = tuple(tuple(s) for s in values["sizes"])
    cfg = PretrainConfig(**values)
    if world_version() != recipe["world"]:
        raise ValueError(f"stage recipe is for world version {recipe['world']}, this code generates "
                         f"world {world_version()}: it cannot be rebuilt as it was")
    return pretrain(cfg, force=True)[0].parent


def main(args) -> int:
    """`python -m unisemi pretrain` (see unisemi/cli.py for the flags)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dataclasses.replace(DEFAULT, encoder=args.encoder, width=args.width,
                              output_stride=args.output_stride,
                              iterations=args.iterations or DEFAULT.iterations, seed=args.seed)
    path, meta = pretrain(cfg, out=args.out, force=args.force)
    m = meta["metrics"]
    print(f"{path}\n  key {meta['key']}  ({m['seconds']:.0f} s on {m['threads']} threads, "
          f"{meta['config']['iterations']} iterations)\n"
          f"  own task on {m['images']} held-out images: shape mIoU {m['shape_miou']:.1f} "
          f"(all-background {m['shape_miou_chance']:.1f}), texture mIoU {m['texture_miou']:.1f}, "
          f"edge F1 {m['edge_f1']:.1f}")
    return 0
