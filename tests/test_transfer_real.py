"""The transfer method on a real PASCAL VOC tree: image-level labels from whole masks, streams that
carry image-level labels and a method's generated label files (same crop and flip as the image,
exact resume), and short fits of both phases whose weak-image labels are the stage's PNG maps."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import fixtures_real as fx
from unisemi.config import ConfigError, load_config
from unisemi.data import load_domain, pipeline, real
from unisemi.data.sources import pascal_voc
from unisemi.data.sources._common import read_rgb
from unisemi.data.sources.errors import SourceError
from unisemi.methods.transfer import labels as transfer_labels
from unisemi.train import fit

CROP = 8
# The fixture tree's own four train_aug images hold aeroplane (weak in split 1), person and
# tvmonitor in bands; these add images of strong categories only (car 7, person 15, cat 8) and
# weak ones (bird 3, only in a 2x2 corner: outside most 8x8 crops), in sizes that differ.
EXTRA = [("2009_000001", (20, 26), (7,), ()), ("2009_000002", (22, 18), (15,), ()),
         ("2009_000003", (18, 24), (8, 15), ()), ("2009_000004", (24, 20), (7,), (3,)),
         ("2009_000005", (26, 22), (15,), (3,))]


def extra_mask(h: int, w: int, strong, corner) -> np.ndarray:
    """Background, the strong classes in blocks with a 255 border (as VOC draws them), and the
    `corner` class in the top-left 2x2 only."""
    mask = np.zeros((h, w), np.uint8)
    for j, c in enumerate(strong):
        mask[h // 3:h - 2, 3 + j * (w // 2):(j + 1) * (w // 2)] = c
    edges = np.zeros_like(mask, dtype=bool)
    edges[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edges[1:, :] |= mask[1:, :] != mask[:-1, :]
    mask[edges] = 255
    for c in corner:
        mask[:2, :2] = c
    return mask


@pytest.fixture
def tree(tmp_path):
    """<tmp>/pascal_voc: the fixture VOC tree plus EXTRA, listed in aug.txt."""
    root = tmp_path / "pascal_voc"
    made = fx.voc_tree(root, aug_list=True)
    voc = made["voc"]
    for k, (img_id, (h, w), strong, corner) in enumerate(EXTRA):
        fx.write_rgb(voc / "JPEGImages" / f"{img_id}.jpg", w, h, seed=20 + k)
        mask = extra_mask(h, w, strong, corner)
        fx.write_palette(voc / "SegmentationClassAug" / f"{img_id}.png", mask, pascal_voc.voc_colormap())
        made["masks"][img_id] = mask
    ids = [*fx.VOC_SPLITS["train"], *fx.VOC_SBD_ONLY, *(e[0] for e in EXTRA)]
    (voc / "ImageSets" / "Segmentation" / "aug.txt").write_text("\n".join(ids))
    return {"root": root, **made}


def _data(tree, *overrides):
    return load_config(None, [f"data.roots.pascal_voc={tree['root']}", "data.domains=[pascal_voc]",
                              "data.check_counts=false", "data.n_labelled=9", f"data.crop=[{CROP},{CROP}]",
                              "data.workers=0", *overrides]).data


def _by_hand(dd, geo, seed: int, k: int, i: int, label: np.ndarray):
    """Sample k (pool pair i) of a stream, through `apply_geometry` with the stream's generator."""
    image = read_rgb(dd.train_pairs[i][0])
    return pipeline.apply_geometry(image, label, geo, np.random.default_rng([seed, k]))


def _positions(pool, seed: int, batches: int, b: int):
    order = pipeline.EpochOrder(pool, seed)
    return [[(k, order(k)) for k in range(n * b, (n + 1) * b)] for n in range(batches)]


def _truth_reads(monkeypatch) -> list:
    """Label paths read as ground truth pixel maps from here on (workers=0: in this process)."""
    reads = []
    read_truth = real._read_labelled
    monkeypatch.setattr(real, "_read_labelled", lambda *a: reads.append(str(a[3])) or read_truth(*a))
    return reads


# ---------------------------------------------------------------------------------------------
# image-level labels

def test_image_level_labels_come_from_the_whole_mask_not_the_crop(tree):
    dd = load_domain(_data(tree, "data.workers=1"), "pascal_voc")
    pool = real.image_labels(dd)
    masks = [pascal_voc.read_label(lab) for _, lab in dd.train_pairs]
    want = torch.from_numpy(np.stack([pascal_voc.image_labels(m, include_background=True) for m in masks]))
    assert torch.equal(pool, want) and pool.shape == (9, 21) and not pool[:, 3].all()
    names = [image.stem for image, _ in dd.train_pairs]
    assert torch.nonzero(pool[names.index("2009_000004")]).flatten().tolist() == [0, 3, 7]  # bg, bird, car
    assert torch.nonzero(pool[names.index("2007_000032")]).flatten().tolist() == [0, 1, 15, 20]
    # the stream's per-sample vector, computed in a worker from the whole mask before the crop
    stream = dd.pool_stream(dd.labelled, 3, seed=5, labels=True, classes=True)
    corner_dropped = 0
    for batch in _positions(dd.labelled, 5, 3, 3):
        x, y, present = stream.next()
        assert present.dtype == torch.bool and present.shape == (3, 21)
        for j, (k, i) in enumerate(batch):
            assert torch.equal(present[j], pool[i])
            _, cropped = _by_hand(dd, dd.geometry, 5, k, i, masks[i])
            assert np.array_equal(y[j].numpy(), cropped)
            corner_dropped += bool(pool[i, 3]) and 3 not in cropped
    assert corner_dropped        # bird lay only outside the crop and still counted
    stream.close()


def test_a_bad_mask_is_an_error_naming_the_file(tree):
    bad = tree["voc"] / "SegmentationClassAug" / "2009_000003.png"
    fx.write_grey(bad, np.full((5, 5), 77, np.uint8))              # 77 is no VOC class
    dd = load_domain(_data(tree, "data.workers=1"), "pascal_voc")
    with pytest.raises(SourceError, match=r"image-level labels.*2009_000003\.png.*77"):
        real.image_labels(dd)


# ---------------------------------------------------------------------------------------------
# generated labels through the stream

def _write_maps(tree, dd, folder, indices):
    """Random maps (0..20 and some 255) at each image's native size, as the diffusion stage writes."""
    rng = np.random.default_rng(0)
    files = {}
    for i in indices:
        h, w = read_rgb(dd.train_pairs[i][0]).shape[:2]
        m = rng.integers(0, 21, (h, w)).astype(np.uint8)
        m[rng.random((h, w)) < 0.1] = 255
        files[i] = folder / f"{i}.png"
        Image.fromarray(m, "L").save(files[i])
    return files


def test_generated_labels_follow_the_images_crop_and_flip_and_replace_the_truth(tree, tmp_path, monkeypatch):
    cfg = _data(tree, "data.scale=[0.8,1.6]", "data.hflip=true")
    dd = load_domain(cfg, "pascal_voc")
    files = _write_maps(tree, dd, tmp_path, [0, 3, 5, 8])
    truth_reads = _truth_reads(monkeypatch)
    stream = dd.stream("labelled", 3, seed=9, part=(0, 1), pin_memory=False, replacements=files)
    for batch in _positions(dd.labelled, 9, 6, 3):      # two epochs: every image, several draws
        x, y = stream.next()
        for j, (k, i) in enumerate(batch):
            label = np.asarray(Image.open(files[i])) if i in files else pascal_voc.read_label(dd.train_pairs[i][1])
            want_x, want_y = _by_hand(dd, dd.geometry, 9, k, i, label)
            assert np.array_equal(x[j].permute(1, 2, 0).numpy(), want_x)
            assert np.array_equal(y[j].numpy(), want_y), (k, i)
    replaced = {str(dd.train_pairs[i][1]) for i in files}
    assert truth_reads and not replaced & set(truth_reads)      # never read, not just unused


def test_a_generated_map_of_the_wrong_size_names_its_file(tree, tmp_path):
    dd = load_domain(_data(tree), "pascal_voc")
    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.zeros((3, 4), np.uint8), "L").save(wrong)
    stream = dd.stream("labelled", 9, seed=0, part=(0, 1), pin_memory=False, replacements={2: wrong})
    with pytest.raises(SourceError, match=r"wrong\.png.*4x3.*native size"):
        stream.next()


def test_a_stream_with_generated_labels_resumes_exactly(tree, tmp_path):
    dd = load_domain(_data(tree, "data.workers=1", "data.scale=[0.75,1.5]"), "pascal_voc")
    files = _write_maps(tree, dd, tmp_path, [1, 2, 6])

    def stream():
        return dd.pool_stream(dd.labelled, 2, seed=4, classes=True, replacements=files)

    straight = stream()
    seen = [straight.next() for _ in range(6)]
    first = stream()
    for _ in range(2):
        first.next()
    resumed = stream()
    resumed.load_state_dict(first.state_dict())
    assert resumed.state_dict() == {"consumed": 2}
    for want in seen[2:]:
        assert all(torch.equal(a, b) for a, b in zip(resumed.next(), want))
    for s in (straight, first, resumed):
        s.close()


# ---------------------------------------------------------------------------------------------
# the method

TINY = ["method=transfer", "data.batch_size=2", "data.val_images=1", "model.width=8",
        "train.threads=1", "train.progress=false", "train.iterations=2", "train.eval_every=2",
        "transfer.lnet_iterations=2", "transfer.cam_iterations=2", "transfer.diffusion_workers=0",
        "transfer.diffusion_segments=10", "transfer.segmenter_iterations=2",
        "transfer.pnet_pretrain_iterations=2"]


def _method_cfg(tree, *overrides):
    return load_config(None, [*TINY, f"data.roots.pascal_voc={tree['root']}", "data.domains=[pascal_voc]",
                              "data.check_counts=false", "data.n_labelled=9", f"data.crop=[{CROP},{CROP}]",
                              "data.workers=0", *overrides])


def test_split4_and_an_undividable_pnet_crop_are_config_errors_on_a_real_domain(tree):
    with pytest.raises(ConfigError, match=r"transfer.split.*strong_domain"):
        _method_cfg(tree, "transfer.split=4")
    with pytest.raises(ConfigError, match=r"transfer.pnet_size.*321"):
        _method_cfg(tree, "data.crop=[]", "transfer.phase=pnet")     # VOC's protocol crop, 321
    _method_cfg(tree, "data.crop=[]", "transfer.phase=pnet", "transfer.pnet_size=16")


def test_both_phases_fit_on_a_voc_tree_with_the_stage_maps_as_weak_labels(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path / "cache"))
    from unisemi.methods.transfer.setting import partition
    cfg = _method_cfg(tree)
    part = partition(cfg)
    dd = load_domain(cfg.data, "pascal_voc")
    names = [dd.train_pairs[i][0].stem for i in range(9)]
    # split 1: aeroplane and bird are weak; car, cat, person and tvmonitor strong
    assert [names[i] for i in part.strong.tolist()] == ["2009_000001", "2009_000002", "2009_000003"]
    assert len(part.weak) == 6
    # the loop's labelled stream is the one with generated labels: record what it yields
    seen = []
    get_item = pipeline.PairStream.__getitem__

    def recording(self, key):
        out = get_item(self, key)
        if self.replacements:
            seen.append((self.geometry, self.seed, key, out[1].numpy().copy()))
        return out

    monkeypatch.setattr(pipeline.PairStream, "__getitem__", recording)
    lnet_row = fit(cfg)
    stage = tmp_path / "cache" / "stages" / f"transfer-labels-{lnet_row['stages']['transfer-labels']}"
    weak = transfer_labels.load(stage)
    index = json.loads((stage / transfer_labels.INDEX_FILE).read_text())
    assert weak["indices"].tolist() == part.weak.tolist() == index["indices"]
    maps = {i: np.asarray(Image.open(f)) for i, f in zip(index["indices"], weak["files"])}
    for i, m in maps.items():       # each at its image's native size, a VOC label map
        assert m.shape == read_rgb(dd.train_pairs[i][0]).shape[:2] and m.dtype == np.uint8
        assert set(np.unique(m).tolist()) <= {*range(21), 255}
    # the pnet phase: its L-Net, CAM and labels stages are cached, its image-level labels known,
    # so no weak image's mask may be read at all (P-Net pre-training reads strong images only)
    reads = _truth_reads(monkeypatch)
    pnet_row = fit(_method_cfg(tree, "transfer.phase=pnet"))
    assert reads and not {str(dd.train_pairs[i][1]) for i in maps} & set(reads)
    for row in (lnet_row, pnet_row):
        assert row["final"]["loss"] and all(np.isfinite(v) for v in row["final"]["loss"].values())
        assert set(row["final"]["domains"]["pascal_voc"]["iou"]) == set(pascal_voc.CLASSES)
    assert set(pnet_row["final"]["loss"]) == {"seg:ce", "seg:adv", "pnet:bce"}
    # the lnet row, the pnet row's segmenter stage and the pnet row: weak labels are the maps,
    # strong labels the ground truth, each under the sample's own crop and flip
    weak_seen = 0
    for geo, seed, (k, i), y in seen:
        label = maps[i] if i in maps else pascal_voc.read_label(dd.train_pairs[i][1])
        assert np.array_equal(y, _by_hand(dd, geo, seed, k, i, label)[1]), (k, i)
        weak_seen += i in maps
    # lnet row, the pnet row's segmenter stage, the pnet row: 2 iterations of 2 images each, and
    # what each stream's thread fetched ahead of its loop (up to data.prefetch batches)
    assert len(seen) >= 3 * 2 * 2 and weak_seen


# ---------------------------------------------------------------------------------------------
# the paper profile of transfer/table2, end to end

# The profile's settings shrunk to seconds: a tiny encoder, 2 iterations everywhere, 16x16 crops.
# model.pretrained=none: the profile names ImageNet VGG-16 weights, which a tiny encoder cannot take
SMALL = ["model.encoder=tiny", "model.pretrained=none", "model.width=8", "model.head=fcn", "data.batch_size=2",
         "data.crop=[16,16]", "data.workers=1", "data.check_counts=false", "data.val_images=1",
         "train.iterations=2", "train.eval_every=2", "train.threads=1", "transfer.lnet_iterations=2",
         "transfer.cam_iterations=2", "transfer.segmenter_iterations=2",
         "transfer.pnet_pretrain_iterations=2", "transfer.diffusion_segments=10",
         "transfer.diffusion_workers=0"]


@pytest.mark.slow
def test_table2_paper_profile_runs_on_a_voc_tree(tree, tmp_path, monkeypatch):
    from unisemi.ablation import cli
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))              # holds pascal_voc/
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path / "cache"))
    args = ["transfer/table2", "--profile", "paper", "--seeds", "1", "--only", "row=split1_lnet",
            "--only", "row=split1_pnet", "--results", str(tmp_path / "results")]
    for item in SMALL:
        args += ["--set", item]
    assert cli.main(args) == 0
    rows = pd.read_parquet(tmp_path / "results" / "rows")
    final = rows[rows.is_final]
    assert sorted(final.cell) == ["row=split1_lnet", "row=split1_pnet"]
    assert (final.status == "ok").all() and (final.profile == "paper").all()
    assert (final.domain == "pascal_voc").all() and (final.domain_key == "voc").all()
    for _, row in final.iterrows():
        config = json.loads(row.config_json)
        assert config["data"]["domains"] == ["pascal_voc"] and config["method"] == "transfer"
        assert config["data"]["labelled_fraction"] == 1.0 and np.isfinite(row.miou)
        assert set(json.loads(row.stages_json)) >= {"transfer-lnet", "transfer-cam", "transfer-labels"}
    assert row.split_id == "pascal_voc/n9/s0"
    table = (tmp_path / "results" / "tables" / "transfer" / "table2" / "table.md").read_text()
    assert "Profile: paper" in table and "Split 1: L-Net" in table
