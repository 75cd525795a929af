"""python -m unisemi.data.synthetic preview --domain city --out preview.png [--n 8] [--seed 0]
[--split train] [--size 128x256]"""
from __future__ import annotations

import argparse
import sys

from unisemi.data.synthetic import DOMAINS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m unisemi.data.synthetic")
    sub = p.add_subparsers(dest="command", required=True)
    pv = sub.add_parser("preview", help="write a PNG grid of images, label maps and a legend")
    pv.add_argument("--domain", required=True)
    pv.add_argument("--out", required=True)
    pv.add_argument("--n", type=int, default=8)
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--split", default="train")
    pv.add_argument("--size", default=None, help="HxW, e.g. 128x256")
    args = p.parse_args(argv)
    if args.domain not in DOMAINS:
        print(f"error: unknown domain '{args.domain}' (known: {', '.join(DOMAINS)})", file=sys.stderr)
        return 2
    size = None
    if args.size:
        try:
            size = tuple(int(v) for v in args.size.lower().split("x"))
            assert len(size) == 2
        except (ValueError, AssertionError):
            print(f"error: --size '{args.size}' is not HxW (e.g. 128x256)", file=sys.stderr)
            return 2
    from unisemi.data.synthetic.preview import preview
    try:
        preview(args.domain, args.out, args.n, args.seed, args.split, size)
    except ValueError as e:            # bad split, size or index: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
