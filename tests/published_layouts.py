"""Synthetic state dicts in the published key layouts, written from each architecture's definition
(the releases' model files as documented in docs/pretrained.md), independently of unisemi's
converters and encoders: random tensors under the published names and shapes."""
from __future__ import annotations

import functools

import torch


def _bn(prefix: str, c: int, out: dict) -> None:
    out[f"{prefix}.weight"] = (c,)
    out[f"{prefix}.bias"] = (c,)
    out[f"{prefix}.running_mean"] = (c,)
    out[f"{prefix}.running_var"] = (c,)


def resnet_bottleneck_shapes(layers=(3, 4, 23, 3), classifier: str = "fc") -> dict:
    """ResNet-50/101 keys (torchvision and DeepLabv2 share them; only strides differ).
    classifier: 'fc' (ImageNet, 1000-way Linear) or 'layer5' (DeepLabv2 ASPP, 4 rates, 21 classes)."""
    s = {"conv1.weight": (64, 3, 7, 7)}
    _bn("bn1", 64, s)
    cin = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            s[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            _bn(f"{p}.bn1", planes, s)
            s[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            _bn(f"{p}.bn2", planes, s)
            s[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            _bn(f"{p}.bn3", planes * 4, s)
            if b == 0:
                s[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                _bn(f"{p}.downsample.1", planes * 4, s)
            cin = planes * 4
    if classifier == "fc":
        s["fc.weight"], s["fc.bias"] = (1000, 2048), (1000,)
    else:
        for i in range(4):
            s[f"layer5.conv2d_list.{i}.weight"] = (21, 2048, 3, 3)
            s[f"layer5.conv2d_list.{i}.bias"] = (21,)
    return s


def resnet18_shapes() -> dict:
    s = {"conv1.weight": (64, 3, 7, 7)}
    _bn("bn1", 64, s)
    cin = 64
    for li, planes in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p = f"layer{li}.{b}"
            s[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            _bn(f"{p}.bn1", planes, s)
            s[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            _bn(f"{p}.bn2", planes, s)
            if b == 0 and cin != planes:
                s[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                _bn(f"{p}.downsample.1", planes, s)
            cin = planes
    s["fc.weight"], s["fc.bias"] = (1000, 512), (1000,)
    return s


# torchvision VGG-16 ("D"): 13 convs in `features`, pools at 4, 9, 16, 23, 30; three Linear layers.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_shapes() -> dict:
    s, cin, idx = {}, 3, 0
    for v in VGG16_CFG:
        if v == "M":
            idx += 1
            continue
        s[f"features.{idx}.weight"], s[f"features.{idx}.bias"] = (v, cin, 3, 3), (v,)
        cin, idx = v, idx + 2          # conv, then its ReLU
    s["classifier.0.weight"], s["classifier.0.bias"] = (4096, 512 * 7 * 7), (4096,)
    s["classifier.3.weight"], s["classifier.3.bias"] = (4096, 4096), (4096,)
    s["classifier.6.weight"], s["classifier.6.bias"] = (1000, 4096), (1000,)
    return s


def drn_d_22_shapes() -> dict:
    """fyu/drn DRN-D-22: layers (1, 1, 2, 2, 2, 2, 1, 1), channels (16, 32, 64, 128, 256, 512, 512, 512)."""
    s = {"layer0.0.weight": (16, 3, 7, 7)}
    _bn("layer0.1", 16, s)
    s["layer1.0.weight"] = (16, 16, 3, 3)
    _bn("layer1.1", 16, s)
    s["layer2.0.weight"] = (32, 16, 3, 3)
    _bn("layer2.1", 32, s)
    cin = 32
    for li, planes in zip((3, 4, 5, 6), (64, 128, 256, 512)):
        for b in range(2):
            p = f"layer{li}.{b}"
            s[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            _bn(f"{p}.bn1", planes, s)
            s[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            _bn(f"{p}.bn2", planes, s)
            if b == 0:
                s[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                _bn(f"{p}.downsample.1", planes, s)
            cin = planes
    for li in (7, 8):
        s[f"layer{li}.0.weight"] = (512, 512, 3, 3)
        _bn(f"layer{li}.1", 512, s)
    s["fc.weight"], s["fc.bias"] = (1000, 512, 1, 1), (1000,)
    return s


def random_state(shapes: dict, seed: int = 0, prefix: str = "") -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        t = torch.randn(shape, generator=g) * 0.05
        if k.endswith("running_var"):
            t = t.abs() + 0.5               # a variance: positive
        elif k.endswith(".weight") and len(shape) == 1:
            t = t + 1.0                     # a batch-norm scale: near 1
        out[prefix + k] = t
    return out


# One synthetic file per published layout per test process, under its published file name in a
# folder that serves as $UNISEMI_WEIGHTS (writing a 528 MB VGG-16 file once is the cost to keep low).
_FOLDER: list = []
LAYOUT_FILES = {
    "coco-deeplabv2-resnet101": ("resnet101COCO-41f33a49.pth",
                                 lambda: random_state(resnet_bottleneck_shapes(classifier="layer5"), 1)),
    "coco-deeplabv2-resnet101-adaptsegnet": ("DeepLab_resnet_pretrained_init-f81d91e8.pth",
                                             lambda: random_state(resnet_bottleneck_shapes(classifier="layer5"),
                                                                  2, prefix="Scale.")),
    "imagenet-resnet101": ("resnet101-63fe2227.pth", lambda: random_state(resnet_bottleneck_shapes(), 3)),
    "imagenet-vgg16": ("vgg16-397923af.pth", lambda: random_state(vgg16_shapes(), 4)),
    "imagenet-drn-d-22": ("drn_d_22-4bd2f8ea.pth", lambda: random_state(drn_d_22_shapes(), 5)),
    "imagenet-resnet18": ("resnet18-f37072fd.pth", lambda: random_state(resnet18_shapes(), 6)),
}


def weights_folder():
    import atexit
    import shutil
    import tempfile
    from pathlib import Path
    if not _FOLDER:
        folder = Path(tempfile.mkdtemp(prefix="unisemi-weights-"))
        atexit.register(shutil.rmtree, folder, True)
        _FOLDER.append(folder)
    return _FOLDER[0]


@functools.cache
def published_file(name: str):
    """(path, state dict) of the synthetic file for a published name, written once."""
    file_name, make = LAYOUT_FILES[name]
    state = make()
    path = weights_folder() / file_name
    torch.save(state, path)
    return path, state
