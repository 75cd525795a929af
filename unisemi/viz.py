"""The universal paper's figures from checkpoints:

    python -m unisemi viz tsne --checkpoint runs/basic --checkpoint runs/full --out tsne.png
    python -m unisemi viz predictions --checkpoint runs/basic --checkpoint runs/full --domain city --out pred.png

`tsne` (Figure 4): a t-SNE of encoder features of the majority classes of two domains, coloured by
domain:class, one panel per checkpoint (e.g. univ-basic beside univ-full). `predictions`
(Figure 5): input | each checkpoint's prediction | ground truth for a few validation images.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def load_run(path: str):
    """(config, model, domains) of a checkpoint, the model in eval mode on CPU."""
    from unisemi import checkpoint
    from unisemi.config import build_config
    from unisemi.data import load_domain
    from unisemi.methods import head_sizes
    from unisemi.models import build_model
    ck = checkpoint.load(path)
    cfg = build_config(ck["config"], str(path))
    domains = {d: load_domain(cfg.data, d) for d in cfg.data.domains}
    model = build_model(cfg.model, head_sizes(cfg, domains))
    model.load_state_dict(ck["model"])
    return cfg, model.eval(), domains


@torch.no_grad()
def class_features(model, dd, images: int, per_class: int, classes: list[int], seed: int = 0,
                   scheme: str = "imagenet"):
    """Encoder features (upsampled to label resolution) of up to `per_class` val pixels per class."""
    from unisemi.data.transforms import normalize
    x, y = dd.fetch("val", dd.val[:images])
    feats = model.encode(normalize(x, scheme))["out"]
    up = F.interpolate(feats, size=y.shape[-2:], mode="bilinear", align_corners=False)
    rows = up.permute(0, 2, 3, 1).reshape(-1, up.shape[1])
    lab = y.reshape(-1).long()
    g = torch.Generator().manual_seed(seed)
    out_x, out_c = [], []
    for c in classes:                      # a figure, once: not a training step
        idx = torch.nonzero(lab == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)[:per_class]]
        out_x.append(rows[idx])
        out_c += [c] * len(idx)
    return torch.cat(out_x).numpy(), np.array(out_c)


def majority_classes(dd, images: int, k: int) -> list[int]:
    _, y = dd.fetch("val", dd.val[:images])
    counts = torch.bincount(y.reshape(-1).long().clamp_max(dd.num_classes), minlength=dd.num_classes + 1)
    return counts[:dd.num_classes].argsort(descending=True)[:k].tolist()


def tsne(args) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    from unisemi.data.transforms import input_scheme

    runs = [load_run(p) for p in args.checkpoint]
    domains = args.domains or list(runs[0][2])[:2]
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 5.5), squeeze=False)
    for ax, path, (cfg, model, dds) in zip(axes[0], args.checkpoint, runs):
        feats, labels = [], []
        for d in domains:
            if d not in dds:
                raise ValueError(f"{path}: no domain '{d}' (has: {', '.join(dds)})")
            classes = majority_classes(dds[d], args.images, args.classes)
            x, c = class_features(model, dds[d], args.images, args.per_class, classes,
                                  scheme=input_scheme(cfg))
            feats.append(x)
            labels += [f"{d}:{dds[d].classes[i]}" for i in c]
        emb = TSNE(n_components=2, init="pca", random_state=0, perplexity=30).fit_transform(np.concatenate(feats))
        labels = np.array(labels)
        for name in sorted(set(labels)):
            m = labels == name
            ax.scatter(emb[m, 0], emb[m, 1], s=3, label=name, marker="o" if name.startswith(domains[0]) else "^")
        ax.set_title(f"{Path(path).name} ({cfg.method})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6, markerscale=3, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    plt.close(fig)
    return Path(args.out)


@torch.no_grad()
def predictions(args) -> Path:
    from PIL import Image

    from unisemi.data.synthetic.preview import palette
    from unisemi.data.transforms import input_scheme, normalize
    from unisemi.losses import IGNORE_INDEX

    runs = [load_run(p) for p in args.checkpoint]
    dd = runs[0][2].get(args.domain)
    if dd is None:
        raise ValueError(f"{args.checkpoint[0]}: no domain '{args.domain}' (has: {', '.join(runs[0][2])})")
    x, y = dd.fetch("val", dd.val[:args.images])
    colours = np.array(palette(args.domain) + [(0, 0, 0)] * (256 - dd.num_classes), dtype=np.uint8)
    colours[IGNORE_INDEX] = (0, 0, 0)
    columns = [x.permute(0, 2, 3, 1).numpy()]
    for cfg, model, _ in runs:
        pred = model(normalize(x, input_scheme(cfg)), args.domain)["logits"].argmax(1).numpy()
        columns.append(colours[pred])
    columns.append(colours[y.numpy()])
    grid = np.concatenate([np.concatenate(list(col), axis=0) for col in columns], axis=1)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(args.out)
    return Path(args.out)


def add_parser(sub) -> None:
    viz = sub.add_parser("viz", help="figures from checkpoints: t-SNE of features, predictions")
    kinds = viz.add_subparsers(dest="figure", required=True)
    t = kinds.add_parser("tsne", help="t-SNE of encoder features of two domains' majority classes")
    t.add_argument("--checkpoint", action="append", required=True, help="one panel per checkpoint")
    t.add_argument("--domains", nargs=2, default=None, help="two domains (default: the first two)")
    t.add_argument("--classes", type=int, default=5, help="majority classes per domain")
    t.add_argument("--per-class", type=int, default=200, help="pixels per class")
    t.add_argument("--images", type=int, default=32, help="val images to draw pixels from")
    t.add_argument("--out", default="tsne.png")
    t.set_defaults(func=lambda a: print(f"wrote {tsne(a)}") or 0)
    p = kinds.add_parser("predictions", help="input | each checkpoint's prediction | ground truth")
    p.add_argument("--checkpoint", action="append", required=True, help="one column per checkpoint")
    p.add_argument("--domain", required=True)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--out", default="predictions.png")
    p.set_defaults(func=lambda a: print(f"wrote {predictions(a)}") or 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unisemi")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
