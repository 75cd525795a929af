"""Foundation figures: label-scarcity gap, generator images/s, training it/s, evaluation speed-up.

    python benchmarks/foundation.py                 # everything (about 10 minutes on 2 cores)
    python benchmarks/foundation.py --skip-gap      # the speed figures only (about 1 minute)

The gap runs supervised-only on `city` twice with identical settings but the number of labelled
images (N=100 vs all 2975 of the pool), in two one-thread processes side by side.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import statistics
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unisemi.config import load_config  # noqa: E402
from unisemi.data import synthetic  # noqa: E402
from unisemi.evaluate import confusion_matrix  # noqa: E402


def generator_speed(domain: str, n: int = 256, batch: int = 64) -> float:
    """Images/s on one thread, as a laptop trial renders them (two trials share the two cores)."""
    torch.set_num_threads(1)
    synthetic.render(domain, "train", range(batch))  # warm-up
    pool = synthetic.get_domain(domain).train_size
    t0 = time.perf_counter()
    for start in range(batch, batch + n, batch):
        synthetic.render(domain, "train", [i % pool for i in range(start, start + batch)])
    return n / (time.perf_counter() - t0)


def train_speed(steps: int = 60) -> float:
    """Supervised training it/s of the laptop profile (tiny encoder, fcn head, batch 8, 64x128)."""
    from unisemi.train import fit
    torch.set_num_threads(1)
    cfg = load_config("supervised_city", [f"train.iterations={steps + 10}", "train.eval_every=100000",
                                          "data.val_images=8", "train.progress=false", "train.threads=1"])
    # Warm the data cache first so that only the step is timed.
    result = fit(cfg)
    t = result["timing"]
    return (steps + 10) / t["train"]


def eval_ratio(n_images: int = 64) -> tuple[float, float, float]:
    """Vectorised bincount vs the straightforward per-pixel loop over numpy arrays (as in the
    contrastive paper's released ConfusionMatrix), on the same 64 label maps of 64x128."""
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 19, (n_images, 64, 128), generator=gen)
    pred = torch.randint(0, 19, (n_images, 64, 128), generator=gen)
    times = []
    for _ in range(53):  # 3 warm-ups, then the median of 50 calls: robust to allocator page faults
        t0 = time.perf_counter()
        fast = confusion_matrix(pred, target, 19)
        times.append(time.perf_counter() - t0)
    t_fast = statistics.median(times[3:])
    t0 = time.perf_counter()
    slow = np.zeros((19, 19), dtype=np.int64)
    for t, p in zip(target.numpy().reshape(-1), pred.numpy().reshape(-1)):
        if t != 255:
            slow[t, p] += 1
    t_slow = time.perf_counter() - t0
    assert torch.equal(fast, torch.from_numpy(slow))
    return t_slow / t_fast, t_fast, t_slow


def _gap_worker(args):
    n_labelled, iterations, seed = args
    torch.set_num_threads(1)
    from unisemi.train import fit
    cfg = load_config("supervised_city", [
        f"data.n_labelled={n_labelled}", f"train.iterations={iterations}",
        f"train.eval_every={iterations}", f"train.seed={seed}", "train.progress=false",
        "train.threads=1"])
    result = fit(cfg)
    return n_labelled, seed, result["final"]["domains"]["city"]["miou"], result["timing"]["total"]


def label_gap(iterations: int, seeds=(0,)) -> list:
    jobs = [(n, iterations, s) for s in seeds for n in (100, synthetic.get_domain("city").train_size)]
    with mp.get_context("spawn").Pool(2) as pool:
        return pool.map(_gap_worker, jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-gap", action="store_true")
    parser.add_argument("--gap-iterations", type=int, default=4000)
    args = parser.parse_args()
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for d in sorted(synthetic.DOMAINS):
        print(f"generator {d:8s} {generator_speed(d):8.0f} images/s (batch 64, default size, 1 thread)")
    print(f"training (laptop profile: tiny/fcn, batch 8, 64x128, 1 thread): {train_speed():.1f} it/s")
    torch.set_num_threads(1)
    ratio, t_fast, t_slow = eval_ratio()
    print(f"evaluation: bincount confusion matrix {t_fast * 1e3:.2f} ms vs per-pixel loop "
          f"{t_slow * 1e3:.0f} ms on 64x64x128 pixels, 1 thread: {ratio:.0f}x (goal >= 100x)")
    if not args.skip_gap:
        rows = label_gap(args.gap_iterations)
        by_n = {n: miou for n, _, miou, _ in rows}
        for n, seed, miou, wall in rows:
            print(f"supervised city N={n:5d} seed {seed}: mIoU {miou:.2f} ({args.gap_iterations} it, {wall:.0f}s)")
        small, full = by_n[100], max(by_n.items())[1]
        print(f"label-scarcity gap (all labels - N=100): {full - small:.2f} mIoU (goal >= 15)")


if __name__ == "__main__":
    main()
