"""L-Net (Eq. 1): the segmentation network trained on strong images with binarised labels.

The semantic ids of L_s are dropped (L'_s = 1 on every strong-object pixel, 0 on background,
void ignored), so what the network learns is "object or not", which transfers to categories it
never saw. Its sigmoid output on a weak image is the class-agnostic mask M of the diffusion.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from unisemi.data.transforms import normalize
from unisemi.device import cpu_state_dict
from unisemi.stages import load_weights

STAGE = "transfer-lnet"
WEIGHTS_FILE = "lnet.pt"
HEAD = "mask"                      # the L-Net's one-logit head


def bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """J_b of Eq. 1: element-wise BCE, mean over the non-void pixels (0 if there are none)."""
    loss = F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="none")
    w = valid.to(loss.dtype)
    return (loss * w).sum() / w.sum().clamp_min(1)


def batch_size(cfg) -> int:
    """Strong images per L-Net step: transfer.lnet_batch_size (the paper's 30, Training), else
    the segmenter's data.batch_size (0, which every laptop table ran with)."""
    return cfg.transfer.lnet_batch_size or cfg.data.batch_size


def new_model(cfg):
    from unisemi.models import build_model
    torch.manual_seed(cfg.train.seed * 1_000 + 1)
    return build_model(cfg.model, {HEAD: 1})


def train(cfg):
    from unisemi.methods.transfer.setting import (binary_targets, sgd_fit, stage_batches, stage_device,
                                                  strong_source)
    src = strong_source(cfg)
    if len(src.indices) == 0:
        raise ValueError(f"transfer.split={cfg.transfer.split}: no strong images in the train pool "
                         f"(data.n_labelled={cfg.data.n_labelled}); raise data.n_labelled")
    model = new_model(cfg).to(stage_device(cfg))
    model.train()

    def loss(x, y):
        target, valid = binary_targets(y, src.object_lut)
        return bce(model(x, HEAD)["logits"], target, valid)

    batches = stage_batches(cfg, src.data, src.indices, cfg.train.seed * 1_000 + 11,
                            batch_size=batch_size(cfg))
    trace = sgd_fit(list(model.parameters()), loss, batches, cfg.transfer.lnet_iterations,
                    cfg.transfer.lnet_lr, cfg)
    return model, trace, len(src.indices)


def build(cfg, folder: Path) -> None:
    model, trace, n = train(cfg)
    torch.save({"state_dict": cpu_state_dict(model), "loss_trace": trace, "strong_images": n},
               folder / WEIGHTS_FILE)


def load(cfg, path: Path):
    return load_weights(new_model(cfg), path, WEIGHTS_FILE, "L-Net")


@torch.no_grad()
def object_masks(model, images: torch.Tensor, batch_size: int = 64, scheme: str = "imagenet") -> torch.Tensor:
    """M = sigmoid(L-Net) of uint8 images (N, 3, H, W): float (N, H, W) in [0, 1]."""
    model.eval()
    device = next(model.parameters()).device
    out = [torch.sigmoid(model(normalize(images[i:i + batch_size].to(device), scheme), HEAD)["logits"][:, 0]).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, *images.shape[-2:])
