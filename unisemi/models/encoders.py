"""Encoders: dilated ResNets (torchvision-compatible names), a tiny CPU net, and the papers' own
backbones (backbones.py).

Every encoder returns ``{"low": stride-4 features, "mid": the stage before the last,
"out": stride-os features}`` and exposes ``low_channels`` / ``mid_channels`` / ``out_channels``.
"mid" (ResNet's layer3, AdaptSegNet's "conv4") feeds ASS's multi-level auxiliary classifier; it is
a tensor the forward computes anyway, so no output or parameter changes.
"""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from .backbones import PAPER_ENCODERS
from .blocks import BasicBlock, Bottleneck, conv1x1, conv3x3, init_weights

VALID_OUTPUT_STRIDES = (8, 16)


def check_output_stride(output_stride: int) -> None:
    if output_stride not in VALID_OUTPUT_STRIDES:
        raise ValueError(
            f"output_stride={output_stride!r} is not supported; expected one of {{8, 16}}")


class DilatedResNet(nn.Module):
    """ImageNet ResNet without avgpool/fc; late strides become dilations.

    Attribute names mirror torchvision so its checkpoints load by name.
    """

    def __init__(self, block: type, layers: list[int], output_stride: int = 8):
        super().__init__()
        check_output_stride(output_stride)
        # OS 16: only layer4 is dilated; OS 8: layer3 and layer4.
        dilate = (False, output_stride == 8, True)
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, dilate[2])
        self.low_channels = 64 * block.expansion
        self.mid_channels = 256 * block.expansion
        self.out_channels = 512 * block.expansion
        self.output_stride = output_stride
        init_weights(self)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1,
                    dilate: bool = False) -> nn.Sequential:
        # Same scheme as torchvision's replace_stride_with_dilation: the first
        # block keeps the previous dilation, later ones use the new one.
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        mods = [block(self.inplanes, planes, stride, previous_dilation, downsample)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes, 1, self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        mid = self.layer3(self.layer2(low))
        return {"low": low, "mid": mid, "out": self.layer4(mid)}


class TinyBlock(nn.Module):
    """Two 3x3 conv+BN residual block (projection skip when shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(cin, cout, stride, dilation), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            conv3x3(cout, cout, 1, dilation), nn.BatchNorm2d(cout))
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.skip is None else self.skip(x)
        return self.relu(self.body(x) + identity)


class TinyEncoder(nn.Module):
    """Small dilated residual net (DRN-like) for fast CPU experiments.

    Channels (w, 2w, 4w, 4w) with one residual block per stage; the last two
    stages dilate instead of striding so the output keeps stride 8 (or 16).
    Nearly all parameters live at the output stride, which keeps compute low.
    """

    def __init__(self, output_stride: int = 8, width: int = 32):
        super().__init__()
        check_output_stride(output_stride)
        w = int(width)
        if w < 4:
            raise ValueError(f"tiny encoder width={width!r} must be >= 4")
        self.stem = nn.Sequential(
            conv3x3(3, w // 2, stride=2), nn.BatchNorm2d(w // 2), nn.ReLU(inplace=True),
            conv3x3(w // 2, w, stride=2), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.stage1 = TinyBlock(w, w)                     # stride 4 -> "low"
        self.stage2 = TinyBlock(w, 2 * w, stride=2)       # stride 8
        if output_stride == 8:
            self.stage3 = TinyBlock(2 * w, 4 * w, dilation=2)
            self.stage4 = TinyBlock(4 * w, 4 * w, dilation=4)
        else:
            self.stage3 = TinyBlock(2 * w, 4 * w, stride=2)
            self.stage4 = TinyBlock(4 * w, 4 * w, dilation=2)
        self.low_channels = w
        self.mid_channels = 4 * w
        self.out_channels = 4 * w
        self.output_stride = output_stride
        init_weights(self)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        low = self.stage1(self.stem(x))
        mid = self.stage3(self.stage2(low))
        return {"low": low, "mid": mid, "out": self.stage4(mid)}


def tiny(output_stride: int = 8, width: int = 32) -> nn.Module:
    return TinyEncoder(output_stride, width)


def resnet18(output_stride: int = 8, width: int = 64) -> nn.Module:
    return DilatedResNet(BasicBlock, [2, 2, 2, 2], output_stride)


def resnet34(output_stride: int = 8, width: int = 64) -> nn.Module:
    return DilatedResNet(BasicBlock, [3, 4, 6, 3], output_stride)


def resnet50(output_stride: int = 8, width: int = 64) -> nn.Module:
    return DilatedResNet(Bottleneck, [3, 4, 6, 3], output_stride)


def resnet101(output_stride: int = 8, width: int = 64) -> nn.Module:
    return DilatedResNet(Bottleneck, [3, 4, 23, 3], output_stride)


# The papers' own backbones (Caffe-style DeepLabv2 ResNet-101, VGG-16 LargeFOV, DRN-D-22) live in
# backbones.py with the key names of their published weight files.
ENCODERS = {"tiny": tiny, "resnet18": resnet18, "resnet34": resnet34,
            "resnet50": resnet50, "resnet101": resnet101, **PAPER_ENCODERS}
