"""`python -m unisemi data check DATASET ROOT`: is a dataset tree complete, paired and readable?

For each split it lists the pairs through the dataset's source (unisemi/data/sources), compares
the count with the published one (`EXPECTED`), names every unpaired image and label, then decodes
every pair (or an evenly spaced sample, `--max-files`) the way training will, and reports
unreadable or truncated files, labels of the wrong kind, label values outside the dataset's table
and image/label size mismatches, plus a histogram of the mapped labels (pixels per train class
and void). Exit code 0 when nothing is wrong, 1 otherwise.

`check_pair` is the same per-file check for a training pipeline to call lazily: it returns the
decoded pair or raises a one-line SourceError naming the file and what was expected.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unisemi.data.labels import IGNORE_INDEX
from unisemi.data.sources import get_source
from unisemi.data.sources.errors import (
    LabelFormatError,
    LabelValueError,
    SizeMismatchError,
    SourceError,
    UnpairedError,
    UnreadableError,
)
from unisemi.data.splits import pairs_from_list

# Problem kinds in report order; a pair's error class decides its kind.
KINDS = ("root", "listing", "count", "unpaired", "unreadable", "label_format", "label_values",
         "size_mismatch", "other")
_ERROR_KINDS = ((UnreadableError, "unreadable"), (LabelFormatError, "label_format"),
                (LabelValueError, "label_values"), (SizeMismatchError, "size_mismatch"))


def check_pair(source, image_path, label_path, **read_options) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair through its source and check what training relies on: uint8 (H, W, 3)
    image, uint8 (H, W) label of train ids and 255. Raises SourceError naming the file."""
    source = get_source(source) if isinstance(source, str) else source
    image, label = source.read_pair(image_path, label_path, **read_options)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UnreadableError(f"{image_path}: decoded to {image.dtype} {image.shape} "
                              "(expected a uint8 (H, W, 3) image)")
    if label.dtype != np.uint8 or label.shape != image.shape[:2]:
        raise SizeMismatchError(f"{label_path}: label decoded to {label.dtype} {label.shape} "
                                f"(expected uint8 {image.shape[:2]}, the image's size)")
    # SYNTHIA's `classes` option is the class count of the chosen subset.
    n_classes = read_options.get("classes", len(source.CLASSES))
    outside = (label >= n_classes) & (label != IGNORE_INDEX)
    if outside.any():
        values = sorted(int(v) for v in np.unique(label[outside]))
        raise LabelValueError(f"{label_path}: mapped label values {values} are not train ids "
                              f"(expected 0..{n_classes - 1} and {IGNORE_INDEX})", values)
    return image, label


@dataclass
class SplitReport:
    split: str
    pairs: int | None = None        # pairs listed; None when the split could not be listed
    expected: int | None = None     # the published count (or --expect), None when there is none
    decoded: int = 0
    problems: list[dict] = field(default_factory=list)   # {"kind", "message"[, "image", "label"]}
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    bad_values: dict = field(default_factory=dict)       # out-of-table value -> files holding it
    split_list: str | None = None   # the labeled.txt-style list the pairs were taken from, if any

    def add(self, kind: str, message: str) -> None:
        self.problems.append({"kind": kind, "message": message})


def _kind(exc: SourceError) -> str:
    # "other": a fault that is not the file's, such as a missing optional dependency.
    return next((kind for cls, kind in _ERROR_KINDS if isinstance(exc, cls)), "other")


def _check_task(task) -> tuple[dict | None, np.ndarray | None]:
    """(problem, None) or (None, label histogram) for one pair; runs in a worker process."""
    name, image, label = task
    try:
        _, lbl = check_pair(name, image, label)
    except SourceError as exc:
        return {"kind": _kind(exc), "message": str(exc), "image": str(image), "label": str(label),
                "values": [str(v) for v in getattr(exc, "values", [])]}, None
    return None, np.bincount(lbl.ravel(), minlength=256)


def sample(pairs: list, max_files: int | None) -> list:
    """Every pair, or `max_files` evenly spaced ones, so a quick check still touches every folder."""
    if max_files is None or max_files >= len(pairs):
        return pairs
    picks = np.unique(np.linspace(0, len(pairs) - 1, max(max_files, 1)).round().astype(int))
    return [pairs[i] for i in picks]


def check_split(name: str, root, split: str, expected: int | None, max_files: int | None = None,
                workers: int = 1, split_list=None) -> SplitReport:
    """Listing, count and decoding of one split; with `split_list`, only the pairs of the split
    whose image the list names (a published labeled.txt checked against this tree)."""
    report = SplitReport(split, expected=expected,
                         split_list=None if split_list is None else str(split_list))
    try:
        pairs = get_source(name).list_pairs(root, split)
    except UnpairedError as exc:
        pairs = exc.pairs
        for line in exc.unpaired:
            report.add("unpaired", line)
    except SourceError as exc:
        report.add("listing", str(exc))
        return report
    if split_list is not None:
        try:
            pairs = pairs_from_list(pairs, split_list, root)
        except SourceError as exc:
            report.add("listing", str(exc))
            return report
    report.pairs = len(pairs)
    if expected is not None and len(pairs) != expected:
        report.add("count", f"{name} {split}: {len(pairs)} pairs under {root}, expected {expected} "
                            f"(files missing or extra; pass --expect {split}={len(pairs)} for a "
                            "deliberate subset)")
    _decode(report, name, sample(pairs, max_files), workers)
    return report


def _decode(report: SplitReport, name: str, pairs: list, workers: int) -> None:
    tasks = [(name, image, label) for image, label in pairs]
    if workers > 1 and len(tasks) > 1:
        # fork where there is one: a spawned worker would import numpy, PIL and (through
        # unisemi.data) torch again, seconds per worker before it decodes anything.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(min(workers, len(tasks))) as pool:
            _collect(report, pool.imap(_check_task, tasks, chunksize=4), len(tasks))
    else:
        _collect(report, map(_check_task, tasks), len(tasks))


def _collect(report: SplitReport, results, total: int) -> None:
    show_progress = sys.stderr.isatty() and total >= 100
    for i, (problem, hist) in enumerate(results, start=1):
        if problem is None:
            report.histogram += hist
        else:
            for value in problem.pop("values"):
                report.bad_values[value] = report.bad_values.get(value, 0) + 1
            report.problems.append(problem)
        report.decoded = i
        if show_progress and (i % 100 == 0 or i == total):
            end = "" if i < total else "\n"
            print(f"\r  {report.split}: decoded {i}/{total}", end=end, file=sys.stderr)


def check_dataset(name: str, root, splits=None, expect: dict | None = None,
                  max_files: int | None = None, workers: int = 1, split_list=None) -> list[SplitReport]:
    """One report per split (default: every split with a published count). `split_list` needs
    exactly one split; its count is checked only against `expect`."""
    source = get_source(name)
    splits = list(splits or source.EXPECTED)
    if split_list is not None and len(splits) != 1:
        raise ValueError(f"--list {split_list}: expected exactly one --split (the split its images "
                         "belong to), e.g. --split train")
    counts = {**({} if split_list is not None else source.EXPECTED), **(expect or {})}
    if not Path(root).is_dir():
        # A missing root, a file or a looping link: every split would say the same thing once.
        report = SplitReport("(root)")
        try:
            source.list_pairs(root, splits[0])
        except SourceError as exc:
            report.add("root", str(exc))
        else:  # not reached with the current sources; never let a bad root pass silently
            report.add("root", f"{name}: root {root} is not a folder (expected the dataset's folder)")
        return [report]
    return [check_split(name, root, split, counts.get(split), max_files, workers, split_list)
            for split in splits]


def problem_count(reports: list[SplitReport]) -> int:
    return sum(len(r.problems) for r in reports)


# ----------------------------------------------------------------------------------------------
# output

def format_report(name: str, root, reports: list[SplitReport], show: int = 20) -> str:
    classes = get_source(name).CLASSES
    lines = [f"data check {name} {root}"]
    for r in reports:
        if r.pairs is not None:
            published = "no published count" if r.expected is None else f"expected {r.expected}"
            listed = f" listed in {r.split_list}" if r.split_list else ""
            lines.append(f"split {r.split}{listed}: {r.pairs} pairs ({published}), {r.decoded} decoded")
        elif r.split != "(root)":
            lines.append(f"split {r.split}: not listed")
        lines += _problem_lines(r, show)
        if r.bad_values:
            shown = ", ".join(f"{v} ({n} file{'s' if n > 1 else ''})" for v, n in
                              sorted(r.bad_values.items(), key=lambda item: (len(item[0]), item[0])))
            lines.append(f"  out-of-table label values: {shown}")
    lines += _histogram_lines([r for r in reports if r.histogram.sum()], classes)
    total = problem_count(reports)
    by_kind = {k: sum(p["kind"] == k for r in reports for p in r.problems) for k in KINDS}
    summary = ", ".join(f"{n} {k}" for k, n in by_kind.items() if n)
    lines.append(f"{total} problem{'s' if total != 1 else ''}: {summary}" if total else "no problems")
    return "\n".join(lines)


def _problem_lines(r: SplitReport, show: int) -> list[str]:
    lines = []
    for kind in KINDS:
        messages = [p["message"] for p in r.problems if p["kind"] == kind]
        lines += [f"  [{kind}] {m}" for m in messages[:show]]
        if len(messages) > show:
            lines.append(f"  [{kind}] ... and {len(messages) - show} more (--show N, or --json for all)")
    return lines


def _histogram_lines(reports: list[SplitReport], classes) -> list[str]:
    """One table, a column per split: pixels of each train class and of void in the decoded
    labels, and their share of the split's pixels. Absent classes are marked: in a full split
    that usually means a wrong label encoding."""
    if not reports:
        return []
    names = [*classes, f"void ({IGNORE_INDEX})"]
    width = max(len(n) for n in names)
    lines = ["label histogram (pixels and share of each split's decoded label pixels):",
             "  " + " " * width + "".join(f"  {r.split:>19}" for r in reports)]
    totals = [int(r.histogram.sum()) for r in reports]
    for index, class_name in zip([*range(len(classes)), IGNORE_INDEX], names):
        cells = []
        for r, total in zip(reports, totals):
            count = int(r.histogram[index])
            cells.append(f"  {count:>12} {100 * count / total:5.1f}%" if count or index == IGNORE_INDEX
                         else f"  {'absent':>19}")
        lines.append(f"  {class_name:<{width}}" + "".join(cells))
    return lines


def report_dict(name: str, root, reports: list[SplitReport]) -> dict:
    classes = get_source(name).CLASSES
    return {"dataset": name, "root": str(root), "problems": problem_count(reports), "splits": [
        {"split": r.split, "split_list": r.split_list, "pairs": r.pairs, "expected": r.expected,
         "decoded": r.decoded,
         "problems": r.problems, "bad_values": r.bad_values,
         "histogram": {**{c: int(r.histogram[i]) for i, c in enumerate(classes)},
                       "void": int(r.histogram[IGNORE_INDEX])}}
        for r in reports]}


# ----------------------------------------------------------------------------------------------
# command line

def _expect_arg(text: str) -> tuple[str, int]:
    split, _, count = text.partition("=")
    if not split or not count.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}': expected SPLIT=COUNT, e.g. train=2975")
    return split, int(count)


def add_parser(sub) -> None:
    """`data check ...` under the main parser's subcommands."""
    data = sub.add_parser("data", help="check a real dataset tree (python -m unisemi data check -h)")
    actions = data.add_subparsers(dest="data_command", required=True)
    chk = actions.add_parser("check", help="counts, pairing, decoding and label values of a dataset")
    chk.add_argument("dataset", help="source name (cityscapes, camvid, idd, sunrgbd, pascal_voc, "
                     "gta5, synthia)")
    chk.add_argument("root", help="the dataset's root folder")
    chk.add_argument("--split", action="append", default=None, metavar="S",
                     help="check this split (repeatable; default: every split with a published count)")
    chk.add_argument("--max-files", type=int, default=None, metavar="K",
                     help="decode only K evenly spaced pairs per split (listing still covers all)")
    chk.add_argument("--workers", type=int, default=1, metavar="N", help="decoding processes (default 1)")
    chk.add_argument("--expect", action="append", type=_expect_arg, default=[], metavar="SPLIT=N",
                     help="expected pair count of a split instead of the published one (repeatable)")
    chk.add_argument("--list", default=None, metavar="FILE", dest="split_list",
                     help="check only the pairs a labeled.txt-style list names (UniMatch or CPS "
                     "lines; images matched against the one --split)")
    chk.add_argument("--show", type=int, default=20, metavar="N", help="problems shown per kind (default 20)")
    chk.add_argument("--json", action="store_true", help="print the report as JSON")
    chk.set_defaults(func=cmd_data_check)
    split = actions.add_parser("split", help="write the labelled split a run draws as labeled.txt / unlabeled.txt")
    split.add_argument("dataset", help="a real domain name (cityscapes, pascal_voc, ...)")
    split.add_argument("--root", default=None, help="the dataset's root (default: $UNISEMI_DATA/<dataset>)")
    how = split.add_mutually_exclusive_group(required=True)
    how.add_argument("--n", type=int, help="labelled images")
    how.add_argument("--fraction", type=float, help="labelled share of the pool, e.g. 0.0333 (ceil)")
    split.add_argument("--seed", type=int, default=0, help="data.split_seed (default 0)")
    split.add_argument("--out", required=True, help="folder for labeled.txt and unlabeled.txt")
    split.set_defaults(func=cmd_data_split)


def cmd_data_check(args) -> int:
    if args.max_files is not None and args.max_files < 1:
        raise ValueError(f"--max-files {args.max_files}: expected a count >= 1")
    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: expected a count >= 1")
    reports = check_dataset(args.dataset, args.root, args.split, dict(args.expect), args.max_files,
                            args.workers, args.split_list)
    if args.json:
        print(json.dumps(report_dict(args.dataset, args.root, reports), indent=1))
    else:
        print(format_report(args.dataset, args.root, reports, args.show))
    return 1 if problem_count(reports) else 0


def cmd_data_split(args) -> int:
    """Export exactly the split a run with these settings trains on, for reuse elsewhere."""
    from unisemi.config import load_config
    from unisemi.data import real
    from unisemi.data.splits import write_split_lists

    if args.dataset not in real.DATASETS:
        raise SourceError(f"unknown dataset '{args.dataset}' (known: {', '.join(real.DATASETS)})")
    sets = [f"data.split_seed={args.seed}", "data.check_counts=false"]
    sets.append(f"data.n_labelled={args.n}" if args.n is not None else f"data.labelled_fraction={args.fraction}")
    if args.root:
        sets.append(f"data.roots.{args.dataset}={args.root}")
    domain = real.load_real(load_config(None, sets).data, args.dataset)
    pick = lambda idx: [domain.train_pairs[i] for i in idx.tolist()]  # noqa: E731
    written = write_split_lists(args.out, pick(domain.labelled), pick(domain.unlabelled), domain.root)
    print(f"{domain.split_id}: {len(domain.labelled)} labelled + {len(domain.unlabelled)} unlabelled "
          f"(split_hash {domain.split_hash}) -> {', '.join(map(str, written))}")
    return 0
