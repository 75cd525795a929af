"""File-level splits of the real datasets: counts from ratios, seeded portable splits, split lists."""
from __future__ import annotations

import math
import os
import random
from fractions import Fraction
from pathlib import Path

import fixtures_real as fx  # tests/ is on sys.path, as for conftest
import pytest

from unisemi.data.sources import SourceError, camvid
from unisemi.data.splits import (
    count_from_ratio,
    file_split,
    pairs_from_list,
    pairs_split,
    read_split_list,
    split_hash,
    write_split_lists,
)

# Every published labelled count (datasets.md section 7): the contrastive paper's configs and the
# CPS / UniMatch split files.
PUBLISHED = [(2975, 30, 100), (2975, 8, 372), (2975, 4, 744), (10582, 50, 212), (10582, 20, 530),
             (10582, 8, 1323), (2975, 16, 186), (2975, 2, 1488), (10582, 16, 662), (10582, 4, 2646)]


@pytest.mark.parametrize("pool, r, count", PUBLISHED)
def test_count_from_ratio_matches_published_counts(pool, r, count):
    assert count_from_ratio(pool, 1 / r) == count
    assert count_from_ratio(pool, f"1/{r}") == count
    assert count_from_ratio(pool, Fraction(1, r)) == count


def test_count_from_ratio_is_exact_where_floats_are_not():
    # 297 * (1/99) is 3.0000000000000004 in floats, so a float ceil would say 4.
    assert math.ceil(297 * (1 / 99)) == 4
    assert count_from_ratio(297, 1 / 99) == 3
    assert count_from_ratio(5285, 0.28) == 1480  # 0.28 read as 7/25: 1479.8 -> 1480
    assert count_from_ratio(10, 1.0) == 10 and count_from_ratio(0, 1 / 8) == 0


@pytest.mark.parametrize("ratio", [0, -0.5, 1.5, "2/1", "one third"])
def test_count_from_ratio_rejects_bad_ratios(ratio):
    with pytest.raises(ValueError, match=r"labelled ratio .*expected a fraction"):
        count_from_ratio(100, ratio)


NAMES = [f"img_{i:02d}.png" for i in range(10)]


def test_file_split_pinned_value():
    # RandomState's streams are frozen by numpy's compatibility policy, so this split is the same
    # on every machine and numpy version: permutation(10) under seed 0 starts 2, 8, 4.
    labelled, unlabelled = file_split(NAMES, 3, split_seed=0)
    assert labelled == ["img_02.png", "img_04.png", "img_08.png"]
    assert unlabelled == sorted(set(NAMES) - set(labelled))


def test_file_split_ignores_input_order_and_partitions():
    shuffled = NAMES[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != NAMES
    for seed in (0, 1, 2):
        a, b = file_split(NAMES, 4, seed), file_split(shuffled, 4, seed)
        assert a == b
        assert len(a[0]) == 4 and sorted(a[0] + a[1]) == NAMES
        assert a[0] == sorted(a[0]) and a[1] == sorted(a[1])
    assert len({tuple(file_split(NAMES, 4, s)[0]) for s in (0, 1, 2)}) == 3  # three distinct splits


def test_file_split_sorts_by_code_point_not_locale():
    # Code points put "B" (66) before "a" (97); a case-folding sort would not.
    assert file_split(["a", "B", "c"], 1, split_seed=1)[0] == ["B"]  # permutation(3) under seed 1 starts 0


def test_file_split_edges_and_errors():
    assert file_split(NAMES, 0, 0) == ([], NAMES)
    assert file_split(NAMES, 10, 0) == (NAMES, [])
    for n in (-1, 11):
        with pytest.raises(ValueError, match=rf"{n} labelled files requested from a pool of 10 \(expected 0\.\.10\)"):
            file_split(NAMES, n, 0)
    with pytest.raises(ValueError, match=r"'img_01\.png' appears twice"):
        file_split(NAMES + ["img_01.png"], 2, 0)


def _pairs(tmp_path: Path, names) -> list[tuple[Path, Path]]:
    pairs = []
    for name in names:
        image, label = tmp_path / "img" / name, tmp_path / "lbl" / name
        for p in (image, label):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
        pairs.append((image, label))
    return pairs


def test_pairs_split_is_keyed_by_path_relative_to_root(tmp_path):
    a, b = tmp_path / "mount_a", tmp_path / "elsewhere" / "mount_b"
    pa, pb = _pairs(a, NAMES), _pairs(b, reversed(NAMES))
    la, ua = pairs_split(pa, 3, 0, a)
    lb, _ = pairs_split(pb, 3, 0, b)
    assert [i.relative_to(a) for i, _ in la] == [i.relative_to(b) for i, _ in lb]
    assert [i.name for i, _ in la] == file_split(NAMES, 3, 0)[0]
    assert all(i.name == l.name for i, l in la + ua) and len(ua) == 7
    with pytest.raises(ValueError, match=r"is not under the dataset root"):
        pairs_split(pa, 3, 0, b)


def test_split_lists_round_trip(tmp_path):
    pairs = _pairs(tmp_path, NAMES)
    labelled, unlabelled = pairs_split(pairs, 3, 1, tmp_path)
    lab_file, unl_file = write_split_lists(tmp_path / "splits" / "1_3", labelled, unlabelled, tmp_path)
    assert (lab_file.name, unl_file.name) == ("labeled.txt", "unlabeled.txt")
    first = labelled[0][0].name
    assert lab_file.read_text().splitlines()[0] == f"img/{first} lbl/{first}"
    assert sorted(os.listdir(lab_file.parent)) == ["labeled.txt", "unlabeled.txt"]  # no temp files left
    assert read_split_list(lab_file, tmp_path) == labelled
    assert read_split_list(unl_file, tmp_path) == unlabelled
    # The labelled list's hash does not depend on where the dataset lives.
    assert split_hash(i.relative_to(tmp_path).as_posix() for i, _ in labelled) == \
        split_hash(f"img/{n}" for n in file_split(NAMES, 3, 1)[0])


def test_read_unimatch_list_without_final_newline_and_cps_list(tmp_path):
    pairs = _pairs(tmp_path, ["a.png", "b.png"])
    uni = tmp_path / "labeled.txt"
    uni.write_text("img/b.png lbl/b.png\nimg/a.png lbl/a.png")  # file order kept, no final newline
    assert read_split_list(uni, tmp_path) == [pairs[1], pairs[0]]
    cps = tmp_path / "train_aug_labeled_1-8.txt"
    cps.write_text("/img/a.png\t/lbl/a.png\n\n/img/b.png\t/lbl/b.png\n")
    assert read_split_list(cps, tmp_path) == pairs


def test_camvid_fixture_split_round_trip(tmp_path):
    fx.camvid_tree(tmp_path)
    pairs = camvid.list_pairs(tmp_path, "train")
    labelled, unlabelled = pairs_split(pairs, 1, 0, tmp_path)
    write_split_lists(tmp_path / "splits", labelled, unlabelled, tmp_path)
    assert read_split_list(tmp_path / "splits" / "labeled.txt", tmp_path) == labelled
    assert sorted(labelled + read_split_list(tmp_path / "splits" / "unlabeled.txt", tmp_path)) == pairs


def test_read_split_list_errors_name_file_and_line(tmp_path):
    _pairs(tmp_path, ["a.png"])
    lst = tmp_path / "labeled.txt"
    with pytest.raises(SourceError, match=r"split list .*labeled\.txt is missing"):
        read_split_list(lst, tmp_path)
    lst.write_text("img/a.png lbl/a.png\n\nimg/zz.png lbl/zz.png\n")
    with pytest.raises(SourceError, match=rf"labeled\.txt:3: image {tmp_path}/img/zz\.png is missing "
                                          r"\(expected the listed file under the dataset root"):
        read_split_list(lst, tmp_path)
    lst.write_text("img/a.png lbl/missing.png")
    with pytest.raises(SourceError, match=r"labeled\.txt:1: label .*lbl/missing\.png is missing"):
        read_split_list(lst, tmp_path)
    lst.write_text("img/a.png lbl/a.png\nimg/a.png\n")
    with pytest.raises(SourceError, match=r"labeled\.txt:2: 1 field\(s\) in 'img/a\.png' \(expected '<image> <label>'"):
        read_split_list(lst, tmp_path)
    lst.write_text("img/a.png lbl/a.png extra\n")
    with pytest.raises(SourceError, match=r"labeled\.txt:1: 3 field\(s\)"):
        read_split_list(lst, tmp_path)
    lst.write_text("img/a.png lbl/a.png\nimg/a.png lbl/a.png\n")
    with pytest.raises(SourceError, match=r"labeled\.txt:2: img/a\.png is already listed on line 1"):
        read_split_list(lst, tmp_path)
    with pytest.raises(SourceError, match=r"dataset root .*nowhere is not a folder"):
        read_split_list(lst, tmp_path / "nowhere")


def test_write_split_lists_rejects_unwritable_paths(tmp_path):
    (spaced,) = _pairs(tmp_path, ["a b.png"])
    with pytest.raises(ValueError, match=r"path 'img/a b\.png' contains whitespace"):
        write_split_lists(tmp_path / "out", [spaced], [], tmp_path)
    with pytest.raises(ValueError, match=r"is not under the dataset root"):
        write_split_lists(tmp_path / "out", [spaced], [], tmp_path / "img" / "sub")
    assert not (tmp_path / "out" / "labeled.txt").exists()


def test_pairs_from_list_uses_the_sources_own_labels(tmp_path):
    fx.camvid_tree(tmp_path)
    pairs = camvid.list_pairs(tmp_path, "train")
    lst = tmp_path / "labeled.txt"
    # The label column names a file that does not exist (a preprocessed label): only images count.
    lst.write_text("/train/Seq05VD_f00000.png\t/trainIds/x.png\n/train/0001TP_006690.png\t/trainIds/y.png\n")
    assert pairs_from_list(pairs, lst, tmp_path) == [pairs[2], pairs[0]]
    with pytest.raises(SourceError, match=r"label .*trainIds/x\.png is missing"):
        read_split_list(lst, tmp_path)
    lst.write_text("train/0001TP_006690.png a\nval/0016E5_07959.png b\n")
    with pytest.raises(SourceError, match=r"labeled\.txt:2: image .*val/0016E5_07959\.png is not one of "
                                          r"the 3 images of the split under"):
        pairs_from_list(pairs, lst, tmp_path)
