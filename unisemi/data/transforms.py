"""Batched tensor transforms shared by every method: normalisation and weak augmentation."""
from __future__ import annotations

import torch

# ImageNet statistics, so that torchvision-style pretrained encoders see what they were trained on.
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# Caffe's DeepLab input (the COCO DeepLabv2 files were trained on it; AdaptSegNet feeds it too):
# BGR on 0-255 minus the per-channel mean, in BGR order, with no std.
CAFFE_MEAN_BGR = torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)

# data.normalize: what the encoder's weights were trained on. `weights` picks it from
# model.pretrained (the published table says; no weights, `synthetic` or a path: imagenet). An
# explicit scheme that the published weights were not trained on is a config error.
SCHEMES = ("imagenet", "caffe_bgr")
FOLLOW_WEIGHTS = "weights"


def normalize(images: torch.Tensor, scheme: str = "imagenet") -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> the float32 input `scheme` describes, on the same device."""
    if scheme == "imagenet":
        # in place on the new float tensor: the same operations in the same order as
        # (x / 255 - mean) / std, so the same bits, without two batch-sized temporaries per step
        x = images.float().div_(255.0)
        return x.sub_(MEAN.to(x.device)).div_(STD.to(x.device))
    if scheme == "caffe_bgr":
        return images.flip(1).float().sub_(CAFFE_MEAN_BGR.to(images.device))
    raise ValueError(_unknown(scheme))


def normalize_float(images: torch.Tensor, scheme: str = "imagenet") -> torch.Tensor:
    """float RGB images in [0, 1] (B, 3, H, W) -> normalised, as `normalize` does for uint8."""
    if scheme == "imagenet":
        return (images - MEAN.to(images.device)) / STD.to(images.device)
    if scheme == "caffe_bgr":
        return images.flip(1) * 255.0 - CAFFE_MEAN_BGR.to(images.device)
    raise ValueError(_unknown(scheme))


_CHOICES = f"one of {', '.join(SCHEMES)} or {FOLLOW_WEIGHTS}"


def _unknown(scheme) -> str:
    return f"data.normalize={scheme!r}: expected {_CHOICES}"


def expected_by_weights(pretrained) -> str:
    """The scheme model.pretrained's weights were trained on: the published table's `normalize`
    for a published name, else imagenet (no weights, the synthetic stand-in, which unisemi.pretrain
    trains on ImageNet statistics, or a local file, whose input only its user knows)."""
    from unisemi.models.published import PUBLISHED
    entry = PUBLISHED.get(str(pretrained or "none").strip())
    return entry.normalize if entry is not None else "imagenet"


def scheme_problem(normalize_value, pretrained) -> str | None:
    """What data.normalize should be, when it is not a scheme or names one that the published
    weights were not trained on (the config error's `expected ...`); else None."""
    from unisemi.models.published import PUBLISHED
    value = str(normalize_value)
    if value == FOLLOW_WEIGHTS:
        return None
    if value not in SCHEMES:
        return _CHOICES
    expected = expected_by_weights(pretrained)
    if str(pretrained or "none").strip() in PUBLISHED and value != expected:
        return (f"{expected} or {FOLLOW_WEIGHTS}: model.pretrained={pretrained} was trained on {expected} "
                f"inputs (unisemi/models/published.py)")
    return None


def input_scheme(cfg) -> str:
    """The scheme a run feeds its model: data.normalize, or the weights' one for `weights`."""
    problem = scheme_problem(cfg.data.normalize, cfg.model.pretrained)
    if problem:
        raise ValueError(f"data.normalize={cfg.data.normalize!r}: expected {problem}")
    value = cfg.data.normalize
    return expected_by_weights(cfg.model.pretrained) if value == FOLLOW_WEIGHTS else value


def random_hflip(images: torch.Tensor, labels: torch.Tensor | None, generator: torch.Generator,
                 part: tuple[int, int] = (0, 1)):
    """Flip each sample left-right with probability 1/2 (one draw per sample, no Python loop).
    `part = (rank, world_size)`: the draws are made for the global batch of world_size x B samples
    and this rank keeps its slice, so W ranks flip as one process with the global batch would."""
    rank, size = part
    b = images.shape[0]
    flip = (torch.rand(b * size, generator=generator) < 0.5)[rank * b:(rank + 1) * b]
    flip = flip.to(images.device)
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    if labels is not None:
        labels = torch.where(flip.view(-1, 1, 1), labels.flip(-1), labels)
    return images, labels
