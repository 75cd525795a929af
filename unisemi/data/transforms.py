"""Batched tensor transforms shared by every method: normalisation and weak augmentation."""
from __future__ import annotations

import torch

# ImageNet statistics, so that torchvision-style pretrained encoders see what they were trained on.
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised float32 on the same device."""
    # in place on the new float tensor: the same operations in the same order as
    # (x / 255 - mean) / std, so the same bits, without two batch-sized temporaries per step
    x = images.float().div_(255.0)
    return x.sub_(MEAN.to(x.device)).div_(STD.to(x.device))


def normalize_float(images: torch.Tensor) -> torch.Tensor:
    """float images in [0, 1] (B, 3, H, W) -> normalised, as `normalize` does for uint8."""
    return (images - MEAN.to(images.device)) / STD.to(images.device)


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
