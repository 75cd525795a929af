"""The streaming pipeline of the real datasets: geometry, seeded order, rank slices, exact resume,
errors from worker processes, evaluation at full label size, and short fits on each real layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fixtures_real as fx
from unisemi.config import ConfigError, load_config
from unisemi.data import load_domain, pipeline, real
from unisemi.data.sources.errors import SourceError
from unisemi.data.splits import file_split, read_split_list, split_hash, write_split_lists
from unisemi.evaluate import evaluate_pairs
from unisemi.train import fit

TINY = ["model.width=8", "data.resize=[32,64]", "data.crop=[32,32]", "data.val_resize=[32,64]",
        "data.batch_size=2", "train.iterations=2", "train.eval_every=2", "data.workers=0",
        "data.check_counts=false"]   # fixture trees hold a few files, not the published counts


def _cfg(*overrides):
    return load_config(None, [*TINY, *overrides])


# ---------------------------------------------------------------------------------------------
# geometry

def test_crop_pads_image_with_zero_and_label_with_ignore():
    image = np.full((4, 6, 3), 7, np.uint8)
    label = np.full((4, 6), 3, np.uint8)
    geo = pipeline.Geometry(crop=(8, 6))
    x, y = pipeline.apply_geometry(image, label, geo, np.random.default_rng(0))
    assert x.shape == (8, 6, 3) and y.shape == (8, 6)
    # 4 rows padded; the crop may start at row 0 only (8 - 8 + 1 positions)
    assert (x[:4] == 7).all() and (x[4:] == 0).all()
    assert (y[:4] == 3).all() and (y[4:] == 255).all()


def test_resize_keeps_label_values_and_crop_takes_a_window():
    label = np.repeat(np.array([[1, 2, 3, 4]], np.uint8), 2, axis=0)      # (2, 4)
    image = np.stack([label * 10] * 3, -1)
    geo = pipeline.Geometry(resize=(4, 8), crop=(4, 4))
    x, y = pipeline.apply_geometry(image, label, geo, np.random.default_rng(3))
    assert set(np.unique(y)) <= {1, 2, 3, 4}        # nearest: no blended label values
    # the window is contiguous in the 4x8 resized map, whose columns go 1,1,2,2,3,3,4,4
    full = np.repeat(np.array([1, 2, 3, 4], np.uint8), 2)
    starts = [s for s in range(5) if (full[s:s + 4] == y[0]).all()]
    assert starts and (y == y[0]).all()


def test_same_rng_same_geometry_and_flip_moves_image_and_label_together():
    image = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    label = np.arange(10, dtype=np.uint8).reshape(2, 5)
    geo = pipeline.Geometry(scale=(0.5, 2.0), crop=(2, 3), hflip=True)
    a = pipeline.apply_geometry(image, label, geo, np.random.default_rng([5, 9]))
    b = pipeline.apply_geometry(image, label, geo, np.random.default_rng([5, 9]))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    flips = [pipeline.apply_geometry(image, label, pipeline.Geometry(hflip=True), np.random.default_rng(s))
             for s in range(20)]
    flipped = [f for f in flips if (f[1] == label[:, ::-1]).all()]
    assert 0 < len(flipped) < 20
    assert all((f[0] == image[:, ::-1]).all() for f in flipped)


# ---------------------------------------------------------------------------------------------
# order, rank slices, resume

def test_each_epoch_is_a_seeded_permutation_of_the_pool():
    pool = torch.tensor([3, 5, 8, 13])
    order = pipeline.EpochOrder(pool, seed=1)
    stream = [order(k) for k in range(12)]
    for e in range(3):
        assert sorted(stream[4 * e:4 * e + 4]) == [3, 5, 8, 13]
    assert stream == [pipeline.EpochOrder(pool, seed=1)(k) for k in range(12)]
    assert stream != [pipeline.EpochOrder(pool, seed=2)(k) for k in range(12)]


def test_two_ranks_see_exactly_the_global_batch_of_one_process():
    order = pipeline.EpochOrder(torch.arange(7), seed=0)
    one = iter(pipeline.BatchKeys(order, batch=4, part=(0, 1)))
    r0 = iter(pipeline.BatchKeys(order, batch=2, part=(0, 2)))
    r1 = iter(pipeline.BatchKeys(order, batch=2, part=(1, 2)))
    for _ in range(5):
        assert next(one) == next(r0) + next(r1)


@pytest.fixture
def city_root(tmp_path, monkeypatch):
    fx.cityscapes_tree(tmp_path / "cityscapes")
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))
    return tmp_path / "cityscapes"


def test_stream_resumes_at_the_batch_it_stopped_with_workers(city_root):
    dd = load_domain(_cfg("data.domains=[cityscapes]", "data.n_labelled=3", "data.workers=1").data,
                     "cityscapes")
    straight = dd.stream("labelled", 2, seed=4, part=(0, 1), pin_memory=False)
    seen = [straight.next() for _ in range(5)]
    first = dd.stream("labelled", 2, seed=4, part=(0, 1), pin_memory=False)
    for _ in range(2):
        first.next()
    state = first.state_dict()
    resumed = dd.stream("labelled", 2, seed=4, part=(0, 1), pin_memory=False)
    resumed.load_state_dict(state)
    for want in seen[2:]:
        got = resumed.next()
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_unlabelled_stream_never_reads_a_label(city_root, monkeypatch):
    dd = load_domain(_cfg("data.domains=[cityscapes]", "data.n_labelled=1").data, "cityscapes")
    calls = []
    real_read = real._read_labelled
    monkeypatch.setattr(real, "_read_labelled", lambda *a: calls.append(a) or real_read(*a))
    out = dd.stream("unlabelled", 2, seed=0, part=(0, 1), pin_memory=False).next()
    assert len(out) == 1 and out[0].shape == (2, 3, 32, 32) and calls == []


# ---------------------------------------------------------------------------------------------
# evaluation at the label's resolution

class _Upsampled(torch.nn.Module):
    """A 'model' whose logits at the input size are the one-hot of a fixed low-res map."""
    head_outputs = {"d": 2}

    def __init__(self, small):
        super().__init__()
        self.small = small

    def forward(self, x, domain):
        onehot = torch.nn.functional.one_hot(self.small, 2).permute(2, 0, 1).float()
        return {"logits": onehot[None].expand(x.shape[0], -1, -1, -1)}


def test_logits_are_upsampled_to_the_full_label_and_scored_there():
    small = torch.tensor([[0, 1], [0, 1]])                   # left half class 0, right half class 1
    label = torch.zeros(1, 4, 8, dtype=torch.long)
    label[..., 4:] = 1
    label[0, 0, 0] = 255                                      # void is not scored
    x = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    conf = evaluate_pairs(_Upsampled(small), [(x, label)], "d", 2)
    assert conf.tolist() == [[15, 0], [0, 16]]


# ---------------------------------------------------------------------------------------------
# short fits on each real layout

def _build(name, tmp_path):
    folder = real.DATASETS[name].folder
    builder = fx.BUILDERS[real.DATASETS[name].source]
    if name == "pascal_voc":
        builder(tmp_path / folder, aug_list=True)
    else:
        builder(tmp_path / folder)


@pytest.mark.parametrize("name", ["cityscapes", "camvid", "idd", "sunrgbd", "pascal_voc"])
def test_short_fit_on_each_evaluated_dataset(name, tmp_path, monkeypatch):
    _build(name, tmp_path)
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))
    out = fit(_cfg(f"data.domains=[{name}]", "data.n_labelled=2"))
    record = out["final"]["domains"][name]
    assert np.isfinite(record["pixel_acc"]) and set(record["iou"]) == set(real.classes_of(name))
    assert out["splits"][name]["n_labelled"] == 2


@pytest.mark.parametrize("target, source, classes", [("cityscapes13", "synthia13", 13),
                                                      ("cityscapes", "gta5", 19)])
def test_a_real_source_domain_adapts_to_a_real_target(target, source, classes, tmp_path, monkeypatch):
    for name in (target, source):
        _build(name, tmp_path)
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))
    cfg = _cfg("method=ass", f"data.domains=[{target}]", f"ass.source_domain={source}",
               "data.n_labelled=1", "data.unlabelled_batch_size=1")
    out = fit(cfg)
    assert len(out["final"]["domains"][target]["iou"]) == classes


def test_a_universal_run_mixes_the_embedded_world_with_a_real_dataset(tmp_path, monkeypatch):
    _build("camvid", tmp_path)
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))
    out = fit(_cfg("data.domains=[city,camvid]", "data.size=[32,32]", "data.n_labelled=2",
                   "data.val_images=4"))
    assert set(out["final"]["domains"]) == {"city", "camvid"}


def test_resume_on_a_real_dataset_is_exact(city_root, tmp_path):
    cfg = _cfg("data.domains=[cityscapes]", "data.n_labelled=3", "train.iterations=4",
               "train.eval_every=2", "data.workers=1", "data.scale=[0.75,1.5]")
    straight = fit(cfg)["model"].state_dict()
    fit(cfg, out_dir=tmp_path / "ck", stop_after=2)
    resumed = fit(cfg, resume=tmp_path / "ck")["model"].state_dict()
    for k, v in straight.items():
        assert torch.equal(v, resumed[k]), k


def test_the_labelled_split_comes_from_the_sorted_file_list(city_root):
    cfg = _cfg("data.domains=[cityscapes]", "data.n_labelled=2", "data.split_seed=1").data
    dd = load_domain(cfg, "cityscapes")
    keys = [str(p[0].relative_to(city_root)) for p in dd.train_pairs]
    want, _ = file_split(keys, 2, 1)
    assert sorted(keys[i] for i in dd.labelled.tolist()) == want
    assert sorted(dd.labelled.tolist() + dd.unlabelled.tolist()) == list(range(len(keys)))
    assert dd.split_hash == split_hash(want) and dd.split_id == "cityscapes/n2/s1"


def test_a_published_labeled_list_picks_the_labelled_images(city_root, tmp_path):
    dd = load_domain(_cfg("data.domains=[cityscapes]", "data.n_labelled=1").data, "cityscapes")
    pick = [dd.train_pairs[2]]
    folder = tmp_path / "splits"
    write_split_lists(folder, pick, [], city_root)
    cfg = _cfg("data.domains=[cityscapes]", f"data.split_lists.cityscapes={folder / 'labeled.txt'}").data
    listed = load_domain(cfg, "cityscapes")
    assert listed.labelled.tolist() == [2] and listed.unlabelled.tolist() == [0, 1]
    assert listed.split_id == "cityscapes/list:splits/labeled.txt"


def test_ratio_counts_are_the_published_ones():
    def n(fraction, pool):
        return real.count_for(load_config(None, [f"data.labelled_fraction={fraction}"]).data, pool, "cityscapes")
    assert (n(1 / 30, 2975), n(1 / 8, 2975), n(1 / 4, 2975)) == (100, 372, 744)
    assert (n(1 / 50, 10582), n(1 / 20, 10582), n(1 / 8, 10582)) == (212, 530, 1323)


# ---------------------------------------------------------------------------------------------
# bad input

def test_missing_root_names_the_setting(monkeypatch):
    monkeypatch.delenv("UNISEMI_DATA", raising=False)
    with pytest.raises(SourceError, match="data.roots.cityscapes.*UNISEMI_DATA"):
        load_domain(_cfg("data.domains=[cityscapes]").data, "cityscapes")


def test_a_corrupt_file_in_a_worker_is_one_error_naming_it(city_root):
    bad = next((city_root / "leftImg8bit" / "train").rglob("*.png"))
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(SourceError, match=bad.name):
        fit(_cfg("data.domains=[cityscapes]", "data.n_labelled=3", "data.workers=1",
                 "data.batch_size=3"))


def test_a_partial_dataset_is_an_error_unless_asked_for(city_root):
    with pytest.raises(SourceError, match=r"3 image/label pairs .* expected 2975 .*data check cityscapes"):
        load_domain(_cfg("data.domains=[cityscapes]", "data.n_labelled=1", "data.check_counts=true").data,
                    "cityscapes")


def test_data_split_exports_the_split_a_run_draws(city_root, tmp_path, capsys):
    from unisemi.cli import main
    assert main(["data", "split", "cityscapes", "--n", "2", "--seed", "1", "--out", str(tmp_path / "s")]) == 0
    dd = load_domain(_cfg("data.domains=[cityscapes]", "data.n_labelled=2", "data.split_seed=1").data,
                     "cityscapes")
    labelled = read_split_list(tmp_path / "s" / "labeled.txt", city_root)
    unlabelled = read_split_list(tmp_path / "s" / "unlabeled.txt", city_root)
    assert [p[0] for p in labelled] == [dd.train_pairs[i][0] for i in dd.labelled.tolist()]
    assert [p[0] for p in unlabelled] == [dd.train_pairs[i][0] for i in dd.unlabelled.tolist()]
    assert dd.split_hash in capsys.readouterr().out


def test_different_sizes_without_a_crop_say_what_to_set(city_root):
    with pytest.raises(SourceError, match="data.crop"):
        fit(_cfg("data.domains=[cityscapes]", "data.n_labelled=3", "data.batch_size=3",
                 "data.resize=[0,0]", "data.crop=[0,0]"))


def test_a_source_only_dataset_cannot_be_evaluated(tmp_path, monkeypatch):
    _build("gta5", tmp_path)
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))
    with pytest.raises(SourceError, match="gta5 has no validation split"):
        fit(_cfg("data.domains=[gta5]", "data.n_labelled=2"))


@pytest.mark.parametrize("override, key", [
    ("data.roots.citiscapes=/x", "data.roots.citiscapes"),
    ("data.crop=[32]", "data.crop"),
    ("data.scale=[1.5,0.5]", "data.scale"),
    ("data.workers=-1", "data.workers"),
])
def test_pipeline_keys_are_checked(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])


def test_a_method_relabelling_in_memory_only_is_refused_on_a_real_dataset(tmp_path, monkeypatch):
    # real streams crop in their workers: a method's generated labels reach them only as files
    # (`label_files`); an in-memory relabel alone would leave the ground truth in the loss, silently
    from unisemi.train import Batches
    _build("pascal_voc", tmp_path)
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))
    cfg = _cfg("data.domains=[pascal_voc]", "data.n_labelled=2")
    domains = {"pascal_voc": load_domain(cfg.data, "pascal_voc")}
    with pytest.raises(ValueError, match="pascal_voc.*label_files.*embedded-world"):
        Batches(cfg, domains, False, "cpu", 0, relabel=lambda d, i, y: y)
    # with files (none to replace here) the same method streams
    assert Batches(cfg, domains, False, "cpu", 0, relabel=lambda d, i, y: y,
                   label_files=lambda d: {}).next()["labelled"]["pascal_voc"][1].shape == (2, 32, 32)


# ---------------------------------------------------------------------------------------------
# SUN RGB-D's scored split (data.sunrgbd_val)

def test_sunrgbd_is_scored_on_test_or_on_the_475_val37_images(tmp_path):
    fx.sunrgbd_tree(tmp_path)
    base = ["data.domains=[sunrgbd]", "data.n_labelled=1", f"data.roots.sunrgbd={tmp_path}"]

    def scored(*more):
        dd = load_domain(_cfg(*base, *more).data, "sunrgbd")
        return [p[0].relative_to(tmp_path).as_posix() for p in dd.val_pairs]

    test = [f"image/test/img-{n:06d}.jpg" for n in fx.SUN_NUMBERS["test"]]
    val37 = [f"image/test/img-{n:06d}.jpg" for n in fx.SUN_VAL]
    assert scored() == test                                  # the default: what stored tables ran
    assert scored("data.sunrgbd_val=test") == test
    assert scored("data.sunrgbd_val=val37") == val37         # split/val37.txt, a subset of test
    assert scored("data.sunrgbd_val=val37", "data.val_images=1") == val37[:1]
    # the train pool is the same either way
    a = load_domain(_cfg(*base).data, "sunrgbd").train_pairs
    assert a == load_domain(_cfg(*base, "data.sunrgbd_val=val37").data, "sunrgbd").train_pairs


def test_sunrgbd_val_names_its_values():
    with pytest.raises(ConfigError, match=r"key 'data.sunrgbd_val': 'val' is not valid, expected test \| val37"):
        _cfg("data.sunrgbd_val=val")


def test_only_sunrgbd_reads_the_setting(city_root):
    dd = load_domain(_cfg("data.domains=[cityscapes]", "data.n_labelled=1", "data.sunrgbd_val=val37").data,
                     "cityscapes")
    assert dd.val_split == "val"           # Cityscapes' own val split, untouched
