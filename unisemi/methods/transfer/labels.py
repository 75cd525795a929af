"""The diffusion stage: L_w for every weak image, from the L-Net's M and the CAM seeds (Eq. 2).

Per weak image: M = sigmoid(L-Net), seeds of every class in its image-level labels from the CAM
(strong classes included: a weak image gives no pixel label for any class), then
`unisemi.diffusion.diffuse_image` (SLIC, Eq. 2 affinity on [mean CIELAB, mean M], harmonic walk,
largest q or background). Images run in `transfer.diffusion_workers` processes. The embedded
world's maps (one size) are cached as the stage's `labels.pt`; a real domain's images differ in
size, so each map is an 8-bit PNG at its image's native size in the stage's `maps/`, listed by
`index.json`, and the loop's stream workers read it in place of that image's ground truth.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from unisemi.data.transforms import input_scheme

STAGE = "transfer-labels"
LABELS_FILE = "labels.pt"
INDEX_FILE = "index.json"          # a real domain's: pool index -> map file, per weak image
MAPS_DIR = "maps"
CHUNK = 256                        # images whose M and seeds are held at once


def params(cfg):
    from unisemi.diffusion import DiffusionParams
    c = cfg.transfer
    return DiffusionParams(n_segments=c.diffusion_segments, compactness=c.diffusion_compactness,
                           sigma=c.diffusion_sigma, seed_fraction=c.diffusion_seed_fraction,
                           background_mask_threshold=c.diffusion_background_mask,
                           background_threshold=c.diffusion_background_q)


def jobs_for(images: torch.Tensor, masks: torch.Tensor, seeds: torch.Tensor, present: torch.Tensor):
    """(image HWC uint8, M, {class id: seed pixels}) per image, for the classes it is labelled with."""
    out = []
    for k in range(len(images)):                 # one job per image; the work inside is vectorised
        ids = torch.nonzero(present[k]).flatten().tolist()
        out.append((images[k].permute(1, 2, 0).contiguous().numpy(), masks[k].double().numpy(),
                    {c + 1: seeds[k, c].numpy() for c in ids}))
    return out


def _inputs(cfg, lnet_path: Path, cam_path: Path):
    """What both builds start from: the strong/weak partition, the domain, and the L-Net and CAM
    on the stage device (the networks' inference; the diffusion itself is CPU work)."""
    from unisemi.data import load_domain
    from unisemi.methods.transfer import cam, lnet
    from unisemi.methods.transfer.setting import partition, stage_device
    dd = load_domain(cfg.data, cfg.data.domains[0])
    device = stage_device(cfg)
    return (partition(cfg), dd, lnet.load(cfg, lnet_path).to(device),
            cam.load(cfg, cam_path, dd.num_classes - 1).to(device))


def build(cfg, folder: Path, lnet_path: Path, cam_path: Path) -> None:
    from unisemi.data import is_real
    from unisemi.diffusion import diffuse_images
    from unisemi.methods.transfer import cam, lnet
    if is_real(cfg.data.domains[0]):
        return build_files(cfg, folder, lnet_path, cam_path)
    part, dd, lnet_model, cam_model = _inputs(cfg, lnet_path, cam_path)
    p = params(cfg)
    maps, seconds = [], []
    t0 = time.perf_counter()
    for s in range(0, len(part.weak), CHUNK):
        idx = part.weak[s:s + CHUNK]
        images, _ = dd.fetch("train", idx)         # the images only: their labels are never read
        present = part.weak_labels[s:s + CHUNK, 1:]
        m = lnet.object_masks(lnet_model, images, scheme=input_scheme(cfg))
        sd = cam.seeds(cam_model, images, present, cfg.transfer.cam_threshold, scheme=input_scheme(cfg))
        out, sec = diffuse_images(jobs_for(images, m, sd, present), p, cfg.transfer.diffusion_workers)
        maps += out
        seconds += sec
    h, w = dd.fetch("train", part.strong[:1] if len(part.strong) else part.weak[:1])[0].shape[-2:]
    labels = torch.from_numpy(np.stack(maps)) if maps else torch.zeros(0, h, w, dtype=torch.uint8)
    torch.save({"indices": part.weak, "labels": labels, "seconds_per_image": seconds,
                "wall_s": time.perf_counter() - t0, "workers": cfg.transfer.diffusion_workers},
               folder / LABELS_FILE)


def map_name(index: int, image_path) -> str:
    """A weak image's map file: its pool index (unique) and image name (for a person reading it)."""
    return f"{MAPS_DIR}/{index:06d}_{Path(image_path).stem}.png"


def build_files(cfg, folder: Path, lnet_path: Path, cam_path: Path) -> None:
    """A real domain's L_w: each weak image at its native size (read by workers, its label never),
    M and the CAM seeds at that size, the diffusion, one PNG per image and the index."""
    from PIL import Image

    from unisemi.data import pipeline
    from unisemi.diffusion import diffuse_images
    from unisemi.methods.transfer import cam, lnet
    part, dd, lnet_model, cam_model = _inputs(cfg, lnet_path, cam_path)
    p = params(cfg)
    (folder / MAPS_DIR).mkdir()
    weak = part.weak.tolist()
    names, seconds = [map_name(i, dd.train_pairs[i][0]) for i in weak], []
    images = iter(pipeline.native_images(dd.train_pairs, dd.read, weak, dd.workers))
    t0 = time.perf_counter()
    for s in range(0, len(weak), CHUNK):
        jobs = []
        for k in range(s, min(s + CHUNK, len(weak))):     # one image per forward: sizes differ
            (x,) = next(images)
            present = part.weak_labels[k:k + 1, 1:]
            m = lnet.object_masks(lnet_model, x, scheme=input_scheme(cfg))
            jobs += jobs_for(x, m, cam.seeds(cam_model, x, present, cfg.transfer.cam_threshold,
                                             scheme=input_scheme(cfg)), present)
        maps, sec = diffuse_images(jobs, p, cfg.transfer.diffusion_workers)
        for name, label in zip(names[s:], maps):
            Image.fromarray(label.astype(np.uint8), "L").save(folder / name)
        seconds += sec
    index = {"indices": weak, "files": names, "images": [str(dd.train_pairs[i][0]) for i in weak],
             "image_labels": part.weak_labels.to(torch.uint8).tolist(), "seconds_per_image": seconds,
             "wall_s": time.perf_counter() - t0, "workers": cfg.transfer.diffusion_workers}
    (folder / INDEX_FILE).write_text(json.dumps(index))


def load(path: Path) -> dict:
    """The stage's product: {"indices", "labels"} (the embedded world's maps, (N, H, W) uint8) or
    {"indices", "files"} (a real domain's map paths), with its timings."""
    try:
        if (path / INDEX_FILE).exists():
            index = json.loads((path / INDEX_FILE).read_text())
            return {**index, "indices": torch.tensor(index["indices"], dtype=torch.long),
                    "files": [path / name for name in index["files"]]}
        return torch.load(path / LABELS_FILE, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unreadable file names the stage to rebuild
        raise RuntimeError(f"{path}: unreadable diffusion stage ({exc.__class__.__name__}); rebuild "
                           f"it with: python -m unisemi stages rebuild {path.name}") from None
