"""The workers' fast paths against the plain recipes they must equal: the geometry (resize, rescale,
crop, flip) against resizing step by step, libspng against Pillow, and the byte-translation label
table against the lookup."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unisemi.data import pipeline
from unisemi.data.labels import IGNORE_INDEX
from unisemi.data.sources import _common
from unisemi.data.sources.errors import UnreadableError


def _resize(a: np.ndarray, size: tuple, resample) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((size[1], size[0]), resample))


def reference(image, label, geo: pipeline.Geometry, rng):
    """Resize the whole pair, rescale the whole pair, pad, crop, flip: the recipe, step by step."""
    if geo.resize:
        image, label = _resize(image, geo.resize, Image.BILINEAR), _resize(label, geo.resize, Image.NEAREST)
    if geo.scale != (1.0, 1.0):
        s = rng.uniform(*geo.scale)
        size = (max(1, round(image.shape[0] * s)), max(1, round(image.shape[1] * s)))
        image, label = _resize(image, size, Image.BILINEAR), _resize(label, size, Image.NEAREST)
    if geo.crop:
        ph, pw = max(geo.crop[0] - image.shape[0], 0), max(geo.crop[1] - image.shape[1], 0)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
        top = int(rng.integers(0, image.shape[0] - geo.crop[0] + 1))
        left = int(rng.integers(0, image.shape[1] - geo.crop[1] + 1))
        image = image[top:top + geo.crop[0], left:left + geo.crop[1]]
        label = label[top:top + geo.crop[0], left:left + geo.crop[1]]
    if geo.hflip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    return image, label


def test_cityscapes_protocol_equals_the_whole_resize_then_crop_exactly():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1024, 2048, 3), dtype=np.uint8)
    label = rng.integers(0, 19, (1024, 2048), dtype=np.uint8)
    geo = pipeline.Geometry(resize=(512, 1024), crop=(512, 512), hflip=True)
    for k in range(4):
        got = pipeline.apply_geometry(image, label, geo, np.random.default_rng([7, k]))
        want = reference(image, label, geo, np.random.default_rng([7, k]))
        assert got[0].shape == (512, 512, 3)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_random_geometries_match_the_recipe():
    """Labels exactly; images within 2 grey levels (the windowed resample's float rounding)."""
    rng = np.random.default_rng(1)
    windowed = 0
    for case in range(120):
        h, w = (int(v) for v in rng.integers(20, 200, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = rng.integers(0, 20, (h, w), dtype=np.uint8)
        geo = pipeline.Geometry(
            resize=() if case % 3 == 0 else tuple(int(v) for v in rng.integers(16, 180, 2)),
            scale=(1.0, 1.0) if case % 2 else (0.5, 1.5),
            crop=() if case % 5 == 0 else tuple(int(v) for v in rng.integers(8, 150, 2)), hflip=True)
        got = pipeline.apply_geometry(image, label, geo, np.random.default_rng([3, case]))
        want = reference(image, label, geo, np.random.default_rng([3, case]))
        assert got[0].shape == want[0].shape, (case, geo)
        np.testing.assert_array_equal(got[1], want[1], err_msg=f"case {case}: {geo}")
        assert np.abs(got[0].astype(int) - want[0]).max() <= 2, (case, geo)
        windowed += not np.array_equal(got[0], want[0])
    assert windowed > 0          # the windowed path did run on non-integer ratios


def test_unlabelled_samples_take_the_same_geometry():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    geo = pipeline.Geometry(resize=(60, 100), scale=(0.7, 1.3), crop=(40, 40), hflip=True)
    alone, none = pipeline.apply_geometry(image, None, geo, np.random.default_rng([5, 1]))
    paired, _ = pipeline.apply_geometry(image, np.zeros((90, 160), np.uint8), geo, np.random.default_rng([5, 1]))
    assert none is None
    np.testing.assert_array_equal(alone, paired)


def _png(path, array, mode=None, palette=False):
    im = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette:
        im.putpalette([v % 256 for v in range(768)])
    im.save(path)
    return path


@pytest.fixture
def fast_png(monkeypatch):
    pytest.importorskip("pyspng")
    monkeypatch.setattr(_common, "FAST_PNG", True)


def _both(monkeypatch, read, path):
    fast = read(path)
    monkeypatch.setattr(_common, "FAST_PNG", False)
    slow = read(path)
    monkeypatch.setattr(_common, "FAST_PNG", True)
    return fast, slow


def test_fast_png_decoder_gives_pillows_arrays(tmp_path, monkeypatch, fast_png):
    rng = np.random.default_rng(3)
    rgb = _png(tmp_path / "rgb.png", rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    grey = _png(tmp_path / "grey.png", rng.integers(0, 34, (37, 53), dtype=np.uint8))
    pal = _png(tmp_path / "pal.png", rng.integers(0, 21, (37, 53), dtype=np.uint8), "P", palette=True)
    for read, path in [(_common.read_rgb, rgb), (_common.read_index_label, grey),
                       (_common.read_index_label, pal), (_common.read_rgb, grey)]:
        fast, slow = _both(monkeypatch, read, path)
        assert fast.dtype == slow.dtype == np.uint8 and fast.shape == slow.shape, path.name
        np.testing.assert_array_equal(fast, slow, err_msg=path.name)
    # a palette label stays indices (libspng would expand it to colours: Pillow reads it)
    assert _common.read_index_label(pal).ndim == 2


def test_fast_png_decoder_names_a_truncated_file(tmp_path, fast_png):
    path = _png(tmp_path / "cut.png", np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(UnreadableError, match=r"cut\.png: unreadable or truncated image"):
        _common.read_rgb(path)


def test_byte_translation_table_maps_and_checks_as_the_lookup_does():
    from unisemi.data.sources.errors import LabelValueError
    table = _common.make_table("toy", {3: 0, 7: 1, 9: 2}, known=[0, 3, 7, 9], expected="0, 3, 7, 9")
    raw = np.random.default_rng(5).choice(np.array([0, 3, 7, 9], np.uint8), (33, 17))
    assert table._byte_table is not None
    np.testing.assert_array_equal(table.apply(raw, "toy.png"), np.take(table.lut, raw))
    np.testing.assert_array_equal(table.apply(raw.astype(np.int32), "toy.png"), np.take(table.lut, raw))
    bad = raw.copy()
    bad[4, 2], bad[0, 0] = 200, 5
    with pytest.raises(LabelValueError, match=r"toy.png: label values 5, 200 are not in the toy table"):
        table.apply(bad, "toy.png")
    # every byte a known value's output: no sentinel left, the lookup path does the work
    full = _common.make_table("full", {v: v for v in range(255)}, known=range(256), expected="any byte")
    assert full._byte_table is None
    np.testing.assert_array_equal(full.apply(raw, "f.png"), raw)
