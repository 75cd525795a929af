"""Models: one shared encoder plus one segmentation head per label space."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoders import ENCODERS, check_output_stride
from .heads import HEADS
from .loading import check_published_hash, load_pretrained, source_for
from .weights import load_encoder_weights, weights_hash

__all__ = ["ENCODERS", "HEADS", "SegmentationModel", "build_model", "load_encoder_weights",
           "weights_hash"]


def _lookup(table: dict, name: str, kind: str):
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; known: {sorted(table)}")
    return table[name]


class SegmentationModel(nn.Module):
    """Shared encoder, ``heads[domain]`` per label space.

    ``head_builder(in_channels, low_channels, num_classes, cfg)`` creates heads,
    so ``add_head`` / ``replace_head`` build the same head type as the others.
    """

    def __init__(self, encoder: nn.Module, head_builder, label_spaces: dict[str, int], cfg=None):
        super().__init__()
        self.encoder = encoder
        self.head_builder = head_builder
        self.cfg = cfg
        self.encoder_channels = int(encoder.out_channels)
        self.heads = nn.ModuleDict()
        self.head_outputs: dict[str, int] = {}   # logits per domain: its classes, or more (evaluate.py)
        self.feature_channels: int | None = None
        for domain, num_classes in label_spaces.items():
            self.add_head(domain, num_classes)

    @property
    def domains(self) -> list[str]:
        return list(self.heads.keys())

    def _new_head(self, domain: str, num_classes: int) -> nn.Module:
        if not isinstance(domain, str) or not domain or "." in domain:
            raise ValueError(f"domain name {domain!r} must be a non-empty string without '.'")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes for domain {domain!r} must be >= 1, got {num_classes}")
        head = self.head_builder(self.encoder_channels, int(self.encoder.low_channels),
                                 int(num_classes), self.cfg)
        head.to(next(self.encoder.parameters()).device)
        self.feature_channels = int(head.feature_channels)
        self.head_outputs[domain] = int(num_classes)
        return head

    def add_head(self, domain: str, num_classes: int) -> nn.Module:
        if domain in self.heads:
            raise ValueError(f"domain {domain!r} already has a head; use replace_head")
        self.heads[domain] = self._new_head(domain, num_classes)
        return self.heads[domain]

    def replace_head(self, domain: str, num_classes: int) -> nn.Module:
        """Swap ``domain``'s head for a freshly initialised one with ``num_classes``."""
        self._head(domain)  # unknown domain -> clear KeyError (guards against typos)
        self.heads[domain] = self._new_head(domain, num_classes)
        return self.heads[domain]

    def _head(self, domain: str) -> nn.Module:
        if domain not in self.heads:
            raise KeyError(f"no head for domain {domain!r}; known domains: {self.domains}")
        return self.heads[domain]

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        return self.encoder(x)

    def decode(self, feats: dict[str, Tensor], domain: str,
               out_size: tuple[int, int] | None = None) -> dict[str, Tensor]:
        logits, features = self._head(domain)(feats)
        if out_size is not None and tuple(logits.shape[-2:]) != tuple(out_size):
            logits = F.interpolate(logits, size=tuple(out_size), mode="bilinear",
                                   align_corners=False)
        return {"logits": logits, "features": features}

    def forward(self, x: Tensor, domain: str) -> dict[str, Tensor]:
        feats = self.encode(x)
        out = self.decode(feats, domain, tuple(x.shape[-2:]))
        out["encoder"] = feats["out"]
        return out


def encode_parts(model, parts: list[Tensor]) -> list[dict[str, Tensor]]:
    """`model.encode` features of each batch in `parts`: one pass over all the batches of one
    image size, so batch norm sees them together; domains of different sizes (Cityscapes crops
    and whole CamVid images) get one pass per size instead of a failing concatenation."""
    by_size: dict[tuple, list[int]] = {}
    for i, x in enumerate(parts):
        by_size.setdefault(tuple(x.shape[1:]), []).append(i)
    out: list = [None] * len(parts)
    for members in by_size.values():
        feats = model.encode(torch.cat([parts[i] for i in members]))
        start = 0
        for i in members:
            n = len(parts[i])
            out[i] = {k: v[start:start + n] for k, v in feats.items()}
            start += n
    return out


def build_model(cfg, label_spaces: dict[str, int]) -> SegmentationModel:
    """Build encoder + one head per ``label_spaces`` entry from a model config."""
    if not label_spaces:
        raise ValueError("label_spaces must name at least one domain")
    encoder_fn = _lookup(ENCODERS, cfg.encoder, "encoder")
    head_fn = _lookup(HEADS, cfg.head, "head")
    check_output_stride(cfg.output_stride)
    source = source_for(getattr(cfg, "pretrained", "none"), cfg.encoder, cfg)
    encoder = encoder_fn(int(cfg.output_stride), int(getattr(cfg, "width", 32)))
    if source is not None:
        # Complete or a one-line error (loading.py); model.pretrained_partial lets a laptop run
        # start from a partial file, with a warning that gives the counts.
        load_pretrained(encoder, cfg.encoder, source, bool(getattr(cfg, "pretrained_partial", False)))
    model = SegmentationModel(encoder, head_fn, label_spaces, cfg)
    # Results record which weights a run started from (None: random init).
    model.weights_hash = weights_hash(source.path) if source is not None else None
    if source is not None:
        check_published_hash(source, model.weights_hash)
    return model
