"""Segmentation heads.

Each head maps the encoder dict ``{"low", "out"}`` to ``(logits, features)``
at feature resolution; upsampling to the input size is the model's job.
``features`` is exactly the tensor the final classifier reads, so methods that
work on pre-classifier embeddings (prototypes, contrastive losses) can use it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# DeepLabv3(+) atrous rates at output stride 16; doubled at OS 8 (paper convention).
V3_RATES_OS16 = (6, 12, 18)


def _cfg(cfg, name: str, default):
    # Heads accept any object with the config fields; missing ones use defaults
    # so tests and ad-hoc callers can pass a SimpleNamespace.
    return getattr(cfg, name, default) if cfg is not None else default


class FCNHead(nn.Module):
    """DRN-style head: a single 1x1 conv classifier on the encoder output."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.feature_channels = in_channels
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Conv2d(self.feature_channels, num_classes, 1)

    def forward(self, feats: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        x = feats["out"]
        return self.classifier(x), x


class ASPPv2Head(nn.Module):
    """DeepLabv2 ASPP: parallel 3x3 atrous convs straight to classes, summed.

    ``active_branches`` < len(rates) sums only the first k branches; it exists
    to reproduce a released codebase whose forward returned after 2 of 4
    branches. The unused branches still exist (and hold parameters).
    """

    def __init__(self, in_channels: int, num_classes: int, rates=(6, 12, 18, 24),
                 active_branches: int = 4):
        super().__init__()
        rates = tuple(int(r) for r in rates)
        if not rates:
            raise ValueError("aspp head needs at least one atrous rate")
        if not 1 <= active_branches <= len(rates):
            raise ValueError(f"aspp_active_branches={active_branches!r} must be in "
                             f"[1, {len(rates)}] for rates {rates}")
        self.rates = rates
        self.active_branches = int(active_branches)
        self.feature_channels = in_channels
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        # The branches *are* the classifier in DeepLabv2.
        self.branches = nn.ModuleList(
            nn.Conv2d(self.feature_channels, num_classes, 3, padding=r, dilation=r)
            for r in self.rates)
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feats: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        x = feats["out"]
        logits = self.branches[0](x)
        for conv in self.branches[1:self.active_branches]:
            logits = logits + conv(x)
        return logits, x


def conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPv3(nn.Module):
    """DeepLabv3 ASPP: 1x1 + three atrous 3x3 + image pooling, concat, project."""

    def __init__(self, in_channels: int, channels: int, rates=V3_RATES_OS16,
                 dropout: float = 0.1):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(in_channels, channels, 1)] +
                                      [conv_bn_relu(in_channels, channels, 3, r) for r in rates])
        # No BN on the pooled branch: it sees a 1x1 map, so BatchNorm in train
        # mode would fail at batch size 1 (and is noisy for small batches).
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1),
                                  nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            conv_bn_relu(channels * (len(rates) + 2), channels, 1), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusHead(nn.Module):
    """ASPP v3 + stride-4 decoder (48-ch low-level projection, two 3x3 convs)."""

    def __init__(self, in_channels: int, low_channels: int, num_classes: int,
                 channels: int = 256, rates=V3_RATES_OS16, low_proj: int = 48):
        super().__init__()
        self.aspp = ASPPv3(in_channels, channels, rates)
        self.low_proj = conv_bn_relu(low_channels, low_proj, 1)
        self.decoder = nn.Sequential(conv_bn_relu(channels + low_proj, channels, 3),
                                     conv_bn_relu(channels, channels, 3))
        self.feature_channels = channels
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Conv2d(self.feature_channels, num_classes, 1)

    def forward(self, feats: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        low = self.low_proj(feats["low"])
        x = self.aspp(feats["out"])
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = self.decoder(torch.cat([x, low], dim=1))
        return self.classifier(x), x


def fcn(in_channels: int, low_channels: int, num_classes: int, cfg=None) -> nn.Module:
    return FCNHead(in_channels, num_classes)


def aspp(in_channels: int, low_channels: int, num_classes: int, cfg=None) -> nn.Module:
    return ASPPv2Head(in_channels, num_classes, _cfg(cfg, "aspp_rates", (6, 12, 18, 24)),
                      int(_cfg(cfg, "aspp_active_branches", 4)))


def deeplabv3plus(in_channels: int, low_channels: int, num_classes: int, cfg=None) -> nn.Module:
    scale = 16 // int(_cfg(cfg, "output_stride", 16))
    rates = tuple(r * scale for r in V3_RATES_OS16)
    return DeepLabV3PlusHead(in_channels, low_channels, num_classes,
                             int(_cfg(cfg, "decoder_channels", 256)), rates)


HEADS = {"fcn": fcn, "aspp": aspp, "deeplabv3plus": deeplabv3plus}
