"""Is data ever the bottleneck? Decode + augment speed of the real-dataset pipeline at each paper's
settings, its peak memory against dataset size, and the share of a laptop fit spent waiting.

    python benchmarks/data_pipeline.py [--images 24] [--samples 24] [--gpu-step 0.5] [--photos DIR]

1. Writes full-resolution files in each dataset's real layout under a temporary folder: generated
   images (smooth colour fields with noise) and label maps drawn from each dataset's own label
   values. Nothing is downloaded. `--photos DIR` takes the Cityscapes images from real
   2048x1024 `*.png` frames in DIR instead (copied byte for byte, cycled): PNG decode time depends
   on how a file was filtered and compressed, which generated files only approximate.
2. Per dataset, times `PairStream` items (read + map labels + resize/scale/crop/flip) in this
   process: that is the work of one worker. Prints ms per image read from the full-size files
   and, for datasets whose protocol resizes, from the resized cache (`data.cache_resized`, the
   default: after the first read of a pair), and how many workers keep up with a GPU step of
   `--gpu-step` seconds at the paper's images per step.
   Cityscapes also side by side, round-robin over the same files: Pillow or libspng (pyspng)
   decoding x full-size read, first read into the cache, and cached read.
3. Peak memory: a fresh process streams `--samples` Cityscapes samples through 2 workers from a
   pool of N and 4N files; the peak RSS of the loop's process and of the largest worker are
   read from getrusage. Flat in N is the goal.
4. A laptop fit (tiny model, Cityscapes layout at 128x256, crop 128x128): the share of step time
   the loop waited for data (`timing.data` against `timing.train`), over `--fit-iterations`
   (default 160: at 40 the workers' start, about 1 s, is most of the wait), with 0 or 2 workers
   and the resized cache off or on (on: starting empty, so its first reads are in the figure).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
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
from unisemi.data.resized_cache import ResizedCache  # noqa: E402
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


def real_photos(folder) -> list[Path]:
    """The 2048x1024 RGB PNGs of `folder` (the Cityscapes images of `--photos`)."""
    found = []
    for path in sorted(Path(folder).glob("*.png")):
        with Image.open(path) as im:
            if im.size == SHAPES["cityscapes"][:2] and im.mode == "RGB":
                found.append(path)
    if not found:
        raise SystemExit(f"--photos {folder}: no 2048x1024 RGB .png files there")
    return found


def write_tree(name: str, root: Path, n: int, seed: int = 0, photos=()) -> None:
    """`n` train pairs (and a few val pairs) of `name` in its real on-disk layout; Cityscapes
    images are copies of `photos` when given."""
    w, h, suffix, values, _ = SHAPES[name]
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, lbl = photo(w, h, rng), blocks(w, h, values, rng)
        if name == "cityscapes":
            stem = f"aachen_{i:06d}_000019"
            target = root / f"leftImg8bit/train/aachen/{stem}_leftImg8bit.png"
            if photos:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(photos[i % len(photos)], target)
            else:
                _save(target, img)
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


def _stream(name: str, root: Path, cache: ResizedCache | None = None) -> pipeline.PairStream:
    ds = real.DATASETS[name]
    pairs = get_source(ds.source).list_pairs(root, ds.train)
    return pipeline.PairStream(pairs, real.functools.partial(real.read_sample, ds.source, ds.classes),
                               geometry_of(name), seed=0, labels=True, cache=cache)


def ms_per_image(name: str, root: Path, samples: int, cache_folder: Path | None = None) -> float:
    """ms per sample from the full-size files, or (`cache_folder`) from the resized cache after
    one pass has filled it."""
    geo = geometry_of(name)
    cache = ResizedCache(cache_folder, f"{name}/bench", geo.resize) if cache_folder else None
    stream = _stream(name, root, cache)
    n = len(stream)
    for i in range(n if cache else 1):              # warm-up: imports, first decode (or the fill)
        stream[(0, i)]
    t0 = time.perf_counter()
    for k in range(samples):
        stream[(k + 1, k % n)]
    return 1000 * (time.perf_counter() - t0) / samples


def cityscapes_variants(root: Path, samples: int, cache_root: Path) -> dict:
    """ms per Cityscapes sample (read + map + geometry, one process) for each decoder x path,
    round-robin over the same files so that a change of machine load hits every variant alike.
    'first read' fills an empty cache folder each time; 'cached' reads a filled one."""
    from unisemi.data.sources import _common
    geo = geometry_of("cityscapes")
    paths = {"full-size read": None, "first read into the cache": "cold", "cached read": "warm"}
    variants = {(dec, path): (dec == "libspng", kind) for dec in ("Pillow", "libspng") for path, kind in paths.items()}
    if _common.pyspng is None:
        variants = {k: v for k, v in variants.items() if not v[0]}
    warm = {dec: ResizedCache(cache_root / f"warm-{dec}", "cityscapes/bench", geo.resize) for dec in ("Pillow", "libspng")}
    plain = _stream("cityscapes", root)
    n = len(plain)
    spent = dict.fromkeys(variants, 0.0)
    saved = _common.FAST_PNG
    try:
        for (dec, _), (fast, kind) in variants.items():   # fill the warm caches
            if kind == "warm":
                _common.FAST_PNG = fast
                stream = _stream("cityscapes", root, warm[dec])
                for i in range(n):
                    stream[(0, i)]
        for k in range(samples + 1):                      # sample 0 warms every variant up
            for key, (fast, kind) in variants.items():
                _common.FAST_PNG = fast
                cache = {None: None, "warm": warm[key[0]],
                         "cold": ResizedCache(cache_root / f"cold-{k}-{key[0]}", "cityscapes/bench", geo.resize)}[kind]
                stream = plain if cache is None else _stream("cityscapes", root, cache)
                t0 = time.perf_counter()
                stream[(k, k % n)]
                if k:
                    spent[key] += time.perf_counter() - t0
    finally:
        _common.FAST_PNG = saved
    entries = [f.stat().st_size for f in (cache_root / "warm-libspng").rglob("*.png")]
    print(f"  (the resized cache holds {sum(entries) / n / 1e6:.2f} MB per pair: image and label map "
          f"at {geo.resize[1]}x{geo.resize[0]})")
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


def laptop_wait_share(root: Path, workers: int, pool: int, iterations: int, cache: Path | None) -> dict:
    from unisemi.train import fit
    os.environ["UNISEMI_DATA"] = str(root.parent)
    if cache is not None:
        os.environ["UNISEMI_CACHE"] = str(cache)
    cfg = load_config(None, ["data.domains=[cityscapes]", f"data.n_labelled={min(8, pool)}", "data.resize=[128,256]",
                             "data.crop=[128,128]", "data.val_resize=[128,256]", "data.batch_size=8",
                             "data.val_images=2", f"data.workers={workers}", f"train.iterations={iterations}",
                             f"train.eval_every={iterations}", "train.progress=false",
                             "data.check_counts=false", f"data.cache_resized={cache is not None}"])
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
    ap.add_argument("--photos", help="a folder of real 2048x1024 Cityscapes *.png frames to use as the images")
    args = ap.parse_args()
    photos = real_photos(args.photos) if args.photos else ()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["UNISEMI_CACHE"] = str(tmp / "cache")    # never the user's
        if photos:
            sizes = ", ".join(f"{p.stat().st_size / 1e6:.2f}" for p in photos)
            print(f"Cityscapes images: {len(photos)} real frames from {args.photos} ({sizes} MB), cycled\n")
        print(f"{'dataset':<11} {'file (WxH)':>11} {'protocol':<28} {'ms/image':>8} {'cached':>7}  "
              f"workers for a {args.gpu_step:g} s step (full-size, cached)")
        for name in args.only:
            root = tmp / real.DATASETS[name].folder
            write_tree(name, root, args.images, photos=photos)
            ms = ms_per_image(name, root, args.samples)
            geo = geometry_of(name)
            cached = ms_per_image(name, root, args.samples, tmp / "cache" / name) if geo.resize else None
            w, h, _, _, per_step = SHAPES[name]
            proto = f"resize {geo.resize or '-'} crop {geo.crop or '-'}"
            need = [math.ceil(per_step * t / 1000 / args.gpu_step) for t in (ms, cached) if t is not None]
            shown = f"{cached:7.1f}" if cached is not None else f"{'-':>7}"
            print(f"{name:<11} {f'{w}x{h}':>11} {proto:<28} {ms:8.1f} {shown}  "
                  f"{', '.join(map(str, need))} ({per_step} images/step)", flush=True)
        city = tmp / "cityscapes"
        if "cityscapes" not in args.only:
            write_tree("cityscapes", city, args.images, photos=photos)
        print(f"\nCityscapes at its protocol (2048x1024 -> 512x1024 -> crop 512, flip), side by side, "
              f"{args.samples} samples each, one process:")
        variants = cityscapes_variants(city, args.samples, tmp / "variants")
        first = next(iter(variants.values()))
        for (decoder, path), ms in variants.items():
            print(f"  {decoder:<8} {path:<27} {ms:6.1f} ms/image  ({first / ms:.2f}x)")
        shutil.rmtree(tmp / "variants")
        write_tree("cityscapes", tmp / "more", 4 * args.images, seed=1, photos=photos)
        print("\npeak RSS streaming", args.samples, "Cityscapes samples, 2 workers, prefetch 2:")
        for pool, where in ((args.images, city), (4 * args.images, tmp / "more")):
            mem = peak_memory(where, pool, args.samples)
            print(f"  pool {pool:>4} files: loop {mem['loop']:.0f} MiB, largest worker {mem['worker']:.0f} MiB")
        print(f"\nlaptop fit (tiny model, 128x256 -> crop 128, batch 8, {args.fit_iterations} iterations):")
        for workers in (0, 2):
            for cached in (False, True):
                where = tmp / f"fit-cache-{workers}" if cached else None       # each starts empty
                share = laptop_wait_share(city, workers, args.images, args.fit_iterations, where)
                print(f"  workers={workers} cache={'on ' if cached else 'off'}: waited {share['data_s']:.2f} s "
                      f"for data, {share['train_s']:.2f} s training: {100 * share['share']:.1f}% of step time",
                      flush=True)
    print(f"\nload average now: {os.getloadavg()[0]:.1f} (2 cores); ru_maxrss in KiB on Linux -> MiB")


if __name__ == "__main__":
    main()
