"""P-Net (Table 1) and its adversarial terms (Eq. 3-5), plus its pre-training on strong images.

P-Net sees an image multiplied by one class mask at a time (Luc et al. 2016's product encoding,
read per class: "multiplying the training image with the mask of each category"), so it judges
the shape of one object cut-out and never the class id; that is what lets it transfer across
categories and, in split 4, across label spaces. Per image it sees the masks of the (at most
`pnet_max_classes`) object classes present in the label map L_I, ground truth ("real", z = 1)
or the segmenter's softmax of the same classes ("fake", z = 0). Void pixels take the fake's value
in the real mask too: VOC's void band around every object would otherwise give real masks away.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from unisemi.data import IGNORE_INDEX
from unisemi.device import cpu_state_dict

STAGE = "transfer-pnet"
WEIGHTS_FILE = "pnet.pt"


class PNet(nn.Module):
    """Table 1: conv 16, 32 | pool | conv 64, 64 | pool | conv 128, 128 | pool (3x3 convs, ReLU,
    2x2 stride-2 pools), then fc 256 (tanh), fc 512 (tanh), fc 1 (sigmoid). `forward` returns the
    logit of fc6; `prob` applies the sigmoid (the losses use the logit: a stable BCE)."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        h, w = size
        if h % 8 or w % 8:
            raise ValueError(f"P-Net input {h}x{w}: both sides must be multiples of 8 (three 2x2 pools)")
        self.size = (h, w)
        layers, cin = [], 3
        for block in ((16, 32), (64, 64), (128, 128)):
            for cout in block:
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(2, 2))
        self.convs = nn.Sequential(*layers)
        self.fc4 = nn.Linear(128 * (h // 8) * (w // 8), 256)
        self.fc5 = nn.Linear(256, 512)
        self.fc6 = nn.Linear(512, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.convs(x).flatten(1)
        return self.fc6(torch.tanh(self.fc5(torch.tanh(self.fc4(f))))).squeeze(1)

    def prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(x))


def encode(images: torch.Tensor, masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """images (B, 3, H, W) x masks (B, K, H, W) -> P-Net inputs (B * K, 3, h, w): image b times
    mask k, resized to P-Net's input size (area averaging, so a thin mask is thinned, not lost)."""
    x = (images.unsqueeze(1) * masks.unsqueeze(2)).flatten(0, 1)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.adaptive_avg_pool2d(x, size) if all(s % t == 0 for s, t in zip(x.shape[-2:], size)) \
            else F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def present_classes(labels: torch.Tensor, num_classes: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes (B, k) long, valid (B, k) bool): the object classes (ids 1..C-1) present in each
    label map, lowest ids first, padded with invalid slots. No host sync (top-k, not nonzero)."""
    b = labels.shape[0]
    flat = labels.reshape(b, -1).long()
    present = torch.zeros(b, 256, dtype=torch.bool, device=labels.device).scatter_(1, flat, True)
    present = present[:, 1:num_classes]                       # background and void are no object
    ids = torch.arange(1, num_classes, device=labels.device, dtype=torch.float32)
    score = present.float() * num_classes - ids / num_classes  # present first, then by id
    top = score.topk(min(k, num_classes - 1), dim=1).indices
    return top + 1, present.gather(1, top)


def real_and_fake_masks(labels: torch.Tensor, probs: torch.Tensor, classes: torch.Tensor):
    """Masks (B, k, H, W) of `classes`: one-hot of the label map (real) and the softmax (fake);
    void pixels of the real mask take the (detached) fake value."""
    fake = probs.gather(1, classes[:, :, None, None].expand(-1, -1, *probs.shape[-2:]))
    real = (labels.long().unsqueeze(1) == classes[:, :, None, None]).to(probs.dtype)
    void = (labels == IGNORE_INDEX).unsqueeze(1)
    return torch.where(void, fake.detach(), real), fake


def weighted_bce(logits: torch.Tensor, z: float, weight: torch.Tensor) -> torch.Tensor:
    """J_b(z, O_P) as a mean over the valid inputs (weight 0 or 1); 0 when none is valid."""
    loss = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, z), reduction="none")
    return (loss * weight).sum() / weight.sum().clamp_min(1)


def adversarial_terms(pnet: PNet, x: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                      k: int, lambda_adv: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(the segmenter's lambda J_b(1, O_P(fake)) of Eq. 4, P-Net's J_b(1, O_P(real)) +
    J_b(0, O_P(fake)) of Eq. 5 on the detached fake). `labels` is L_I: ground truth of strong
    images, the diffused L_w of weak ones."""
    classes, valid = present_classes(labels, logits.shape[1], k)
    real, fake = real_and_fake_masks(labels, logits.softmax(1), classes)
    w = valid.flatten().to(logits.dtype)
    fake_in = encode(x, fake, pnet.size)
    gen = lambda_adv * weighted_bce(pnet(fake_in), 1.0, w)
    disc = weighted_bce(pnet(encode(x, real, pnet.size)), 1.0, w) + weighted_bce(pnet(fake_in.detach()), 0.0, w)
    return gen, disc


def input_size(cfg) -> tuple[int, int]:
    """P-Net's input: transfer.pnet_size, else the training image's size (a real domain's crop,
    or its resize when it has no crop; config.validate checks both are multiples of 8)."""
    s = cfg.transfer.pnet_size
    if s:
        return (s, s)
    from unisemi.data import is_real, real, synthetic
    domain = cfg.data.domains[0]
    if is_real(domain):
        size = real.training_size(cfg.data, domain)
        if not size:
            raise ValueError(f"transfer.pnet_size=0 on '{domain}', whose training samples vary in "
                             f"size: set transfer.pnet_size or data.crop")
    else:
        size = tuple(cfg.data.size) if cfg.data.size else synthetic.get_domain(domain).size
    return (int(size[0]), int(size[1]))


def pretrain(cfg, lnet_model) -> tuple[PNet, list[float]]:
    """Eq. 5 on strong images only, the L-Net's class-agnostic mask M as the fake and the binarised
    ground truth L'_s as the real: the one network trained on strong categories in every split
    (split 4's strong images have another label space than the segmenter's). docs/transfer.md."""
    from unisemi.methods.transfer.setting import (binary_targets, sgd_fit, stage_batches, stage_device,
                                                  strong_source)
    c = cfg.transfer
    src = strong_source(cfg)
    torch.manual_seed(cfg.train.seed * 1_000 + 5)
    device = stage_device(cfg)
    pnet = PNet(input_size(cfg)).to(device)
    lnet_model.to(device).eval()

    def loss(x, y):
        with torch.no_grad():
            m = torch.sigmoid(lnet_model(x, "mask")["logits"])           # (B, 1, H, W)
        target, valid = binary_targets(y, src.object_lut)
        real = torch.where(valid.unsqueeze(1), target.unsqueeze(1), m)  # void: the fake's value
        w = torch.ones(x.shape[0], device=x.device)
        return (weighted_bce(pnet(encode(x, real, pnet.size)), 1.0, w)
                + weighted_bce(pnet(encode(x, m, pnet.size)), 0.0, w))

    batches = stage_batches(cfg, src.data, src.indices, cfg.train.seed * 1_000 + 41)
    trace = sgd_fit(list(pnet.parameters()), loss, batches, c.pnet_pretrain_iterations, c.pnet_lr, cfg)
    return pnet, trace


def build(cfg, folder: Path, lnet_path: Path) -> None:
    from unisemi.methods.transfer import lnet
    pnet, trace = pretrain(cfg, lnet.load(cfg, lnet_path))
    torch.save({"state_dict": cpu_state_dict(pnet), "size": list(pnet.size), "loss_trace": trace},
               folder / WEIGHTS_FILE)


def load(path: Path) -> PNet:
    ck = torch.load(path / WEIGHTS_FILE, map_location="cpu")
    pnet = PNet(tuple(ck["size"]))
    pnet.load_state_dict(ck["state_dict"])
    return pnet
