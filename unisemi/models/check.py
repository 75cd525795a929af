"""`python -m unisemi weights {check,list}`: what a weights file would give an encoder, before a run.

    python -m unisemi weights check NAME|FILE [--encoder ENC] [--width W]
    python -m unisemi weights list

`check` prints the file, its sha256 (against the prefix in its published file name), the layout
and the counts of the load, with the first missing / mismatched / unexpected keys; it exits 0 when
the load is complete and 1 when it is not (a run would stop, or need model.pretrained_partial).
"""
from __future__ import annotations

import hashlib

from . import published
from .loading import inspect, source_for

SHOWN = 5


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_lines(path, entry) -> list[str]:
    digest = sha256_of(path)
    lines = [f"  sha256 {digest} (rows record weights_hash {digest[:16]})"]
    prefix = published.sha256_prefix(path.name)
    if entry is not None:
        lines.append(f"  published sha256: {entry.sha256}")
    if prefix:
        verdict = "matches" if digest.startswith(prefix) else "DIFFERS: not the published file"
        lines.append(f"  sha256 prefix in the file name {prefix}: {verdict}")
    return lines


def cmd_check(args) -> int:
    from .encoders import ENCODERS
    value = args.weights
    if value.strip().lower() in ("none", "synthetic"):
        raise ValueError(f"weights check: {value!r} is not a file to check (the synthetic stand-in is "
                         f"built and checked by python -m unisemi pretrain)")
    entry = published.lookup(value) if value in published.PUBLISHED or value in published.RETIRED else None
    encoder_name = args.encoder or (entry.encoder if entry else None)
    if encoder_name is None:
        raise ValueError(f"weights check {value}: name the encoder (--encoder ENC) for a file")
    if encoder_name not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder_name!r}; known: {sorted(ENCODERS)}")
    source = source_for(value, encoder_name)
    encoder = ENCODERS[encoder_name](8, args.width)
    found = inspect(encoder, encoder_name, source)
    print(source.what)
    print(f"  {source.path.stat().st_size / 1e6:.1f} MB")
    for line in hash_lines(source.path, entry):
        print(line)
    print(f"  layout {found.layout} -> encoder {encoder_name}: {found.summary().split(': ', 1)[1]}")
    for kind in ("missing", "mismatched", "unexpected"):
        keys = found.report[kind]
        if keys:
            more = f" (and {len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
            print(f"  {kind}: {', '.join(keys[:SHOWN])}{more}")
    if found.complete:
        print("complete: every encoder tensor comes from the file")
        return 0
    print("INCOMPLETE: a run stops on this file (model.pretrained_partial=true starts from it anyway)")
    return 1


def cmd_list(args) -> int:
    try:
        folder = published.weights_dir()
    except FileNotFoundError:
        folder = None
    print(f"${published.WEIGHTS_ENV} = {folder if folder else '(not set)'}")
    for p in published.PUBLISHED.values():
        here = folder is not None and any((folder / f).is_file() for f in p.files)
        print(f"{p.name:38s} {p.encoder:20s} {p.files[0]:45s} {'present' if here else 'absent'}")
        print(f"    {p.pretraining}; from {p.source}")
    return 0


def main(args) -> int:
    return cmd_check(args) if args.action == "check" else cmd_list(args)


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="check what a pretrained weights file or name would load "
                       "(exit 1 when incomplete), or list the published names")
    p.add_argument("action", choices=("check", "list"))
    p.add_argument("weights", nargs="?", help="for check: a published name or a file")
    p.add_argument("--encoder", default=None, help="encoder name (default: the published name's)")
    p.add_argument("--width", type=int, default=32, help="tiny encoder width (default 32)")
    p.set_defaults(func=lambda a: main(a) if a.action == "list" or a.weights else _needs_weights())


def _needs_weights() -> int:
    raise ValueError("weights check: name the weights, e.g. weights check coco-deeplabv2-resnet101")
