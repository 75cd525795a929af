"""The resized cache: a stream that reads its pairs from the cache gives the samples of one that
decodes the full-size files, entries replace the decode from the second read on, and a changed
file, a broken entry or a folder that cannot be written never changes a sample."""
from __future__ import annotations

import functools
import os
import warnings

import fixtures_real as fx
import numpy as np
import pytest
import torch
from PIL import Image

from unisemi.config import load_config
from unisemi.data import load_domain, pipeline, real
from unisemi.data.resized_cache import ResizedCache
from unisemi.data.sources import cityscapes
from unisemi.data.sources.errors import SourceError

GEOMETRIES = [
    pipeline.Geometry(resize=(6, 10), crop=(4, 4), hflip=True),                     # non-integer ratios
    pipeline.Geometry(resize=(4, 8), scale=(0.75, 1.5), crop=(3, 5), hflip=True),   # rescale after it
    pipeline.Geometry(resize=(5, 9)),                                               # resize alone
    pipeline.Geometry(resize=(4, 6), crop=(6, 8)),                                  # a crop that pads
]


class CountingRead:
    """read_sample, counting the calls (the full-size decodes)."""

    def __init__(self):
        self.calls = 0
        self.read = functools.partial(real.read_sample, "cityscapes", 0)

    def __call__(self, image_path, label_path):
        self.calls += 1
        return self.read(image_path, label_path)


@pytest.fixture
def pairs(tmp_path):
    fx.cityscapes_tree(tmp_path / "cityscapes")
    return cityscapes.list_pairs(tmp_path / "cityscapes", "train")


def _cache(tmp_path, geo):
    return ResizedCache(tmp_path / "resized", reader="cityscapes/0", size=geo.resize)


def _samples(stream, n=9):
    items = [stream[(k, k % len(stream))] for k in range(n)]
    for item in items:
        assert not isinstance(item, Exception), item
    return items


def _assert_same(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert len(a) == len(b)
        for x, y in zip(a[:-1], b[:-1]):
            assert x.dtype == y.dtype and torch.equal(x, y)


@pytest.mark.parametrize("labels", [True, False])
@pytest.mark.parametrize("geo", GEOMETRIES, ids=["ratio", "rescale", "resize", "pad"])
def test_cold_and_warm_cached_streams_give_the_uncached_samples(pairs, tmp_path, geo, labels):
    read = CountingRead()
    plain = _samples(pipeline.PairStream(pairs, read, geo, seed=3, labels=labels))
    cache = _cache(tmp_path, geo)
    cold = _samples(pipeline.PairStream(pairs, read, geo, seed=3, labels=labels, cache=cache))
    calls = read.calls
    warm = _samples(pipeline.PairStream(pairs, read, geo, seed=3, labels=labels, cache=cache))
    _assert_same(cold, plain)
    _assert_same(warm, plain)
    assert read.calls == calls            # the warm stream decoded no full-size file
    assert len(list((tmp_path / "resized").rglob("*.png"))) == len(pairs) * (1 + labels)


def test_a_pre_resized_pair_takes_the_same_geometry():
    """What the cache relies on: apply_geometry resizes the whole pair first, so handing it the
    pair already at `resize` changes nothing, for every draw."""
    rng = np.random.default_rng(4)
    for case in range(60):
        h, w = (int(v) for v in rng.integers(20, 120, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = rng.integers(0, 20, (h, w), dtype=np.uint8)
        geo = pipeline.Geometry(resize=tuple(int(v) for v in rng.integers(10, 100, 2)),
                                scale=(1.0, 1.0) if case % 2 else (0.6, 1.4),
                                crop=() if case % 4 == 0 else tuple(int(v) for v in rng.integers(5, 90, 2)),
                                hflip=True)
        small = pipeline._resize(image, label, geo.resize)
        got = pipeline.apply_geometry(*small, geo, np.random.default_rng([9, case]))
        want = pipeline.apply_geometry(image, label, geo, np.random.default_rng([9, case]))
        np.testing.assert_array_equal(got[0], want[0], err_msg=f"case {case}: {geo}")
        np.testing.assert_array_equal(got[1], want[1], err_msg=f"case {case}: {geo}")


def test_an_unlabelled_read_shares_the_image_entries_of_a_labelled_one(pairs, tmp_path):
    geo = GEOMETRIES[0]
    read, cache = CountingRead(), _cache(tmp_path, geo)
    _samples(pipeline.PairStream(pairs, read, geo, seed=0, labels=True, cache=cache))
    calls = read.calls
    _samples(pipeline.PairStream(pairs, read, geo, seed=1, labels=False, cache=cache))
    assert read.calls == calls


def test_a_changed_source_file_is_decoded_again(pairs, tmp_path):
    geo = GEOMETRIES[0]
    cache = _cache(tmp_path, geo)
    read = functools.partial(real.read_sample, "cityscapes", 0)
    _samples(pipeline.PairStream(pairs, read, geo, seed=0, labels=True, cache=cache))
    image_path = pairs[0][0]
    w, h = Image.open(image_path).size
    fx.write_rgb(image_path, w, h, seed=99)             # new pixels, same size
    st = os.stat(image_path)
    os.utime(image_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    got = _samples(pipeline.PairStream(pairs, read, geo, seed=0, labels=True, cache=cache))
    want = _samples(pipeline.PairStream(pairs, read, geo, seed=0, labels=True))
    _assert_same(got, want)


def test_an_entry_that_will_not_decode_is_rebuilt(pairs, tmp_path):
    geo = GEOMETRIES[0]
    cache = _cache(tmp_path, geo)
    read = CountingRead()
    want = _samples(pipeline.PairStream(pairs, read, geo, seed=0, labels=True, cache=cache))
    entry = cache.image_entry(pairs[0][0])
    entry.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    calls = read.calls
    got = _samples(pipeline.PairStream(pairs, read, geo, seed=0, labels=True, cache=cache))
    _assert_same(got, want)
    assert read.calls == calls + 1 and cache.load(entry, 3) is not None


def test_a_cache_folder_that_cannot_be_written_warns_once_and_changes_nothing(pairs, tmp_path):
    geo = GEOMETRIES[0]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    cache = ResizedCache(blocked, reader="cityscapes/0", size=geo.resize)
    read = functools.partial(real.read_sample, "cityscapes", 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _samples(pipeline.PairStream(pairs, read, geo, seed=0, labels=True, cache=cache))
    assert [str(w.message) for w in caught if str(blocked) in str(w.message)] and len(caught) == 1
    assert "cannot write" in str(caught[0].message) and "data.cache_resized=false" in str(caught[0].message)
    _assert_same(got, _samples(pipeline.PairStream(pairs, read, geo, seed=0, labels=True)))


def test_a_bad_source_file_is_still_an_error_naming_it(pairs, tmp_path):
    geo = GEOMETRIES[0]
    cache = _cache(tmp_path, geo)
    bad = pairs[1][1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    stream = pipeline.PairStream(pairs, functools.partial(real.read_sample, "cityscapes", 0), geo,
                                 seed=0, labels=True, cache=cache)
    err = stream[(0, 1)]
    assert isinstance(err, SourceError) and bad.name in str(err)
    os.remove(pairs[2][0])
    err = stream[(1, 2)]
    assert isinstance(err, SourceError) and pairs[2][0].name in str(err)


def test_generated_labels_take_the_cached_images_geometry(pairs, tmp_path):
    geo = GEOMETRIES[1]
    read = functools.partial(real.read_sample, "cityscapes", 0)
    files = {}
    for i, (image_path, _) in enumerate(pairs):
        w, h = Image.open(image_path).size
        files[i] = tmp_path / f"gen{i}.png"
        Image.fromarray(np.arange(h * w, dtype=np.uint8).reshape(h, w) % 19, "L").save(files[i])
    want = _samples(pipeline.PairStream(pairs, read, geo, seed=2, labels=True, replacements=files))
    cache = _cache(tmp_path, geo)
    for _ in range(2):
        got = _samples(pipeline.PairStream(pairs, read, geo, seed=2, labels=True, replacements=files,
                                           cache=cache))
        _assert_same(got, want)


def test_image_level_label_streams_read_the_whole_mask(pairs, tmp_path):
    """Class presence is taken from the full-size mask, which the cache does not keep."""
    geo = GEOMETRIES[0]
    stream = pipeline.PairStream(pairs, CountingRead(), geo, seed=0, labels=True, classes=19,
                                 cache=_cache(tmp_path, geo))
    assert stream.cache is None


def test_a_domain_caches_when_it_resizes_and_the_setting_is_on(tmp_path, monkeypatch):
    fx.cityscapes_tree(tmp_path / "cityscapes")
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path / "cache"))
    base = ["data.domains=[cityscapes]", "data.n_labelled=2", "data.check_counts=false", "data.workers=0",
            "data.crop=[8,8]"]
    dd = load_domain(load_config(None, [*base, "data.resize=[8,12]"]).data, "cityscapes")
    assert dd.cache is not None and dd.cache.size == (8, 12) and dd.cache.folder == tmp_path / "cache" / "resized"
    on = dd.stream("labelled", 2, seed=0, part=(0, 1), pin_memory=False).next()
    assert len(list((tmp_path / "cache" / "resized").rglob("*.png"))) == 4
    off_cfg = load_config(None, [*base, "data.resize=[8,12]", "data.cache_resized=false"]).data
    off = load_domain(off_cfg, "cityscapes")
    assert off.cache is None
    assert all(torch.equal(a, b) for a, b in zip(on, off.stream("labelled", 2, seed=0, part=(0, 1),
                                                                pin_memory=False).next()))
    assert load_domain(load_config(None, [*base, "data.resize=[0,0]"]).data, "cityscapes").cache is None


def test_the_cache_setting_is_not_part_of_a_trials_identity():
    from unisemi.ablation.spec import config_identity
    from unisemi.config import to_dict
    on = to_dict(load_config(None, ["data.cache_resized=true"]))
    off = to_dict(load_config(None, ["data.cache_resized=false"]))
    other = to_dict(load_config(None, ["data.workers=1"]))
    assert config_identity(on) == config_identity(off) != config_identity(other)
