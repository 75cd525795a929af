"""`model.pretrained` -> a file, its layout and a strict load into the encoder.

The value is 'none', 'synthetic' (the shapes-pretrained stand-in, unisemi.pretrain), a published
name (published.PUBLISHED, resolved under $UNISEMI_WEIGHTS) or a path. The file's keys go
through its layout's converter (convert.py: the name's layout, or the one its keys show for a
path), then every encoder tensor must come from it with its shape and nothing may be left over;
otherwise the load is an error of one line, unless `model.pretrained_partial` is set, which loads
what fits and logs the counts.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from . import convert, published
from .weights import (compare, copy_loaded, encoder_tensors, incomplete_line, is_complete,
                      read_state_dict)

log = logging.getLogger("unisemi")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar")


@dataclass(frozen=True)
class Source:
    path: Path
    layout: str | None          # None: guessed from the file's keys when read
    name: str | None = None     # the published name, if the value was one

    @property
    def what(self) -> str:
        return f"pretrained '{self.name}' ({self.path})" if self.name else f"pretrained file {self.path}"


def source_for(value, encoder: str, cfg=None) -> Source | None:
    """Where `model.pretrained=value` reads from, for `encoder`; None for no weights."""
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    value = str(value).strip()
    if value.lower() == "synthetic":
        from unisemi.pretrain import ensure_pretrained
        return Source(Path(ensure_pretrained(cfg)), "unisemi")
    if value in published.PUBLISHED or value in published.RETIRED:
        entry = published.lookup(value)
        published.check_encoder(entry, encoder)
        return Source(published.resolve(entry), entry.layout, entry.name)
    looks_like_path = (os.sep in value or "/" in value or value.endswith(CHECKPOINT_SUFFIXES)
                       or os.path.exists(value))
    if not looks_like_path:
        raise ValueError(f"pretrained={value!r} is neither 'none', 'synthetic', a published name "
                         f"({', '.join(sorted(published.PUBLISHED))}) nor a path to a local checkpoint file")
    return Source(Path(value), None)


@dataclass
class Inspection:
    source: Source
    layout: str
    state: dict                 # converted: our encoder's key names
    dropped: list               # keys the layout carries beyond the encoder (fc, layer5)
    report: dict                # weights.compare
    total: int                  # encoder tensors that must come from the file

    @property
    def complete(self) -> bool:
        return is_complete(self.report)

    def summary(self) -> str:
        r = self.report
        loaded = sum(1 for k in r["loaded"] if not k.endswith("num_batches_tracked"))
        return (f"{self.source.what}, layout {self.layout}: loaded {loaded} of {self.total} encoder "
                f"tensors, missing {len(r['missing'])}, mismatched {len(r['mismatched'])}, "
                f"unexpected {len(r['unexpected'])}, dropped {len(self.dropped)} (the layout's classifier)")


def inspect(encoder: nn.Module, encoder_name: str, source: Source) -> Inspection:
    """Read and convert the file and compare it with the encoder; changes nothing."""
    raw = read_state_dict(source.path)
    layout = source.layout or convert.guess_layout(raw)
    convert.check_layout(layout, encoder_name, source.what)
    state, dropped = convert.LAYOUTS[layout](raw)
    return Inspection(source, layout, state, dropped, compare(encoder, state), encoder_tensors(encoder))


def load_pretrained(encoder: nn.Module, encoder_name: str, source: Source, partial: bool = False) -> Inspection:
    """Load `source` into `encoder`: complete, or a one-line ValueError (a partial load with `partial`)."""
    found = inspect(encoder, encoder_name, source)
    if not found.complete and not partial:
        raise ValueError(incomplete_line(found.report, source.what, found.total, encoder_name))
    copy_loaded(encoder, found.state, found.report)
    if found.complete:
        log.info(found.summary())
    else:
        log.warning("PARTIAL LOAD (model.pretrained_partial): " + found.summary())
    return found


def check_published_hash(source: Source, digest: str) -> None:
    """Warn when a published name's file is not the published file (its name's sha256 prefix)."""
    prefix = published.sha256_prefix(source.path.name) if source.name else None
    if prefix and not digest.startswith(prefix[:len(digest)]):
        log.warning(f"{source.what}: sha256 starts {digest[:len(prefix)]}, the published file's "
                    f"name says {prefix}: this is not the published file")


def weights_problem(value, encoder: str, width: int = 32, partial: bool = False) -> str | None:
    """The one line that `model.pretrained=value` would stop a run with, or None: for a driver to
    call before any trial starts (the encoder is built on the meta device: shapes only, no init).
    'synthetic' is not checked here: the runner builds it (unisemi.pretrain)."""
    import torch

    from .encoders import ENCODERS
    if value is None or str(value).strip().lower() in ("", "none", "synthetic"):
        return None
    try:
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; known: {sorted(ENCODERS)}")
        source = source_for(value, encoder)
        with torch.device("meta"):
            found = inspect(ENCODERS[encoder](8, width), encoder, source)
    except (ValueError, FileNotFoundError) as exc:
        return str(exc)
    if found.complete or partial:
        return None
    return incomplete_line(found.report, source.what, found.total, encoder)
