"""Evaluation: one confusion matrix over a whole validation split, per-class IoU and mIoU.

Convention (documented in README): a class absent from both the ground truth and the predictions
of the whole split has IoU NaN and is left out of the mean, as the official Cityscapes evaluation
does. `absent_as_zero=True` counts it as 0 instead, which is what the released codes of the
universal and contrastive papers effectively do (their means include such classes as 0).
"""
from __future__ import annotations

import math

import torch

from unisemi.data import IGNORE_INDEX  # noqa: F401  (re-exported)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows = ground truth, cols = prediction; ignore-labelled pixels skipped."""
    target = target.reshape(-1)
    pred = pred.reshape(-1)
    # One bincount over a combined index is the whole matrix: no per-class or per-pixel loop.
    # The narrowest integer type that holds C*C+1 bins cuts the memory traffic: int16 for up to
    # 181 classes is 2x faster than int32 and 3x faster than int64 (measured on this CPU, 1 thread).
    # Void pixels go to one spare bin instead of being masked out, which would copy the arrays.
    dtype = torch.int16 if num_classes * num_classes < 2 ** 15 - 1 else torch.int32
    t = target.to(dtype, copy=True)      # never modify the caller's labels in place
    void = t.ge(num_classes)              # compared on the narrow copy: fewer bytes read
    if t.is_signed():
        void |= t.lt(0)
    flat = t.mul_(num_classes).add_(pred.to(dtype))
    flat.masked_fill_(void, num_classes * num_classes)
    counts = torch.bincount(flat, minlength=num_classes * num_classes + 1)
    return counts[:-1].reshape(num_classes, num_classes)


def iou_from_confusion(conf: torch.Tensor, absent_as_zero: bool = False) -> torch.Tensor:
    """Per-class IoU (float64, NaN where the class is in neither GT nor predictions)."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = tp / union  # 0/0 -> NaN for absent classes
    if absent_as_zero:
        iou = torch.nan_to_num(iou, nan=0.0)
    return iou


def mean_iou(iou: torch.Tensor) -> float:
    """Mean over the classes that have a defined IoU (NaN entries are skipped)."""
    valid = ~torch.isnan(iou)
    return float(iou[valid].mean()) if valid.any() else math.nan


def summarize(conf: torch.Tensor, classes, absent_as_zero: bool = False) -> dict:
    """Metrics dict: miou, pixel accuracy and IoU per class name (all in %)."""
    iou = iou_from_confusion(conf, absent_as_zero)
    total = conf.sum().item()
    return {
        "miou": 100.0 * mean_iou(iou),
        "pixel_acc": 100.0 * conf.diag().sum().item() / total if total else math.nan,
        "iou": {name: 100.0 * float(v) for name, v in zip(classes, iou)},
    }


@torch.no_grad()
def evaluate_domain(model, images, labels, domain: str, num_classes: int, batch_size: int = 32,
                    device: torch.device | str = "cpu", normalize=None) -> torch.Tensor:
    """Confusion matrix of `model`'s `domain` head over uint8 images (N, 3, H, W) and labels (N, H, W)."""
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        x = normalize(x) if normalize is not None else x.float() / 255.0
        y = labels[start:start + batch_size].to(device)
        logits = model(x, domain)["logits"]
        conf += confusion_matrix(logits.argmax(1), y, num_classes)
    model.train(was_training)
    return conf.cpu()
