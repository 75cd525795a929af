"""The real-dataset sources on tiny fixture trees in each dataset's on-disk layout."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unisemi.data.sources import SOURCES, SourceError, get_source  # noqa: E402
from unisemi.data.sources import (  # noqa: E402
    camvid, cityscapes, gta5, idd, pascal_voc, sunrgbd, synthia,
)
import fixtures_real as fx  # noqa: E402  (tests/ is on sys.path, as for conftest)


def _missing(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is None


# The `data` extra: Cityscapes and GTA5 need cityscapesscripts' table, SYNTHIA needs pypng.
needs_cs = pytest.mark.skipif(_missing("cityscapesscripts"), reason="pip install 'unisemi[data]'")
needs_png = pytest.mark.skipif(_missing("png"), reason="pip install 'unisemi[data]'")
NEEDS = {"cityscapes": needs_cs, "gta5": needs_cs, "synthia": needs_png}


def raises(match: str):
    """A SourceError whose one-line message matches `match`."""
    return pytest.raises(SourceError, match=match)


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def rel(pairs, root: Path) -> list[tuple[str, str]]:
    return [(i.relative_to(root).as_posix(), l.relative_to(root).as_posix()) for i, l in pairs]


def hand_map(raw: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """The expected mapping computed pixel by pixel (the sources use lookup tables)."""
    out = np.full(raw.shape, 255, dtype=np.uint8)
    for (r, c), v in np.ndenumerate(raw):
        out[r, c] = table.get(int(v), 255)
    return out


# ----------------------------------------------------------------------------------------------
# registry

def test_registry_names_and_surface():
    assert set(SOURCES) == {"cityscapes", "camvid", "idd", "sunrgbd", "pascal_voc", "gta5", "synthia"}
    for name, module in SOURCES.items():
        assert module.NAME == name and get_source(name) is module
        assert callable(module.list_pairs) and callable(module.read_pair)
        assert set(module.EXPECTED) <= set(module.SPLITS)
        assert len(set(module.CLASSES)) == len(module.CLASSES)


def test_unknown_source_lists_known_names():
    with raises("unknown dataset 'kitti'") as e:
        get_source("kitti")
    assert all(name in one_line(e) for name in SOURCES)


@pytest.mark.parametrize("module, n", [(cityscapes, 19), (camvid, 11), (idd, 26), (sunrgbd, 37),
                                       (pascal_voc, 21), (gta5, 19), (synthia, 16)])
def test_class_counts(module, n):
    assert len(module.CLASSES) == n


def test_synthia_subsets_and_expected_counts():
    assert len(synthia.CLASSES_BY_SUBSET[16]) == 16 and len(synthia.CLASSES_BY_SUBSET[13]) == 13
    assert not {"wall", "fence", "pole"} & set(synthia.CLASSES_BY_SUBSET[13])
    assert not {"terrain", "truck", "train"} & set(synthia.CLASSES_BY_SUBSET[16])
    assert cityscapes.EXPECTED == {"train": 2975, "val": 500, "test": 1525}
    assert pascal_voc.EXPECTED["train_aug"] == 10582 and pascal_voc.EXPECTED["val"] == 1449
    assert (camvid.EXPECTED["train"], idd.EXPECTED["train"], sunrgbd.EXPECTED["train"],
            gta5.EXPECTED["train"], synthia.EXPECTED["train"]) == (367, 6993, 5285, 24966, 9400)


# ----------------------------------------------------------------------------------------------
# Cityscapes

CS_HAND = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
           25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


@needs_cs
def test_cityscapes_table_matches_hand_values():
    lut = cityscapes.label_table().lut
    assert lut[7] == 0 and lut[26] == 13 and lut[0] == 255 and lut[33] == 18
    assert {i: int(lut[i]) for i in range(34) if lut[i] != 255} == CS_HAND


@needs_cs
@pytest.mark.parametrize("form", ["plain", "zip"])
def test_cityscapes_both_root_forms(tmp_path, form):
    tree = fx.cityscapes_tree(tmp_path, form=form)
    pairs = cityscapes.list_pairs(tmp_path, "train")
    assert [(i.relative_to(tree["images"]).as_posix(), l.relative_to(tree["labels"]).as_posix())
            for i, l in pairs] == [
        ("train/aachen/aachen_000000_000019_leftImg8bit.png", "train/aachen/aachen_000000_000019_gtFine_labelIds.png"),
        ("train/aachen/aachen_000001_000019_leftImg8bit.png", "train/aachen/aachen_000001_000019_gtFine_labelIds.png"),
        ("train/bochum/bochum_000000_000313_leftImg8bit.png", "train/bochum/bochum_000000_000313_gtFine_labelIds.png"),
    ]
    assert len(cityscapes.list_pairs(tmp_path, "val")) == 1


@needs_cs
def test_cityscapes_read_pair_maps_ids(tmp_path):
    tree = fx.cityscapes_tree(tmp_path)
    image, label = cityscapes.read_pair(*cityscapes.list_pairs(tmp_path, "train")[2])
    raw = tree["raw"]["train/bochum/bochum_000000_000313"]
    assert image.dtype == np.uint8 and image.shape == (10, 20, 3)
    assert label.dtype == np.uint8 and label.shape == (10, 20)
    np.testing.assert_array_equal(label, hand_map(raw, CS_HAND))
    assert set(np.unique(label)) == {0, 1, 2, 11, 13, 18, 255}


@needs_cs
def test_cityscapes_missing_label_and_orphan_label(tmp_path):
    tree = fx.cityscapes_tree(tmp_path)
    lbl = tree["labels"] / "train/aachen/aachen_000001_000019_gtFine_labelIds.png"
    lbl.unlink()
    with raises(r"image .*aachen_000001_000019_leftImg8bit\.png has no label "
                r"\(expected .*aachen_000001_000019_gtFine_labelIds\.png\)") as e:
        cityscapes.list_pairs(tmp_path, "train")
    one_line(e)
    fx.write_grey(lbl, np.zeros((6, 12)))
    (tree["images"] / "train/bochum/bochum_000000_000313_leftImg8bit.png").unlink()
    with raises(r"label .*bochum_000000_000313_gtFine_labelIds\.png has no image"):
        cityscapes.list_pairs(tmp_path, "train")


@needs_cs
def test_cityscapes_bad_roots_and_splits(tmp_path):
    with raises(r"root .*nowhere does not exist \(expected a folder holding leftImg8bit/"):
        cityscapes.list_pairs(tmp_path / "nowhere", "train")
    (tmp_path / "afile").write_text("x")
    with raises(r"root .*afile is a file"):
        cityscapes.list_pairs(tmp_path / "afile", "train")
    with raises(r"no leftImg8bit/ folder under"):
        cityscapes.list_pairs(tmp_path, "train")
    fx.cityscapes_tree(tmp_path)
    with raises(r"folder .*leftImg8bit/test is missing \(expected <city>/"):
        cityscapes.list_pairs(tmp_path, "test")
    with raises(r"no split 'training' \(known: train, val, test\)"):
        cityscapes.list_pairs(tmp_path, "training")


@needs_cs
def test_cityscapes_empty_split_is_an_error(tmp_path):
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    (tmp_path / "gtFine" / "val").mkdir(parents=True)
    with raises(r"no images under .*leftImg8bit/val"):
        cityscapes.list_pairs(tmp_path, "val")


@needs_cs
def test_cityscapes_unknown_label_values_named(tmp_path):
    tree = fx.cityscapes_tree(tmp_path)
    lbl = tree["labels"] / "val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    fx.write_grey(lbl, fx.stripes(8, 16, (7, 34, 200)))
    with raises(r"frankfurt_000000_000294_gtFine_labelIds\.png: label values 34, 200 are not in "
                r"the cityscapes table \(expected Cityscapes label ids 0\.\.33\)") as e:
        cityscapes.read_pair(*cityscapes.list_pairs(tmp_path, "val")[0])
    one_line(e)


@needs_cs
def test_cityscapes_size_mismatch(tmp_path):
    tree = fx.cityscapes_tree(tmp_path)
    lbl = tree["labels"] / "val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    fx.write_grey(lbl, np.full((8, 15), 7))
    with raises(r"label is 15x8 but image .*frankfurt_000000_000294_leftImg8bit\.png is 16x8 "
                r"\(expected the same size"):
        cityscapes.read_pair(*cityscapes.list_pairs(tmp_path, "val")[0])


@needs_cs
@pytest.mark.parametrize("damage", ["truncate", "garbage", "rgb_label"])
def test_cityscapes_corrupt_files(tmp_path, damage):
    fx.cityscapes_tree(tmp_path)
    image, label = cityscapes.list_pairs(tmp_path, "val")[0]
    if damage == "truncate":
        data = label.read_bytes()
        label.write_bytes(data[: len(data) // 2])
        target, match = label, "unreadable or truncated image"
    elif damage == "garbage":
        image.write_bytes(b"not a png at all")
        target, match = image, "unreadable or truncated image"
    else:
        fx.write_rgb(label, 16, 8)
        target, match = label, r"label image has mode RGB \(expected a single-channel"
    with raises(re.escape(str(target)) + ": " + match) as e:
        cityscapes.read_pair(image, label)
    one_line(e)


@needs_cs
def test_symlinked_folders_followed_but_loops_rejected(tmp_path):
    data = tmp_path / "disk"
    fx.cityscapes_tree(data)
    root = tmp_path / "root"
    root.mkdir()
    (root / "leftImg8bit").symlink_to(data / "leftImg8bit")
    (root / "gtFine").symlink_to(data / "gtFine")
    assert len(cityscapes.list_pairs(root, "train")) == 3
    (data / "leftImg8bit" / "train" / "aachen" / "back").symlink_to(data / "leftImg8bit" / "train")
    with raises(r"is the same folder as .*symlink loop") as e:
        cityscapes.list_pairs(root, "train")
    one_line(e)


# ----------------------------------------------------------------------------------------------
# listing order

@pytest.mark.parametrize("name", [pytest.param(n, marks=NEEDS.get(n, ())) for n in sorted(fx.BUILDERS)])
def test_listing_is_sorted_and_independent_of_creation_order(tmp_path, name):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    fx.BUILDERS[name](a, order="forward")
    fx.BUILDERS[name](b, order="reversed")
    module = SOURCES[name]
    split = module.SPLITS[0]
    pa, pb = rel(module.list_pairs(a, split), a), rel(module.list_pairs(b, split), b)
    assert pa == pb and len(pa) >= 2
    assert [i for i, _ in pa] == sorted(i for i, _ in pa)
    for image, label in module.list_pairs(a, split):  # every fixture pair reads cleanly
        img, lbl = module.read_pair(image, label)
        assert img.shape[:2] == lbl.shape and img.shape[2] == 3 and lbl.dtype == np.uint8


# ----------------------------------------------------------------------------------------------
# CamVid

def test_camvid_pairs_by_name_and_maps_void(tmp_path):
    tree = fx.camvid_tree(tmp_path)
    pairs = camvid.list_pairs(tmp_path, "train")
    assert rel(pairs, tmp_path) == [
        ("train/0001TP_006690.png", "trainannot/0001TP_006690.png"),
        ("train/0006R0_f00930.png", "trainannot/0006R0_f00930.png"),
        ("train/Seq05VD_f00000.png", "trainannot/Seq05VD_f00000.png"),
    ]
    image, label = camvid.read_pair(*pairs[0])
    raw = tree["raw"]["train/0001TP_006690"]
    np.testing.assert_array_equal(label, hand_map(raw, {i: i for i in range(11)}))
    assert set(np.unique(label)) == {0, 3, 5, 10, 255}  # 11 (void) -> 255
    assert [len(camvid.list_pairs(tmp_path, s)) for s in ("val", "test")] == [1, 1]


def test_camvid_errors(tmp_path):
    fx.camvid_tree(tmp_path)
    (tmp_path / "testannot" / "0001TP_008550.png").unlink()
    with raises(r"image .*test/0001TP_008550\.png has no label \(expected .*testannot/0001TP_008550\.png\)"):
        camvid.list_pairs(tmp_path, "test")
    fx.write_grey(tmp_path / "valannot" / "0016E5_07959.png", fx.stripes(9, 12, (0, 12)))
    with raises(r"label values 12 are not in the camvid table \(expected 0\.\.10 for the classes and 11"):
        camvid.read_pair(*camvid.list_pairs(tmp_path, "val")[0])
    import shutil
    shutil.rmtree(tmp_path / "valannot")
    with raises(r"folder .*valannot is missing"):
        camvid.list_pairs(tmp_path, "val")


# ----------------------------------------------------------------------------------------------
# IDD

def test_idd_level3_pairs_and_values(tmp_path):
    tree = fx.idd_tree(tmp_path)
    pairs = idd.list_pairs(tmp_path, "train")
    assert [i.relative_to(tmp_path).as_posix() for i, _ in pairs] == [
        "leftImg8bit/train/0/005506_leftImg8bit.png", "leftImg8bit/train/0/005507_leftImg8bit.png",
        "leftImg8bit/train/119/000123_leftImg8bit.png"]
    assert pairs[0][1].name == "005506_gtFine_labellevel3Ids.png"
    image, label = idd.read_pair(*pairs[2])
    np.testing.assert_array_equal(label, tree["raw"]["train/119/000123"].astype(np.uint8))
    assert set(np.unique(label)) == {0, 4, 12, 25, 255}
    with raises(r"no split 'test' \(known: train, val\)"):
        idd.list_pairs(tmp_path, "test")


def test_idd_wrong_suffix_spelling_is_not_a_label(tmp_path):
    fx.idd_tree(tmp_path)
    gt = tmp_path / "gtFine" / "val" / "3"
    (gt / "000042_gtFine_labellevel3Ids.png").rename(gt / "000042_gtFine_labelLevel3Ids.png")
    with raises(r"000042_leftImg8bit\.png has no label \(expected .*000042_gtFine_labellevel3Ids\.png\)"):
        idd.list_pairs(tmp_path, "val")


def test_idd_out_of_table_value(tmp_path):
    fx.idd_tree(tmp_path)
    fx.write_grey(tmp_path / "gtFine/val/3/000042_gtFine_labellevel3Ids.png", fx.stripes(9, 16, (3, 26)))
    with raises(r"label values 26 are not in the idd table \(expected level-3 ids 0\.\.25 and 255"):
        idd.read_pair(*idd.list_pairs(tmp_path, "val")[0])


# ----------------------------------------------------------------------------------------------
# SUN RGB-D

def test_sunrgbd_pairs_by_number_and_shifts(tmp_path):
    tree = fx.sunrgbd_tree(tmp_path)
    pairs = sunrgbd.list_pairs(tmp_path, "train")
    assert rel(pairs, tmp_path) == [
        ("image/train/img-000001.jpg", "label37/train/00000001.png"),
        ("image/train/img-000002.jpg", "label37/train/00000002.png"),
        ("image/train/img-000010.jpg", "label37/train/00000010.png"),
    ]
    image, label = sunrgbd.read_pair(*pairs[0])
    raw = tree["raw"]["train/00000001"]
    np.testing.assert_array_equal(label, hand_map(raw, {k: k - 1 for k in range(1, 38)}))
    assert set(np.unique(label)) == {0, 1, 35, 36, 255}  # 0 void -> 255, 37 bag -> 36
    assert sunrgbd.CLASSES[0] == "wall" and sunrgbd.CLASSES[36] == "bag"


def test_sunrgbd_val_from_split_list(tmp_path):
    fx.sunrgbd_tree(tmp_path)
    assert rel(sunrgbd.list_pairs(tmp_path, "val"), tmp_path) == [
        ("image/test/img-000001.jpg", "label37/test/00000001.png"),
        ("image/test/img-000025.jpg", "label37/test/00000025.png")]
    assert len(sunrgbd.list_pairs(tmp_path, "test")) == 3
    (tmp_path / "label37/test/00000025.png").unlink()
    with raises(r"file .*label37/test/00000025\.png is missing \(expected the label listed in .*val37\.txt:2\)"):
        sunrgbd.list_pairs(tmp_path, "val")
    (tmp_path / "split" / "val37.txt").unlink()
    with raises(r"file .*split/val37\.txt is missing"):
        sunrgbd.list_pairs(tmp_path, "val")


def test_sunrgbd_unknown_value(tmp_path):
    fx.sunrgbd_tree(tmp_path)
    fx.write_grey(tmp_path / "label37/test/00000026.png", fx.stripes(10, 14, (0, 38)))
    with raises(r"00000026\.png: label values 38 are not in the sunrgbd table"):
        sunrgbd.read_pair(*sunrgbd.list_pairs(tmp_path, "test")[2])


# ----------------------------------------------------------------------------------------------
# PASCAL VOC

def test_voc_palette_masks_read_as_indices_with_borders(tmp_path):
    tree = fx.voc_tree(tmp_path)
    lbl = tree["voc"] / "SegmentationClass" / "2007_000032.png"
    assert Image.open(lbl).mode == "P"
    image, label = pascal_voc.read_pair(tree["voc"] / "JPEGImages" / "2007_000032.jpg", lbl)
    np.testing.assert_array_equal(label, tree["masks"]["2007_000032"])
    assert set(np.unique(label)) == {0, 1, 15, 20, 255}
    assert (label[0] == 255).all() and (label[:, 0] == 255).all()
    # What converting would have given: colours, not classes.
    assert np.array(Image.open(lbl).convert("RGB"))[0, 0].tolist() == [224, 224, 192]


def test_voc_splits_and_root_forms(tmp_path):
    tree = fx.voc_tree(tmp_path)
    for root in (tmp_path, tree["voc"]):
        assert [i.stem for i, _ in pascal_voc.list_pairs(root, "train")] == ["2007_000032", "2007_000039"]
    val = pascal_voc.list_pairs(tmp_path, "val")
    assert rel(val, tmp_path) == [("VOC2012/JPEGImages/2007_000033.jpg",
                                   "VOC2012/SegmentationClass/2007_000033.png")]
    assert len(pascal_voc.list_pairs(tmp_path, "trainval")) == 3
    # train_aug without a list: every aug mask minus val, labels from SegmentationClassAug.
    aug = pascal_voc.list_pairs(tmp_path, "train_aug")
    assert [i.stem for i, _ in aug] == ["2007_000032", "2007_000039", "2008_000002", "2008_000003"]
    assert {l.parent.name for _, l in aug} == {"SegmentationClassAug"}
    image, label = pascal_voc.read_pair(*aug[2])
    np.testing.assert_array_equal(label, tree["masks"]["2008_000002"])


def test_voc_train_aug_from_list_and_unimatch_folder(tmp_path):
    tree = fx.voc_tree(tmp_path, aug_list=True)
    (tree["voc"] / "ImageSets/Segmentation/aug.txt").write_text("2008_000003\n2007_000032\n")
    assert [i.stem for i, _ in pascal_voc.list_pairs(tmp_path, "train_aug")] == ["2007_000032", "2008_000003"]
    # UniMatch: the aug masks live in SegmentationClass/ and there is no SegmentationClassAug/.
    import shutil
    shutil.rmtree(tree["voc"] / "SegmentationClass")
    (tree["voc"] / "SegmentationClassAug").rename(tree["voc"] / "SegmentationClass")
    assert {l.parent.name for _, l in pascal_voc.list_pairs(tmp_path, "train_aug")} == {"SegmentationClass"}


def test_voc_rgb_expanded_mask_is_mapped_back(tmp_path):
    tree = fx.voc_tree(tmp_path)
    lbl = tree["voc"] / "SegmentationClass" / "2007_000033.png"
    Image.open(lbl).convert("RGB").save(lbl)
    image, label = pascal_voc.read_pair(tree["voc"] / "JPEGImages" / "2007_000033.jpg", lbl)
    np.testing.assert_array_equal(label, tree["masks"]["2007_000033"])
    rgb = np.array(Image.open(lbl))
    rgb[2, 2] = (1, 2, 3)
    Image.fromarray(rgb).save(lbl)
    with raises(r"RGB label colours \(1, 2, 3\) are not VOC palette colours"):
        pascal_voc.read_label(lbl)


def test_voc_errors(tmp_path):
    tree = fx.voc_tree(tmp_path)
    (tree["voc"] / "SegmentationClass" / "2007_000039.png").unlink()
    with raises(r"image .*2007_000039\.jpg has no label \(expected .*SegmentationClass/2007_000039\.png\)"):
        pascal_voc.list_pairs(tmp_path, "train")
    (tree["voc"] / "JPEGImages" / "2007_000033.jpg").unlink()
    with raises(r"listed image .*2007_000033\.jpg is missing"):
        pascal_voc.list_pairs(tmp_path, "val")
    (tree["voc"] / "ImageSets/Segmentation/trainval.txt").unlink()
    with raises(r"file .*trainval\.txt is missing \(expected one image id per line"):
        pascal_voc.list_pairs(tmp_path, "trainval")
    fx.write_grey(tree["voc"] / "SegmentationClassAug" / "2008_000002.png", fx.stripes(11, 15, (0, 21, 254)))
    with raises(r"label values 21, 254 are not in the pascal_voc table"):
        pascal_voc.read_label(tree["voc"] / "SegmentationClassAug" / "2008_000002.png")
    with raises(r"no JPEGImages/ folder under"):
        pascal_voc.list_pairs(tmp_path / "VOC2012" / "ImageSets", "train")


def test_voc_image_labels():
    mask = np.array([[0, 0, 255], [15, 15, 255], [20, 255, 255]], dtype=np.uint8)
    labels = pascal_voc.image_labels(mask)
    assert labels.dtype == bool and labels.shape == (21,)
    assert np.flatnonzero(labels).tolist() == [15, 20]  # background excluded by default
    assert np.flatnonzero(pascal_voc.image_labels(mask, include_background=True)).tolist() == [0, 15, 20]
    assert not pascal_voc.image_labels(np.full((2, 2), 255, np.uint8), include_background=True).any()


# ----------------------------------------------------------------------------------------------
# GTA5

@needs_cs
def test_gta5_palette_ids_to_train_ids(tmp_path):
    tree = fx.gta5_tree(tmp_path)
    pairs = gta5.list_pairs(tmp_path, "train")
    assert rel(pairs, tmp_path) == [("images/00001.png", "labels/00001.png"),
                                    ("images/00002.png", "labels/00002.png"),
                                    ("images/24966.png", "labels/24966.png")]  # _labelTrainIds skipped
    assert Image.open(pairs[0][1]).mode == "P"
    image, label = gta5.read_pair(*pairs[1])
    np.testing.assert_array_equal(label, hand_map(tree["raw"]["00002"], CS_HAND))
    with raises(r"the flat layout under .* has only the train split"):
        gta5.list_pairs(tmp_path, "val")


@needs_cs
def test_gta5_split_subfolders(tmp_path):
    for split, n in (("train", 1), ("val", 2)):
        fx.write_rgb(tmp_path / "images" / split / f"{n:05d}.png", 5, 4)
        fx.write_grey(tmp_path / "labels" / split / f"{n:05d}.png", np.full((4, 5), 26))
    image, label = gta5.read_pair(*gta5.list_pairs(tmp_path, "val")[0])
    assert (label == 13).all()  # car


# ----------------------------------------------------------------------------------------------
# SYNTHIA

SYN_TO_16 = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10, 17: 11, 8: 12,
             19: 13, 12: 14, 11: 15}
SYN_TO_13 = {3: 0, 4: 1, 2: 2, 15: 3, 9: 4, 6: 5, 1: 6, 10: 7, 17: 8, 8: 9, 19: 10, 12: 11, 11: 12}


@needs_png
def test_synthia_16bit_labels_need_pypng(tmp_path):
    tree = fx.synthia_tree(tmp_path)
    _, label_path = synthia.list_pairs(tmp_path, "train")[0]
    raw = tree["raw"]["0000000"]
    np.testing.assert_array_equal(synthia.read_class_ids(label_path), raw)
    # The pitfall the module avoids: Pillow keeps the high byte, so every id reads as 0.
    assert not np.array(Image.open(label_path).convert("RGB"))[..., 0].any()


@needs_png
@pytest.mark.parametrize("classes, table", [(16, SYN_TO_16), (13, SYN_TO_13)])
def test_synthia_subsets(tmp_path, classes, table):
    tree = fx.synthia_tree(tmp_path)
    pairs = synthia.list_pairs(tmp_path, "train")
    assert rel(pairs, tmp_path)[-1] == ("RGB/0009399.png", "GT/LABELS/0009399.png")
    image, label = synthia.read_pair(*pairs[0], classes=classes)
    np.testing.assert_array_equal(label, hand_map(tree["raw"]["0000000"], table))
    names = synthia.CLASSES_BY_SUBSET[classes]
    for raw_id, k in table.items():  # the subset index names the same class as Cityscapes does
        assert names[k] == cityscapes.CLASSES[synthia.CITYSCAPES_IDS[classes][k]]


@needs_png
def test_synthia_default_is_16_and_19_keeps_train_ids(tmp_path):
    fx.synthia_tree(tmp_path)
    pair = synthia.list_pairs(tmp_path, "train")[0]
    np.testing.assert_array_equal(synthia.read_pair(*pair)[1], synthia.read_pair(*pair, classes=16)[1])
    _, label = synthia.read_pair(*pair, classes=19)
    assert set(np.unique(label)) == {10, 0, 4, 13, 9, 3, 255}  # sky road fence car terrain wall
    with raises(r"no 7-class subset"):
        synthia.read_pair(*pair, classes=7)


@needs_png
def test_synthia_errors(tmp_path):
    fx.synthia_tree(tmp_path)
    image, label = synthia.list_pairs(tmp_path, "train")[1]
    fx.write_rgb16(label, fx.stripes(9, 19, (3, 23, 300)), np.zeros((9, 19)))
    with raises(r"label values 23, 300 are not in the synthia \(16 classes\) table"):
        synthia.read_pair(image, label)
    data = label.read_bytes()
    label.write_bytes(data[: len(data) - 30])
    with raises(re.escape(str(label)) + r": (unreadable or truncated PNG|decoded)") as e:
        synthia.read_pair(image, label)
    one_line(e)
    fx.write_rgb16(label, np.zeros((9, 18)), np.zeros((9, 18)))
    with raises(r"label is 18x9 but image .* is 19x9"):
        synthia.read_pair(image, label)
    (tmp_path / "GT" / "LABELS" / "0009399.png").unlink()
    with raises(r"image .*RGB/0009399\.png has no label"):
        synthia.list_pairs(tmp_path, "train")
