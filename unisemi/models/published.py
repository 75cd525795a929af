"""Published pretrained weights by name: which file, which key layout, which encoder, where from.

`model.pretrained: <name>` resolves to a file under `$UNISEMI_WEIGHTS` (the user's folder of
downloaded files; nothing is ever downloaded here), converted by its layout's converter
(convert.py) and loaded strictly into the encoder the row names (weights.py).

sha256: no publisher below gives a file's full sha256. Each file name carries the first 8 hex
digits of it, by torch.hub's naming convention (`<name>-<sha256 prefix>.pth`; torch.hub checks it
when asked to). `python -m unisemi weights check` compares the file against that prefix.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_ENV = "UNISEMI_WEIGHTS"


@dataclass(frozen=True)
class Published:
    name: str
    encoder: str              # the ENCODERS entry it was trained as
    layout: str               # convert.LAYOUTS entry that maps its keys onto the encoder's
    files: tuple[str, ...]    # published file names, preferred first (any one is accepted)
    pretraining: str          # what the weights were trained on
    source: str               # where a user gets the file
    input: str                # the input the weights expect, in words
    normalize: str            # that input as a data.normalize scheme (data/transforms.py)
    sha256: str = "not published"
    also: tuple[str, ...] = ()  # other encoders with the same tensors (same keys and shapes)

    def fits(self, encoder: str) -> bool:
        return encoder == self.encoder or encoder in self.also


def sha256_prefix(file_name: str) -> str | None:
    """The hash in a torch.hub-style file name (`resnet101-63fe2227.pth` -> '63fe2227'), or None."""
    m = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z]+$", file_name)
    return m.group(1) if m else None


_CAFFE_INPUT = "BGR, 0-255, minus the Caffe mean (104.0, 116.7, 122.7)"
_TORCHVISION_INPUT = "RGB in [0, 1], ImageNet mean/std"

PUBLISHED = {p.name: p for p in [
    Published("imagenet-resnet101", "resnet101", "torchvision-resnet",
              ("resnet101-63fe2227.pth", "resnet101-5d3b4d8f.pth"),
              "ImageNet-1k classification (torchvision IMAGENET1K_V1)",
              "https://download.pytorch.org/models/resnet101-63fe2227.pth (the contrastive release "
              "loads the older name resnet101-5d3b4d8f.pth, also accepted)", _TORCHVISION_INPUT, "imagenet",
              # The contrastive release puts these weights into DeepLabv2 (deeplabv2_imagenet.py).
              also=("deeplabv2_resnet101_imagenet",)),
    Published("imagenet-resnet18", "resnet18", "torchvision-resnet",
              ("resnet18-f37072fd.pth", "resnet18-5c106cde.pth"),
              "ImageNet-1k classification (torchvision IMAGENET1K_V1)",
              "https://download.pytorch.org/models/resnet18-f37072fd.pth", _TORCHVISION_INPUT,
              "imagenet"),
    Published("coco-deeplabv2-resnet101", "deeplabv2_resnet101", "deeplabv2-resnet",
              ("resnet101COCO-41f33a49.pth",),
              "DeepLabv2's ResNet-101 init: ImageNet, then MS-COCO segmentation",
              "http://vllab1.ucmerced.edu/~whung/adv-semi-seg/resnet101COCO-41f33a49.pth (AdvSemiSeg; "
              "loaded by the contrastive release's trainSSL.py for its COCO configs)", _CAFFE_INPUT, "caffe_bgr"),
    # AdaptSegNet's paper says "pre-trained on ImageNet", but its authors say this file is
    # DeepLab's ImageNet + COCO init (wasidennis/AdaptSegNet issues #5 and #92); hence the name.
    Published("coco-deeplabv2-resnet101-adaptsegnet", "deeplabv2_resnet101", "deeplabv2-resnet-scale",
              ("DeepLab_resnet_pretrained_init-f81d91e8.pth",),
              "DeepLabv2's ResNet-101 init: ImageNet, then MS-COCO (AdaptSegNet issues #5, #92)",
              "http://vllab.ucmerced.edu/ytsai/CVPR18/DeepLab_resnet_pretrained_init-f81d91e8.pth "
              "(AdaptSegNet's RESTORE_FROM)", _CAFFE_INPUT, "caffe_bgr"),
    Published("imagenet-vgg16", "vgg16_largefov", "torchvision-vgg16", ("vgg16-397923af.pth",),
              "ImageNet-1k classification (torchvision IMAGENET1K_V1); fc6/fc7 decimated to "
              "LargeFOV's shapes by the converter", "https://download.pytorch.org/models/vgg16-397923af.pth",
              _TORCHVISION_INPUT, "imagenet"),
    Published("imagenet-drn-d-22", "drn_d_22", "drn", ("drn_d_22-4bd2f8ea.pth",),
              "ImageNet-1k classification (fyu/drn)",
              "http://dl.yf.io/drn/drn_d_22-4bd2f8ea.pth (fyu/drn model_urls['drn-d-22'])",
              _TORCHVISION_INPUT, "imagenet"),
]}

# Names that were proposed but would describe a file wrongly: refused with the reason.
RETIRED = {
    "imagenet-deeplabv2-resnet101": "AdaptSegNet's DeepLab_resnet_pretrained_init-f81d91e8.pth is "
    "ImageNet + COCO pretrained (AdaptSegNet issues #5, #92), not ImageNet only; use "
    "coco-deeplabv2-resnet101-adaptsegnet",
}


def weights_dir() -> Path:
    value = os.environ.get(WEIGHTS_ENV, "").strip()
    if not value:
        raise FileNotFoundError(f"${WEIGHTS_ENV} is not set: point it at the folder that holds the "
                                f"published weight files (docs/pretrained.md lists them)")
    return Path(value).expanduser()


def lookup(name: str) -> Published:
    if name in RETIRED:
        raise ValueError(f"pretrained name '{name}' is not offered: {RETIRED[name]}")
    if name not in PUBLISHED:
        raise ValueError(f"unknown pretrained name '{name}'; known: {', '.join(sorted(PUBLISHED))}")
    return PUBLISHED[name]


def resolve(entry: Published) -> Path:
    """The first of the entry's file names present in $UNISEMI_WEIGHTS, else one line naming the
    expected path, the file name and where to get it."""
    folder = weights_dir()
    for name in entry.files:
        if (folder / name).is_file():
            return folder / name
    others = f" (or {', '.join(entry.files[1:])})" if len(entry.files) > 1 else ""
    raise FileNotFoundError(f"pretrained '{entry.name}': expected {folder / entry.files[0]}{others}; "
                            f"get {entry.files[0]} from {entry.source} into ${WEIGHTS_ENV}")


def check_encoder(entry: Published, encoder: str) -> None:
    if not entry.fits(encoder):
        fits = " or ".join((entry.encoder,) + entry.also)
        raise ValueError(f"pretrained '{entry.name}' holds a {entry.encoder} encoder, but "
                         f"model.encoder is {encoder} (set model.encoder={fits})")
