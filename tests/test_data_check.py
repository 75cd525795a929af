"""Bad input through the readers and through `python -m unisemi data check`, on all seven sources.

Every case must give a one-line error naming the file and what was expected, from
`list_pairs` / `read_pair` and, as a problem line with a non-zero exit code, from `data check`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import fixtures_real as fx  # tests/ is on sys.path, as for conftest
import numpy as np
import pytest

from unisemi.cli import main
from unisemi.data.check import check_dataset, check_pair, report_dict, sample
from unisemi.data.sources import SOURCES, SourceError
from unisemi.data.sources.errors import LabelValueError, UnpairedError

REPO = Path(__file__).resolve().parents[1]


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


_NEEDS = {"cityscapes": "cityscapesscripts", "gta5": "cityscapesscripts", "synthia": "png"}
NAMES = [pytest.param(n, marks=pytest.mark.skipif(_missing(_NEEDS[n]), reason="pip install 'unisemi[data]'"))
         if n in _NEEDS else n for n in sorted(SOURCES)]

# The folder (or, for VOC, the list file) that holds one side of the train split, and the words of
# its error; removing it is "a missing split folder".
SPLIT_PART = {
    "cityscapes": ("leftImg8bit/train", r"\(expected <city>/<city>_<seq>_<frame>_leftImg8bit\.png files\)"),
    "camvid": ("trainannot", r"\(expected grey <name>\.png labels\)"),
    "idd": ("gtFine/train", r"\(expected <drive>/<id>_gtFine_labellevel3Ids\.png files"),
    "sunrgbd": ("label37/train", r"\(expected <8 digits>\.png labels\)"),
    "pascal_voc": ("VOC2012/ImageSets/Segmentation/train.txt", r"\(expected one image id per line"),
    "gta5": ("labels", r"\(expected <5 digits>\.png labels\)"),
    "synthia": ("GT/LABELS", r"\(expected 16-bit <7 digits>\.png labels\)"),
}
# A raw label value each dataset's table does not define.
BAD_VALUE = {"cityscapes": 34, "camvid": 12, "idd": 26, "sunrgbd": 38, "pascal_voc": 21, "gta5": 34,
             "synthia": 23}
RECURSIVE = {"cityscapes": "leftImg8bit/train", "idd": "leftImg8bit/train"}  # walked below the split


def tree(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    fx.BUILDERS[name](root)
    return root


def write_label(name: str, path: Path, raw: np.ndarray) -> None:
    if name == "synthia":
        fx.write_rgb16(path, raw, np.zeros_like(raw))
    else:
        fx.write_grey(path, raw)


def first_pair(name: str, root: Path) -> tuple[Path, Path]:
    return SOURCES[name].list_pairs(root, "train")[0]


@contextmanager
def one_line_error(match: str):
    """A SourceError whose message is one line and contains the regex `match`."""
    with pytest.raises(SourceError, match=match) as info:
        yield info
    assert "\n" not in str(info.value)


def run_check(capsys, name: str, root: Path, *extra: str) -> tuple[int, str]:
    rc = main(["data", "check", name, str(root), "--split", "train", *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out + err


def assert_reported(capsys, name, root, kind: str, match: str) -> str:
    rc, out = run_check(capsys, name, root)
    assert rc == 1
    assert re.search(rf"\[{kind}\] .*{match}", out), out
    return out


# ----------------------------------------------------------------------------------------------
# the eight bad inputs, each through the reader and through data check

@pytest.mark.parametrize("name", NAMES)
def test_missing_root(tmp_path, capsys, name):
    match = rf"root {re.escape(str(tmp_path / 'nowhere'))} does not exist \(expected a folder holding"
    with one_line_error(match):
        SOURCES[name].list_pairs(tmp_path / "nowhere", "train")
    assert_reported(capsys, name, tmp_path / "nowhere", "root", match)


@pytest.mark.parametrize("name", NAMES)
def test_root_is_a_file(tmp_path, capsys, name):
    (tmp_path / "afile").write_text("not a folder")
    match = r"root .*afile is a file \(expected a folder holding"
    with one_line_error(match):
        SOURCES[name].list_pairs(tmp_path / "afile", "train")
    assert_reported(capsys, name, tmp_path / "afile", "root", match)


@pytest.mark.parametrize("name", NAMES)
def test_missing_split_folder(tmp_path, capsys, name):
    root = tree(tmp_path, name)
    part, expected = SPLIT_PART[name]
    target = root / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    match = rf"{re.escape(str(target))} is missing {expected}"
    with one_line_error(match):
        SOURCES[name].list_pairs(root, "train")
    assert_reported(capsys, name, root, "listing", match)


@pytest.mark.parametrize("name", NAMES)
def test_image_without_label(tmp_path, capsys, name):
    root = tree(tmp_path, name)
    image, label = first_pair(name, root)
    n = len(SOURCES[name].list_pairs(root, "train"))
    label.unlink()
    match = rf"image {re.escape(str(image))} has no label \(expected {re.escape(str(label))}\)"
    with one_line_error(match) as info:
        SOURCES[name].list_pairs(root, "train")
    assert isinstance(info.value, UnpairedError) and len(info.value.pairs) == n - 1
    out = assert_reported(capsys, name, root, "unpaired", match)
    assert f"split train: {n - 1} pairs" in out  # the rest is still checked


@pytest.mark.parametrize("name", NAMES)
def test_label_with_unknown_values(tmp_path, capsys, name):
    root = tree(tmp_path, name)
    image, label = first_pair(name, root)
    h, w = SOURCES[name].read_pair(image, label)[1].shape
    write_label(name, label, fx.stripes(h, w, (0, BAD_VALUE[name])))
    match = rf"{re.escape(str(label))}: label values {BAD_VALUE[name]} are not in the .* table \(expected "
    with one_line_error(match):
        SOURCES[name].read_pair(image, label)
    out = assert_reported(capsys, name, root, "label_values", match)
    assert f"out-of-table label values: {BAD_VALUE[name]} (1 file)" in out


@pytest.mark.parametrize("name", NAMES)
def test_size_mismatch(tmp_path, capsys, name):
    root = tree(tmp_path, name)
    image, label = first_pair(name, root)
    h, w = SOURCES[name].read_pair(image, label)[1].shape
    write_label(name, label, np.zeros((h, w + 1), dtype=np.uint16))  # 0 is a known value everywhere
    match = (rf"{re.escape(str(label))}: label is {w + 1}x{h} but image {re.escape(str(image))} "
             rf"is {w}x{h} \(expected the same size")
    with one_line_error(match):
        SOURCES[name].read_pair(image, label)
    assert_reported(capsys, name, root, "size_mismatch", match)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_png(tmp_path, capsys, name, damage):
    root = tree(tmp_path, name)
    image, label = first_pair(name, root)
    data = label.read_bytes()
    label.write_bytes(b"\x89PNG not really" if damage == "garbage" else data[: len(data) // 2])
    match = rf"{re.escape(str(label))}: (unreadable or truncated|decoded)"
    with one_line_error(match):
        SOURCES[name].read_pair(image, label)
    assert_reported(capsys, name, root, "unreadable", match)


@pytest.mark.parametrize("name", NAMES)
def test_symlink_loop_as_a_file(tmp_path, capsys, name):
    root = tree(tmp_path, name)
    image, label = first_pair(name, root)
    label.unlink()
    label.symlink_to(label.name)  # points at itself
    match = rf"{re.escape(str(label))}: file is a symlink loop or a broken symlink \(expected an? "
    assert first_pair(name, root) == (image, label)  # listed: the error comes when it is read
    with one_line_error(match):
        SOURCES[name].read_pair(image, label)
    assert_reported(capsys, name, root, "unreadable", match)


@pytest.mark.parametrize("name", NAMES)
def test_symlink_loop_as_the_split_folder(tmp_path, capsys, name):
    root = tree(tmp_path, name)
    target = root / SPLIT_PART[name][0]
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.symlink_to(target.name)
    match = rf"{re.escape(str(target))} is a symlink loop or a broken symlink \(expected "
    with one_line_error(match):
        SOURCES[name].list_pairs(root, "train")
    assert_reported(capsys, name, root, "listing", match)


@pytest.mark.parametrize("name", NAMES)
def test_symlink_loop_inside_a_split_folder(tmp_path, capsys, name):
    root = tree(tmp_path, name)
    before = SOURCES[name].list_pairs(root, "train")
    image_dir = first_pair(name, root)[0].parent
    (image_dir / "back").symlink_to(image_dir.parent if name in RECURSIVE else image_dir)
    if name in RECURSIVE:  # the walk would never end: an error naming both folders
        match = rf"folder .*back is the same folder as {re.escape(str(root / RECURSIVE[name]))} \(a symlink loop"
        with one_line_error(match):
            SOURCES[name].list_pairs(root, "train")
        assert_reported(capsys, name, root, "listing", match)
    else:  # a flat layout never descends, so the loop is harmless and the listing unchanged
        assert SOURCES[name].list_pairs(root, "train") == before


# ----------------------------------------------------------------------------------------------
# the checker itself

def test_clean_tree_passes_with_its_own_counts(tmp_path, capsys):
    root = tree(tmp_path, "camvid")
    rc, out = run_check(capsys, "camvid", root, "--expect", "train=3")
    assert rc == 0 and out.rstrip().endswith("no problems")
    assert "split train: 3 pairs (expected 3), 3 decoded" in out


def test_count_against_published_counts(tmp_path):
    root = tree(tmp_path, "camvid")
    reports = check_dataset("camvid", root)  # every split with a published count
    assert [(r.split, r.pairs, r.expected) for r in reports] == [("train", 3, 367), ("val", 1, 101),
                                                                 ("test", 1, 233)]
    assert [p["kind"] for r in reports for p in r.problems] == ["count"] * 3
    assert "camvid train: 3 pairs under" in reports[0].problems[0]["message"]
    assert "expected 367" in reports[0].problems[0]["message"]


def test_every_unpaired_file_is_listed(tmp_path):
    root = tree(tmp_path, "camvid")
    for name in fx.CAMVID_NAMES["train"][:2]:
        (root / "trainannot" / f"{name}.png").unlink()
    fx.write_grey(root / "trainannot" / "orphan.png", np.zeros((4, 4)))
    (report,) = check_dataset("camvid", root, ["train"], {"train": 1})
    lines = [p["message"] for p in report.problems if p["kind"] == "unpaired"]
    assert len(lines) == 3 and report.pairs == 1 and report.decoded == 1
    assert re.search(r"label .*trainannot/orphan\.png has no image \(expected .*train/orphan\.png\)", lines[2])


def test_histogram_counts_mapped_pixels(tmp_path):
    root = tmp_path / "camvid"
    raws = fx.camvid_tree(root)["raw"]
    (report,) = check_dataset("camvid", root, ["train"])
    raw = np.concatenate([raws[k].ravel() for k in raws if k.startswith("train/")])
    for class_id in range(11):
        assert report.histogram[class_id] == np.sum(raw == class_id)
    assert report.histogram[255] == np.sum(raw == 11)  # void
    assert report.histogram.sum() == raw.size
    hist = report_dict("camvid", root, [report])["splits"][0]["histogram"]
    assert hist["sky"] == np.sum(raw == 0) and hist["void"] == np.sum(raw == 11)


def test_workers_give_the_same_report(tmp_path):
    root = tree(tmp_path, "camvid")
    _, label = first_pair("camvid", root)
    fx.write_grey(label, np.full((9, 12), 99))
    one = report_dict("camvid", root, check_dataset("camvid", root, ["train"], workers=1))
    two = report_dict("camvid", root, check_dataset("camvid", root, ["train"], workers=2))
    assert one == two and one["problems"] == 2  # the count and the label values
    assert one["splits"][0]["bad_values"] == {"99": 1}


def test_max_files_samples_evenly(tmp_path):
    assert sample(list(range(10)), 3) == [0, 4, 9] and sample([1, 2], 5) == [1, 2]
    root = tree(tmp_path, "camvid")
    (report,) = check_dataset("camvid", root, ["train"], max_files=2)
    assert report.pairs == 3 and report.decoded == 2


def test_json_output(tmp_path, capsys):
    root = tree(tmp_path, "camvid")
    rc = main(["data", "check", "camvid", str(root), "--split", "val", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1 and data["dataset"] == "camvid" and data["problems"] == 1
    assert data["splits"][0]["pairs"] == 1 and data["splits"][0]["problems"][0]["kind"] == "count"


def test_usage_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "check", "kitti", str(tmp_path)]) == 2
    assert "error: unknown dataset 'kitti' (known: camvid" in capsys.readouterr().err
    assert main(["data", "check", "camvid", str(tmp_path), "--workers", "0"]) == 2
    assert "error: --workers 0: expected a count >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "check", "camvid", str(tmp_path), "--expect", "train"])
    assert "expected SPLIT=COUNT" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    root = tree(tmp_path, "camvid")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ok = subprocess.run([sys.executable, "-m", "unisemi", "data", "check", "camvid", str(root),
                         "--expect", "train=3", "--expect", "val=1", "--expect", "test=1", "--workers", "2"],
                        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "no problems" in ok.stdout and "void (255)" in ok.stdout


# ----------------------------------------------------------------------------------------------
# check_pair, for the training pipeline

def test_check_pair_returns_the_pair_or_names_the_file(tmp_path):
    root = tree(tmp_path, "camvid")
    image, label = first_pair("camvid", root)
    got = check_pair("camvid", image, label)
    want = SOURCES["camvid"].read_pair(image, label)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    label.unlink()
    with one_line_error(rf"{re.escape(str(label))}: file is missing"):
        check_pair("camvid", image, label)


def test_check_pair_enforces_the_output_contract():
    def fake(image, label):
        return types.SimpleNamespace(CLASSES=("a", "b"), read_pair=lambda i, l: (image, label))
    rgb = np.zeros((2, 3, 3), np.uint8)
    with one_line_error(r"lbl\.png: mapped label values \[2, 7\] are not train ids \(expected 0\.\.1 and 255\)") as e:
        check_pair(fake(rgb, np.array([[0, 2, 7], [255, 1, 0]], np.uint8)), "img.png", "lbl.png")
    assert isinstance(e.value, LabelValueError) and e.value.values == [2, 7]
    with one_line_error(r"img\.png: decoded to float32 \(2, 3, 3\) \(expected a uint8 \(H, W, 3\) image\)"):
        check_pair(fake(rgb.astype(np.float32), np.zeros((2, 3), np.uint8)), "img.png", "lbl.png")
    with one_line_error(r"lbl\.png: label decoded to uint8 \(3, 2\) \(expected uint8 \(2, 3\)"):
        check_pair(fake(rgb, np.zeros((3, 2), np.uint8)), "img.png", "lbl.png")


def test_published_list_checked_against_the_tree(tmp_path, capsys):
    root = tree(tmp_path, "camvid")
    lst = tmp_path / "labeled.txt"
    # UniMatch-style: the label column names a preprocessed file the source does not read.
    lst.write_text("train/Seq05VD_f00000.png trainannot_ids/Seq05VD_f00000.png\n"
                   "train/0001TP_006690.png trainannot_ids/0001TP_006690.png")
    rc, out = run_check(capsys, "camvid", root, "--list", str(lst), "--expect", "train=2")
    assert rc == 0 and f"split train listed in {lst}: 2 pairs (expected 2), 2 decoded" in out
    lst.write_text("train/0001TP_006690.png x\ntrain/nope.png x\n")
    rc, out = run_check(capsys, "camvid", root, "--list", str(lst))
    assert rc == 1 and re.search(r"\[listing\] .*labeled\.txt:2: image .*train/nope\.png is not one of "
                                 r"the 3 images of the split", out)
    assert main(["data", "check", "camvid", str(root), "--list", str(lst)]) == 2
    assert "expected exactly one --split" in capsys.readouterr().err
