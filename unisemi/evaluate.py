"""Evaluation: one confusion matrix over a whole validation split, per-class IoU and mIoU.

Convention (documented in README): a class absent from both the ground truth and the predictions
of the whole split has IoU NaN and is left out of the mean, as the official Cityscapes evaluation
does. `absent_as_zero=True` counts it as 0 instead, which is what the universal paper's release
does (USSS_ICCV19 iouEval adds 1e-15 to the union, so such a class scores 0 and stays in the mean).
The contrastive paper's release does neither: its ConfusionMatrix.jaccard (utils/metric.py:44-52)
divides 0 by 0 for such a class and averages over all C, so its mIoU is NaN; it has no finite
counterpart here. A class that is predicted but absent from the ground truth scores 0 in all three.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unisemi.data import IGNORE_INDEX  # noqa: F401  (re-exported)


# Pixels per bincount pass. Chunks of 2**18 keep each temporary at 512 KB (int16) and ran at half
# the time of one pass over 524k pixels, steadily across runs (one thread, this CPU): whole-array
# temporaries of a megabyte or more paid page faults that varied from run to run.
_CHUNK = 1 << 18


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     extra_column: bool = False) -> torch.Tensor:
    """(C, C) int64 counts, rows = ground truth, cols = prediction; ignore-labelled pixels skipped.

    `extra_column=True` accepts predictions >= C (a head output that is no class, as the universal
    release's "None") and returns (C, C + 1): column C counts them, so such a pixel stays a miss of
    its ground-truth class and is no class's false positive (`iou_from_confusion` reads it so).
    Without it a prediction >= C is an error rather than a silent miscount.
    """
    target = target.reshape(-1)
    pred = pred.reshape(-1)
    c = num_classes
    w = c + 1  # spare row C for void labels, spare column C for predictions >= C
    # One bincount over a combined index is the whole matrix: no per-class or per-pixel loop.
    # The narrowest integer type that holds the bins cuts the memory traffic: int16 is 2x faster
    # than int32 and 3x faster than int64 here. Out-of-range values are clamped onto the spare row
    # and column, cut off at the end: a clamp is one cheap pass, where a boolean mask and a fill
    # through it cost more than the bincount itself.
    dtype = torch.int16 if w * w < 2 ** 15 else torch.int32
    counts = torch.zeros(w * w, dtype=torch.int64, device=target.device)
    for start in range(0, target.numel(), _CHUNK):
        t = target[start:start + _CHUNK].to(dtype, copy=True)  # the caller's tensors stay untouched
        t.clamp_(max=c)
        if t.is_signed() and bool(t.min() < 0):  # a scalar sync; evaluation is outside the step
            t.masked_fill_(t.lt(0), c)
        p = pred[start:start + _CHUNK].to(dtype, copy=True)
        p.clamp_(max=c)
        # Both operands in the narrow type: a mixed-type in-place add takes a slow path (8x here).
        counts += torch.bincount(t.mul_(w).add_(p), minlength=w * w)
    counts = counts.view(w, w)[:c]
    if extra_column:
        return counts
    if bool(counts[:, c].any()):
        raise ValueError(f"confusion_matrix: a prediction is >= num_classes={c}; pass "
                         f"extra_column=True to count it as a miss of its ground-truth class")
    return counts[:, :c]


def iou_from_confusion(conf: torch.Tensor, absent_as_zero: bool = False) -> torch.Tensor:
    """Per-class IoU (float64, NaN where the class is in neither GT nor predictions).

    `conf` is (C, C), or (C, C + 1) from `confusion_matrix(..., extra_column=True)`: the last
    column's pixels count in their ground-truth class's union (false negatives) and nowhere else.
    """
    if conf.dim() != 2 or conf.shape[1] not in (conf.shape[0], conf.shape[0] + 1):
        raise ValueError(f"confusion matrix of shape {tuple(conf.shape)}: expected (C, C) or (C, C + 1)")
    c = conf.shape[0]
    conf = conf.double()
    square = conf[:, :c]
    tp = square.diag()
    union = conf.sum(1) + square.sum(0) - tp
    iou = tp / union  # 0/0 -> NaN for absent classes
    if absent_as_zero:
        iou = torch.nan_to_num(iou, nan=0.0)
    return iou


def mean_iou(iou: torch.Tensor) -> float:
    """Mean over the classes that have a defined IoU (NaN entries are skipped)."""
    valid = ~torch.isnan(iou)
    return float(iou[valid].mean()) if valid.any() else math.nan


def summarize(conf: torch.Tensor, classes, absent_as_zero: bool = False, subset=()) -> dict:
    """Metrics dict: miou, pixel accuracy and IoU per class name (all in %). With `subset` (class
    names), miou is the mean over those classes only, e.g. the 13 that SYNTHIA shares with
    Cityscapes; the IoUs still come from the whole matrix, so a pixel of a class outside the
    subset predicted as one inside is that class's false positive, as in AdaptSegNet's protocol."""
    iou = iou_from_confusion(conf, absent_as_zero)
    total = conf.sum().item()   # a (C, C + 1) matrix's last column: wrong pixels
    scored = iou[[list(classes).index(k) for k in subset]] if subset else iou
    return {
        "miou": 100.0 * mean_iou(scored),
        "pixel_acc": 100.0 * conf[:, :conf.shape[0]].diag().sum().item() / total if total else math.nan,
        "iou": {name: 100.0 * float(v) for name, v in zip(classes, iou)},
    }


def evaluate_domain(model, images, labels, domain: str, num_classes: int, batch_size: int = 32,
                    device: torch.device | str = "cpu", normalize=None) -> torch.Tensor:
    """Confusion matrix of `model`'s `domain` head over uint8 images (N, 3, H, W) and labels (N, H, W):
    (C, C), or (C, C + 1) when the head has outputs beyond the C classes (see `confusion_matrix`)."""
    batches = ((images[s:s + batch_size], labels[s:s + batch_size]) for s in range(0, len(images), batch_size))
    return evaluate_pairs(model, batches, domain, num_classes, device, normalize)


@torch.no_grad()
def evaluate_pairs(model, batches, domain: str, num_classes: int, device: torch.device | str = "cpu",
                   normalize=None) -> torch.Tensor:
    """Confusion matrix over an iterable of (uint8 images (B, 3, h, w), labels (B, H, W)) batches of
    any size, as a real dataset's val loader yields them. An image inferred at a smaller size than
    its label (Cityscapes at 512x1024 under a 1024x2048 label) has its logits upsampled bilinearly
    with aligned corners and is scored at the label's full resolution."""
    was_training = model.training
    model.eval()
    # From the model, not from the logits: every rank's matrix has the same shape, shard empty or not.
    extra = model.head_outputs[domain] > num_classes
    conf = torch.zeros(num_classes, num_classes + extra, dtype=torch.long, device=device)
    for x, y in batches:
        x = x.to(device)
        x = normalize(x) if normalize is not None else x.float() / 255.0
        y = y.to(device)
        logits = model(x, domain)["logits"]
        if logits.shape[-2:] != y.shape[-2:]:
            logits = F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=True)
        conf += confusion_matrix(logits.argmax(1), y, num_classes, extra_column=extra)
    model.train(was_training)
    return conf.cpu()
