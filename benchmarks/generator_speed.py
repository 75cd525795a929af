"""Images/s of the embedded world's generator, per domain, at the default size (batch rendering).

    python benchmarks/generator_speed.py [--n 1024] [--batch 256] [--repeats 3]

Each domain renders `n` fresh train images (indices not seen before in the process, so nothing
is cached) in calls of `batch` indices, after a small warm-up; the best of `repeats` passes is
reported, with the split between scene drawing (Python) and rasterising (torch).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unisemi.data import synthetic  # noqa: E402
from unisemi.data.synthetic import scene  # noqa: E402


def images_per_second(domain: str, n: int, batch: int, repeats: int) -> tuple[float, float]:
    spec = synthetic.get_domain(domain)
    n = min(n, spec.train_size - 64)
    synthetic.render(domain, "train", range(spec.train_size - 64, spec.train_size))  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            synthetic.render(domain, "train", range(start, min(n, start + batch)))
        best = max(best, n / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    for i in range(min(n, 256)):
        scene.build(spec, scene.image_seed(domain, "train", i, 0))
    scene_share = (time.perf_counter() - t0) / min(n, 256) * best
    return best, scene_share


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, world version "
          f"{synthetic.WORLD_VERSION}")
    for d, spec in synthetic.DOMAINS.items():
        ips, share = images_per_second(d, args.n, args.batch, args.repeats)
        H, W = spec.size
        print(f"{d:8s} {H}x{W:<4d} {ips:7.0f} images/s   (scene drawing alone would take "
              f"{share:4.0%} of that time)")


if __name__ == "__main__":
    main()
