"""Is data ever the bottleneck? Decode + augment speed of the real-dataset pipeline at each paper's
settings, its peak memory against dataset size, and the share of a laptop fit spent waiting.

    python benchmarks/data_pipeline.py [--images 24] [--samples 24] [--gpu-step 0.5]

1. Writes full-resolution files in each dataset's real layout under a temporary folder: generated
   images (smooth colour fields with noise, so PNG and JPEG sizes are photo-like) and label maps
   drawn from each dataset's own label values. Nothing is downloaded.
2. Per dataset, times `PairStream` items (read + map labels + resize/scale/crop/flip) in this
   process: that is the work of one worker. Prints ms per image and how many workers keep up
   with a GPU step of `--gpu-step` seconds at the paper's images per step.
   Cityscapes also side by side: Pillow or libspng (pyspng) decoding, and the whole-image resize
   then crop or the windowed resample the pipeline uses (the same pixels).
3. Peak memory: a fresh process streams `--samples` Cityscapes samples through 2 workers from a
   pool of N and 4N files; the peak RSS of the loop's process and of the largest worker are
   read from getrusage. Flat in N is the goal.
4. A laptop fit (tiny model, Cityscapes layout at 128x256, crop 128x128, 2 workers): the share of
   step time the loop waited for data (`timing.data` against `timing.train`), over
   `--fit-iterations` (default 160: at 40 the workers' start, about 1 s, is most of the wait).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unisemi.config import load_config  # noqa: E402
from unisemi.data import pipeline, real  # noqa: E402
from unisemi.data.sources import get_source  # noqa: E402

# name: (W, H, image suffix, label values, images per step at the paper's settings)
SHAPES = {
    "cityscapes": (2048, 1024, ".png", (7, 8, 11, 21, 23, 24, 26), 5 + 2),   # contrastive: 5 labelled + 2 unlabelled
    "pascal_voc": (500, 375, ".jpg", (0, 1, 15, 255), 10 + 10),
    "gta5": (1914, 1052, ".png", (7, 8, 11, 21, 23, 24, 26), 1),              # AdaptSegNet: 1 + 1
    "synthia": (1280, 760, ".png", (1, 2, 3, 5, 8), 1),
    "camvid": (480, 360, ".png", (0, 1, 3, 5, 8), 8),
    "idd": (1920, 1080, ".png", (0, 4, 12, 25), 8),
    "sunrgbd": (730, 530, ".jpg", (1, 2, 5, 36), 8),
}


def photo(w: int, h: int, rng) -> np.ndarray:
    """A smooth colour field plus sensor-like noise: compresses about as a street photo does."""
    small = rng.integers(0, 256, (h // 32 + 1, w // 32 + 1, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.int16)
    return np.clip(field + rng.normal(0, 6, field.shape), 0, 255).astype(np.uint8)


def blocks(w: int, h: int, values, rng) -> np.ndarray:
    small = rng.choice(np.asarray(values, np.uint8), (h // 64 + 1, w // 64 + 1))
    return np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))


def _save(path: Path, array: np.ndarray, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)


def write_tree(name: str, root: Path, n: int, seed: int = 0) -> None:
    """`n` train pairs (and a few val pairs) of `name` in its real on-disk layout."""
    w, h, suffix, values, _ = SHAPES[name]
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, lbl = photo(w, h, rng), blocks(w, h, values, rng)
        if name == "cityscapes":
            stem = f"aachen_{i:06d}_000019"
            _save(root / f"leftImg8bit/train/aachen/{stem}_leftImg8bit.png", img)
            _save(root / f"gtFine/train/aachen/{stem}_gtFine_labelIds.png", lbl)
        elif name == "pascal_voc":
            voc = root / "VOC2012"
            _save(voc / f"JPEGImages/2008_{i:06d}.jpg", img, quality=90)
            _save(voc / f"SegmentationClassAug/2008_{i:06d}.png", lbl)
        elif name == "gta5":
            _save(root / f"images/{i + 1:05d}.png", img)
            _save(root / f"labels/{i + 1:05d}.png", lbl)
        elif name == "synthia":
            import png
            _save(root / f"RGB/{i:07d}.png", img)
            path = root / f"GT/LABELS/{i:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            ids = lbl.astype(np.uint16)
            rows = np.stack([ids, ids, np.zeros_like(ids)], -1).reshape(h, -1)
            with open(path, "wb") as f:
                png.Writer(w, h, greyscale=False, bitdepth=16).write(f, rows.tolist())
        elif name == "camvid":
            _save(root / f"train/0001TP_{i:06d}.png", img)
            _save(root / f"trainannot/0001TP_{i:06d}.png", lbl)
        elif name == "idd":
            _save(root / f"leftImg8bit/train/0/{i:06d}_leftImg8bit.png", img)
            _save(root / f"gtFine/train/0/{i:06d}_gtFine_labellevel3Ids.png", lbl)
        elif name == "sunrgbd":
            _save(root / f"image/train/img-{i + 1:06d}.jpg", img, quality=90)
            _save(root / f"label37/train/{i + 1:08d}.png", lbl)
    if name == "cityscapes":      # two val pairs, for the laptop fit's evaluation
        for i in range(2):
            stem = f"frankfurt_{i:06d}_000294"
            _save(root / f"leftImg8bit/val/frankfurt/{stem}_leftImg8bit.png", photo(w, h, rng))
            _save(root / f"gtFine/val/frankfurt/{stem}_gtFine_labelIds.png", blocks(w, h, values, rng))
    if name == "pascal_voc":
        sets = root / "VOC2012/ImageSets/Segmentation"
        sets.mkdir(parents=True, exist_ok=True)
        ids = [f"2008_{i:06d}" for i in range(n)]
        (sets / "train_aug.txt").write_text("\n".join(ids) + "\n")
        (sets / "val.txt").write_text("")


def geometry_of(name: str) -> pipeline.Geometry:
    ds = real.DATASETS[name]
    return pipeline.Geometry(resize=ds.resize, crop=ds.crop, hflip=True)


def ms_per_image(name: str, root: Path, samples: int) -> float:
    ds = real.DATASETS[name]
    pairs = get_source(ds.source).list_pairs(root, ds.train)
    stream = pipeline.PairStream(pairs, real.functools.partial(real.read_sample, ds.source, ds.classes),
                                 geometry_of(name), seed=0, labels=True)
    stream[(0, 0)]                                  # warm-up: imports, first decode
    t0 = time.perf_counter()
    for k in range(samples):
        stream[(k + 1, k % len(pairs))]
    return 1000 * (time.perf_counter() - t0) / samples


def whole_then_crop(image, label, geo: pipeline.Geometry, rng):
    """The geometry as it was before the windowed resample: resize the whole pair, then crop
    (scale (1, 1), no padding: the Cityscapes protocol only)."""
    h, w = geo.resize
    image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    top = int(rng.integers(0, h - geo.crop[0] + 1))
    left = int(rng.integers(0, w - geo.crop[1] + 1))
    image, label = image[top:top + geo.crop[0], left:left + geo.crop[1]], label[top:top + geo.crop[0], left:left + geo.crop[1]]
    if geo.hflip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    return image, label


def cityscapes_variants(root: Path, samples: int) -> dict:
    """ms per Cityscapes sample (read + map + geometry, one process) for each decoder x geometry,
    round-robin over the same files so that a change of machine load hits every variant alike."""
    from unisemi.data.sources import _common, cityscapes
    pairs = cityscapes.list_pairs(root, "train")
    geo = geometry_of("cityscapes")
    variants = {("Pillow", "whole resize, crop"): (False, whole_then_crop),
                ("Pillow", "windowed resample"): (False, pipeline.apply_geometry),
                ("libspng", "whole resize, crop"): (True, whole_then_crop),
                ("libspng", "windowed resample"): (True, pipeline.apply_geometry)}
    if _common.pyspng is None:
        variants = {k: v for k, v in variants.items() if not v[0]}
    spent = dict.fromkeys(variants, 0.0)
    saved = _common.FAST_PNG
    try:
        for k in range(samples + 1):                      # sample 0 warms every variant up
            image_path, label_path = pairs[k % len(pairs)]
            for key, (fast, geometry) in variants.items():
                _common.FAST_PNG = fast
                t0 = time.perf_counter()
                image, label = cityscapes.read_pair(image_path, label_path)
                geometry(image, label, geo, np.random.default_rng([0, k]))
                if k:
                    spent[key] += time.perf_counter() - t0
    finally:
        _common.FAST_PNG = saved
    return {key: 1000 * t / samples for key, t in spent.items()}


def peak_memory(root: Path, pool: int, samples: int) -> dict:
    """Run in a fresh process: the loop's and the largest worker's peak RSS, in MiB."""
    code = f"""
import json, resource, sys, torch
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from unisemi.data import pipeline, real
from unisemi.data.sources import get_source
pairs = get_source('cityscapes').list_pairs({str(root)!r}, 'train')[:{pool}]
ds = pipeline.PairStream(pairs, real.functools.partial(real.read_sample, 'cityscapes', 0),
                         pipeline.Geometry((512, 1024), (1.0, 1.0), (512, 512), True), 0, True)
s = pipeline.Stream(ds, torch.arange(len(pairs)), 2, (0, 1), workers=2, prefetch=2, pin_memory=False)
for _ in range({samples} // 2):
    s.next()
s.close()
import gc; gc.collect()
print(json.dumps({{"loop": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def laptop_wait_share(root: Path, workers: int, pool: int, iterations: int) -> dict:
    from unisemi.train import fit
    os.environ["UNISEMI_DATA"] = str(root.parent)
    cfg = load_config(None, ["data.domains=[cityscapes]", f"data.n_labelled={min(8, pool)}", "data.resize=[128,256]",
                             "data.crop=[128,128]", "data.val_resize=[128,256]", "data.batch_size=8",
                             "data.val_images=2", f"data.workers={workers}", f"train.iterations={iterations}",
                             f"train.eval_every={iterations}", "train.progress=false",
                             "data.check_counts=false"])
    t = fit(cfg)["timing"]
    return {"data_s": t["data"], "train_s": t["train"], "share": t["data"] / (t["data"] + t["train"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=24, help="train pairs written per dataset")
    ap.add_argument("--samples", type=int, default=24, help="samples timed per dataset")
    ap.add_argument("--gpu-step", type=float, default=0.5, help="seconds of one GPU training step")
    ap.add_argument("--only", nargs="*", default=list(SHAPES))
    ap.add_argument("--fit-iterations", type=int, default=160,
                    help="iterations of the laptop fit (its wait includes the workers' start)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'dataset':<11} {'file (WxH)':>11} {'protocol':<28} {'ms/image':>8}  workers for a {args.gpu_step:g} s step")
        for name in args.only:
            root = tmp / real.DATASETS[name].folder
            write_tree(name, root, args.images)
            ms = ms_per_image(name, root, args.samples)
            w, h, _, _, per_step = SHAPES[name]
            geo = geometry_of(name)
            proto = f"resize {geo.resize or '-'} crop {geo.crop or '-'}"
            need = math.ceil(per_step * ms / 1000 / args.gpu_step)
            print(f"{name:<11} {f'{w}x{h}':>11} {proto:<28} {ms:8.1f}  {need} ({per_step} images/step)",
                  flush=True)
        city = tmp / "cityscapes"
        if "cityscapes" not in args.only:
            write_tree("cityscapes", city, args.images)
        print(f"\nCityscapes at its protocol (2048x1024 -> 512x1024 -> crop 512, flip), side by side, "
              f"{args.samples} samples each, one process:")
        variants = cityscapes_variants(city, args.samples)
        first = next(iter(variants.values()))
        for (decoder, geometry), ms in variants.items():
            print(f"  {decoder:<8} {geometry:<19} {ms:6.1f} ms/image  ({first / ms:.2f}x)")
        write_tree("cityscapes", tmp / "more", 4 * args.images, seed=1)
        print("\npeak RSS streaming", args.samples, "Cityscapes samples, 2 workers, prefetch 2:")
        for pool, where in ((args.images, city), (4 * args.images, tmp / "more")):
            mem = peak_memory(where, pool, args.samples)
            print(f"  pool {pool:>4} files: loop {mem['loop']:.0f} MiB, largest worker {mem['worker']:.0f} MiB")
        print(f"\nlaptop fit (tiny model, 128x256 -> crop 128, batch 8, {args.fit_iterations} iterations):")
        for workers in (0, 2):
            share = laptop_wait_share(city, workers, args.images, args.fit_iterations)
            print(f"  workers={workers}: waited {share['data_s']:.2f} s for data, {share['train_s']:.2f} s "
                  f"training: {100 * share['share']:.1f}% of step time")
    print(f"\nload average now: {os.getloadavg()[0]:.1f} (2 cores); ru_maxrss in KiB on Linux -> MiB")


if __name__ == "__main__":
    main()
