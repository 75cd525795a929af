"""CAM (Zhou et al. 2016): a classifier on image-level labels whose class activation maps give
the seeds of the diffusion.

The classifier is the segmentation network's encoder with a linear 1x1 head, averaged over the
image (global average pooling): the logit of class c is the mean of its map A^c, so A^c is the
CAM of Zhou et al. (a linear layer after pooling equals the pooled linear map). It trains on the
image-level labels of every train image, strong and weak, with a multi-label BCE.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from unisemi.data.transforms import normalize
from unisemi.device import cpu_state_dict
from unisemi.stages import load_weights

STAGE = "transfer-cam"
WEIGHTS_FILE = "cam.pt"
HEAD = "cam"


def new_model(cfg, num_objects: int):
    from unisemi.models import build_model
    torch.manual_seed(cfg.train.seed * 1_000 + 2)
    return build_model(cfg.model, {HEAD: num_objects})


def activation_maps(model, x: torch.Tensor) -> torch.Tensor:
    """A (B, C-1, h, w) at feature resolution, one map per object class (no background)."""
    return model.decode(model.encode(x), HEAD)["logits"]


def train(cfg):
    """CAM on the image-level labels of every pool image: the embedded world's from its renderer,
    a real domain's computed in its stream's workers from each whole mask (before the crop)."""
    from unisemi.data import load_domain
    from unisemi.methods.transfer.setting import image_level_labels, sgd_fit, stage_batches, stage_device
    domain = cfg.data.domains[0]
    dd = load_domain(cfg.data, domain)
    labels = image_level_labels(cfg.data, domain, dd.labelled)[:, 1:].float()   # objects only
    row = torch.full((int(dd.labelled.max()) + 1,), -1, dtype=torch.long)
    row[dd.labelled] = torch.arange(len(dd.labelled))
    model = new_model(cfg, labels.shape[1]).to(stage_device(cfg))
    model.train()

    def fetch(idx):
        return dd.fetch("train", idx)[0], labels[row[idx]]   # the image and its class list only

    def loss(x, y):
        return F.binary_cross_entropy_with_logits(activation_maps(model, x).mean((2, 3)), y)

    batches = stage_batches(cfg, dd, dd.labelled, cfg.train.seed * 1_000 + 13, fetch, image_labels=True)
    trace = sgd_fit(list(model.parameters()), loss, batches, cfg.transfer.cam_iterations,
                    cfg.transfer.cam_lr, cfg)
    return model, trace


def build(cfg, folder: Path) -> None:
    model, trace = train(cfg)
    torch.save({"state_dict": cpu_state_dict(model), "loss_trace": trace}, folder / WEIGHTS_FILE)


def load(cfg, path: Path, num_objects: int):
    return load_weights(new_model(cfg, num_objects), path, WEIGHTS_FILE, "CAM")


def seed_masks(cams: torch.Tensor, present: torch.Tensor, threshold: float) -> torch.Tensor:
    """bool (B, C-1, H, W): pixels where class c's CAM is at least `threshold` x its maximum in the
    image, for the classes `present` (B, C-1) in the image-level labels only; a class whose CAM is
    nowhere positive has no seed."""
    a = cams.clamp_min(0)
    peak = a.amax(dim=(2, 3), keepdim=True)
    return (a >= threshold * peak) & (peak > 0) & present[:, :, None, None]


@torch.no_grad()
def seeds(model, images: torch.Tensor, present: torch.Tensor, threshold: float,
          batch_size: int = 64, scheme: str = "imagenet") -> torch.Tensor:
    """Seeds (N, C-1, H, W) of uint8 images (N, 3, H, W), CAMs upsampled to the image."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size].to(device), scheme)
        cams = F.interpolate(activation_maps(model, x), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)
        out.append(seed_masks(cams, present[i:i + batch_size].to(device), threshold).cpu())
    return torch.cat(out) if out else torch.zeros(0, present.shape[1], *images.shape[-2:], dtype=torch.bool)
