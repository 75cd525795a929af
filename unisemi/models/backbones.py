"""The seed papers' own backbones, with the attribute names of their published weight files.

- `deeplabv2_resnet101`: DeepLabv2's Caffe-style ResNet-101 (the COCO-initialised network of
  AdvSemiSeg, ClassMix, the contrastive release and AdaptSegNet). It differs from torchvision's
  layout (encoders.DilatedResNet) in three places, so the same weights compute something else:
  the stride of a block sits on its first 1x1 conv (torchvision: on the 3x3); the first block of
  layer3 / layer4 already uses dilation 2 / 4 (torchvision keeps 1 / 2 there); the stem's max-pool
  rounds up (ceil_mode), so 321x321 -> 41x41 and 512x512 -> 65x65 features. Batch-norm affine
  parameters are frozen (requires_grad False) as in both releases; running statistics still
  update in train mode, as there.
- `deeplabv2_resnet101_imagenet`: the contrastive release's `model/deeplabv2_imagenet.py`, the
  same DeepLabv2 network for torchvision's ImageNet weights: the stride on the 3x3 (torchvision's
  block) and a floor-mode pool (512 -> 64x64), but DeepLab's dilations (2 / 4 from the first block
  of layer3 / layer4) and frozen batch-norm affine, unlike our torchvision-style `resnet101`.
- `vgg16_largefov`: DeepLab-LargeFOV (Chen et al., ICLR 2015) on VGG-16, the transfer paper's
  segmenter. Caffe's 3x3/stride-2 pools (ceil mode) after conv1-3, pool4 and pool5 at stride 1,
  conv5 dilated by 2, fc6 as a 3x3 conv with dilation 12 and 1024 channels, fc7 as a 1x1 conv with
  1024 channels, each followed by ReLU and dropout 0.5; the encoder's output is fc7's. `features.N`
  indices are torchvision's VGG-16, so its ImageNet file maps onto them by name.
- `drn_d_22`: the dilated residual network DRN-D-22 (Yu et al., CVPR 2017) that the universal
  release uses for its "ResNet-18" setting, without its avgpool and fc, as the release builds it.

All are output stride 8 only (as published) and return ``{"low": stride-4, "mid": the stage
before the last (ResNet's layer3, VGG's conv4_3, DRN's layer5; stride 8), "out": stride-8}``.
"""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from .blocks import Bottleneck, init_weights


def _require_os8(name: str, output_stride: int) -> None:
    if int(output_stride) != 8:
        raise ValueError(f"encoder {name} is published at output stride 8 only; "
                         f"got model.output_stride={output_stride}")


# ----------------------------------------------------------------------------------------------
# DeepLabv2 ResNet-101 (Caffe layout)

class DeepLabV2ResNet(nn.Module):
    """`caffe=True`: the COCO network (stride on the 1x1, ceil-mode pool). `caffe=False`: the
    contrastive release's `deeplabv2_imagenet.py` for torchvision's ImageNet weights (stride on
    the 3x3, floor pool), with DeepLab's dilations and frozen BN all the same."""

    def __init__(self, layers=(3, 4, 23, 3), caffe: bool = True, freeze_bn_affine: bool = True):
        super().__init__()
        self.inplanes, self.stride_on_3x3 = 64, not caffe
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=caffe)
        # (planes, blocks, stride, dilation): every block of a stage has the stage's dilation.
        self.layer1 = self._stage(64, layers[0], 1, 1)
        self.layer2 = self._stage(128, layers[1], 2, 1)
        self.layer3 = self._stage(256, layers[2], 1, 2)
        self.layer4 = self._stage(512, layers[3], 1, 4)
        self.low_channels, self.mid_channels, self.out_channels, self.output_stride = 256, 1024, 2048, 8
        init_weights(self)
        if freeze_bn_affine:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.requires_grad_(False)
                    m.bias.requires_grad_(False)

    def _stage(self, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        # The first block of every stage has a projection shortcut (the channels change or the
        # stage dilates), with the block's stride.
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
        mods = [Bottleneck(self.inplanes, planes, stride, dilation, downsample, self.stride_on_3x3)]
        self.inplanes = planes * 4
        mods += [Bottleneck(self.inplanes, planes, 1, dilation) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        mid = self.layer3(self.layer2(low))
        return {"low": low, "mid": mid, "out": self.layer4(mid)}


def deeplabv2_resnet101(output_stride: int = 8, width: int = 64) -> nn.Module:
    _require_os8("deeplabv2_resnet101", output_stride)
    return DeepLabV2ResNet((3, 4, 23, 3), caffe=True)


def deeplabv2_resnet101_imagenet(output_stride: int = 8, width: int = 64) -> nn.Module:
    _require_os8("deeplabv2_resnet101_imagenet", output_stride)
    return DeepLabV2ResNet((3, 4, 23, 3), caffe=False)


# ----------------------------------------------------------------------------------------------
# DeepLab-LargeFOV on VGG-16

# torchvision's VGG-16 `features` indices of the 13 convs; the rest are ReLUs and pools.
VGG16_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
               14: (256, 256), 17: (256, 512), 19: (512, 512), 21: (512, 512), 24: (512, 512),
               26: (512, 512), 28: (512, 512)}
VGG16_POOLS = {4: 2, 9: 2, 16: 2, 23: 1, 30: 1}       # index -> stride (all 3x3, pad 1, ceil mode)
LOW_INDEX = 15                                         # conv3_3's ReLU: the last stride-4 feature
MID_INDEX = 22                                         # conv4_3's ReLU: "mid", before pool4
FC6_CHANNELS, FC6_DILATION = 1024, 12


class VGG16LargeFOV(nn.Module):
    def __init__(self, dropout: float = 0.5):
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(31):
            if i in VGG16_CONVS:
                cin, cout = VGG16_CONVS[i]
                dilation = 2 if i >= 24 else 1            # conv5: DeepLab's "hole 2"
                mods.append(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation))
            elif i in VGG16_POOLS:
                mods.append(nn.MaxPool2d(3, stride=VGG16_POOLS[i], padding=1, ceil_mode=True))
            else:
                mods.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*mods)
        self.fc6 = nn.Conv2d(512, FC6_CHANNELS, 3, padding=FC6_DILATION, dilation=FC6_DILATION)
        self.fc7 = nn.Conv2d(FC6_CHANNELS, FC6_CHANNELS, 1)
        self.relu = nn.ReLU(inplace=True)
        self.drop6, self.drop7 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.low_channels, self.mid_channels, self.out_channels, self.output_stride = 256, 512, FC6_CHANNELS, 8
        init_weights(self)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        low = self.features[:LOW_INDEX + 1](x)
        mid = self.features[LOW_INDEX + 1:MID_INDEX + 1](low)
        x = self.features[MID_INDEX + 1:](mid)
        x = self.drop6(self.relu(self.fc6(x)))
        return {"low": low, "mid": mid, "out": self.drop7(self.relu(self.fc7(x)))}


def vgg16_largefov(output_stride: int = 8, width: int = 64) -> nn.Module:
    _require_os8("vgg16_largefov", output_stride)
    return VGG16LargeFOV()


# ----------------------------------------------------------------------------------------------
# DRN-D-22

class DRNBlock(nn.Module):
    """Residual block of two 3x3 convs with separate dilations (DRN's BasicBlock)."""

    def __init__(self, cin: int, planes: int, stride: int, dilation: tuple[int, int], downsample=None):
        super().__init__()
        d1, d2 = dilation
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=d1, dilation=d1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=d2, dilation=d2, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class DRND(nn.Module):
    """DRN-D: a conv stem (layers 0-2), four residual stages (3-6, the last two dilated 2 and 4
    instead of strided) and two plain conv stages (7, 8: dilation 2 then 1, which remove the
    gridding of the dilated stages)."""

    def __init__(self, layers=(1, 1, 2, 2, 2, 2, 1, 1),
                 channels=(16, 32, 64, 128, 256, 512, 512, 512)):
        super().__init__()
        c = channels
        self.inplanes = c[0]
        self.layer0 = nn.Sequential(nn.Conv2d(3, c[0], 7, padding=3, bias=False),
                                    nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True))
        self.layer1 = self._convs(c[0], layers[0], 1, 1)
        self.layer2 = self._convs(c[1], layers[1], 2, 1)
        self.layer3 = self._blocks(c[2], layers[2], 2, 1)
        self.layer4 = self._blocks(c[3], layers[3], 2, 1)
        self.layer5 = self._blocks(c[4], layers[4], 1, 2)
        self.layer6 = self._blocks(c[5], layers[5], 1, 4)
        self.layer7 = self._convs(c[6], layers[6], 1, 2)
        self.layer8 = self._convs(c[7], layers[7], 1, 1)
        self.low_channels, self.mid_channels, self.out_channels, self.output_stride = c[2], c[4], c[7], 8
        init_weights(self)

    def _convs(self, channels: int, n: int, stride: int, dilation: int) -> nn.Sequential:
        mods: list[nn.Module] = []
        for i in range(n):
            mods += [nn.Conv2d(self.inplanes, channels, 3, stride=stride if i == 0 else 1,
                               padding=dilation, dilation=dilation, bias=False),
                     nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            self.inplanes = channels
        return nn.Sequential(*mods)

    def _blocks(self, planes: int, n: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        # A dilated stage that replaces a stride uses its dilation from the first conv on.
        mods = [DRNBlock(self.inplanes, planes, stride, (dilation, dilation), downsample)]
        self.inplanes = planes
        mods += [DRNBlock(planes, planes, 1, (dilation, dilation)) for _ in range(1, n)]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        low = self.layer3(self.layer2(self.layer1(self.layer0(x))))
        mid = self.layer5(self.layer4(low))            # DRN's layer5 is ResNet's layer3
        return {"low": low, "mid": mid, "out": self.layer8(self.layer7(self.layer6(mid)))}


def drn_d_22(output_stride: int = 8, width: int = 64) -> nn.Module:
    _require_os8("drn_d_22", output_stride)
    return DRND()


PAPER_ENCODERS = {"deeplabv2_resnet101": deeplabv2_resnet101,
                  "deeplabv2_resnet101_imagenet": deeplabv2_resnet101_imagenet,
                  "vgg16_largefov": vgg16_largefov, "drn_d_22": drn_d_22}
