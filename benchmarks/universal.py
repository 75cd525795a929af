"""Cost of the universal method's entropy module: one training step (losses + backward + SGD) of
univ-full over univ-basic, measured side by side in one run, with the entropy at the encoder's
feature resolution (ours) and at the input resolution after x8 upsampling (the release).

    python benchmarks/universal.py [--repeat 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unisemi.config import load_config  # noqa: E402
from unisemi.data import load_domain  # noqa: E402
from unisemi.data.transforms import normalize  # noqa: E402
from unisemi.methods import universal as U  # noqa: E402
from unisemi.models import build_model  # noqa: E402
from unisemi.optim import build_optimizer, default_groups  # noqa: E402
from unisemi.train import prior_stages  # noqa: E402

VARIANTS = {
    "univ-basic (alpha = beta = 0)": ["universal.alpha=0", "universal.beta=0"],
    "univ-full, feature resolution": [],
    "univ-full, input resolution (release)": ["universal.released_full_resolution=true"],
}


def setup(extra):
    cfg = load_config("universal_city_town", ["universal.init=random", "train.progress=false"] + extra)
    torch.manual_seed(0)
    dds = {d: load_domain(cfg.data, d) for d in cfg.data.domains}
    model = build_model(cfg.model, {d: dd.num_classes for d, dd in dds.items()})
    state = U.build(cfg, model, prior_stages(cfg))
    opt = build_optimizer(default_groups(cfg, model, state)[0])
    b, bu = cfg.data.batch_size, cfg.data.unlabelled_batch_size
    batch = {"labelled": {}, "unlabelled": {}}
    for d, dd in dds.items():
        x, y = dd.fetch("train", dd.labelled[:b])
        batch["labelled"][d] = (normalize(x), y.long())
        batch["unlabelled"][d] = normalize(dd.fetch("train", dd.unlabelled[:bu])[0])

    def step():
        terms = U.losses(model, state, batch, 0)
        opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        opt.step()
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    steps = {name: setup(extra) for name, extra in VARIANTS.items()}
    times = {name: [] for name in steps}
    for name, step in steps.items():
        step()                                    # warm-up
    for _ in range(args.repeat):                  # interleaved, so load changes hit all alike
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    base = sorted(times["univ-basic (alpha = beta = 0)"])[args.repeat // 2]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); city + town, batch 4 labelled + "
          f"4 unlabelled per domain, 64x128, tiny encoder; median of {args.repeat} steps")
    for name, ts in times.items():
        med = sorted(ts)[args.repeat // 2]
        print(f"{name:40s} {med * 1e3:7.1f} ms  {med / base:5.2f}x univ-basic")


if __name__ == "__main__":
    main()
