"""The embedded world: determinism, label spaces, frequencies, void, errors, preview CLI."""
import subprocess
import sys

import pytest
import torch

from unisemi.data import synthetic as S

COUNTS = {"city": 19, "town": 11, "rural": 26, "indoor": 37, "game": 19, "sim": 16, "objects": 21}


def test_same_key_same_pixels_whatever_the_batch_or_order():
    alone = [S.render("city", "train", [i]) for i in (3, 9, 5)]
    batch = S.render("city", "train", torch.tensor([5, 3, 9]))
    for k, i in enumerate((1, 2, 0)):
        assert torch.equal(batch[0][i], alone[k][0][0]) and torch.equal(batch[1][i], alone[k][1][0])
    S.render("indoor", "val", range(4))            # unrelated work in between changes nothing
    again = S.render("city", "train", [9, 5, 3])
    assert torch.equal(again[0][0], alone[1][0][0]) and torch.equal(again[0][2], alone[0][0][0])


def test_index_seed_and_split_change_the_image():
    base = S.render("city", "train", [7])[0]
    for other in (S.render("city", "train", [8])[0], S.render("city", "train", [7], seed=1)[0],
                  S.render("city", "val", [7])[0]):
        assert (base.float() - other.float()).abs().mean() > 5


def test_label_spaces():
    assert {d: len(s.classes) for d, s in S.DOMAINS.items()} == COUNTS
    assert S.get_domain("city").classes == (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
        "motorcycle", "bicycle")
    assert S.get_domain("town").classes == (
        "sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car",
        "pedestrian", "bicyclist")
    assert S.get_domain("game").classes == S.get_domain("city").classes
    assert S.get_domain("city").train_size == 2975 and S.get_domain("city").val_size == 500


@pytest.mark.parametrize("domain", sorted(COUNTS))
def test_every_domain_renders_at_default_and_custom_size(domain):
    spec = S.get_domain(domain)
    H, W = spec.size
    for size, shape in ((None, (H, W)), ((H + 16, 2 * W), (H + 16, 2 * W))):
        images, labels = S.render(domain, "train", range(6), size=size)
        assert images.dtype == torch.uint8 and images.shape == (6, 3, *shape)
        assert labels.dtype == torch.uint8 and labels.shape == (6, *shape)
        ok = (labels < spec.num_classes) | (labels == S.IGNORE_INDEX)
        assert ok.all()
        assert len(torch.unique(labels)) >= 3


def test_bigger_size_is_the_same_scene():
    _, small = S.render("city", "val", range(4))
    _, big = S.render("city", "val", range(4), size=(128, 256))
    down = big[:, 1::2, 1::2]                        # pixel centres shared by both grids
    assert (down == small).float().mean() > 0.85


def test_city_class_frequencies_are_long_tailed():
    spec = S.get_domain("city")
    _, labels = S.render("city", "train", range(200))
    present = torch.stack([(labels == c).flatten(1).any(1) for c in range(19)], 1).float().mean(0)
    freq = dict(zip(spec.classes, present.tolist()))
    for common in ("road", "building", "sky", "car", "vegetation"):
        assert freq[common] > 0.75, (common, freq[common])
    for rare in ("train", "bus", "truck", "motorcycle"):
        assert 0 < freq[rare] < 0.15, (rare, freq[rare])
    assert (labels == S.IGNORE_INDEX).any()          # void: ego hood, unlabelled clutter


def test_image_labels_match_the_rendered_labels():
    for domain in ("city", "objects", "indoor"):
        _, labels = S.render(domain, "val", range(10))
        tags = S.image_labels(domain, "val", range(10))
        n = S.get_domain(domain).num_classes
        assert tags.dtype == torch.bool and tags.shape == (10, n)
        for k in range(10):
            assert set(tags[k].nonzero().flatten().tolist()) == set(labels[k].unique().tolist()) - {255}


def test_objects_have_a_void_band_between_regions():
    _, labels = S.render("objects", "train", range(12))
    assert all((lab == 255).any() for lab in labels)
    lab = labels.long()
    for a, b in ((lab[:, :, 1:], lab[:, :, :-1]), (lab[:, 1:], lab[:, :-1])):
        touching = (a != 255) & (b != 255)
        assert (a[touching] == b[touching]).all()    # a label change always passes through 255
    objects = (lab > 0) & (lab != 255)
    assert objects.flatten(1).any(1).all()           # 1-3 objects in every image
    assert (lab == 255).float().mean() < 0.2         # a band, not a region


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="unknown domain 'mars'.*city"):
        S.render("mars", "train", [0])
    with pytest.raises(ValueError, match="unknown domain 'mars'"):
        S.get_domain("mars")
    with pytest.raises(ValueError, match="index 500 .*pool size 500"):
        S.render("city", "val", [0, 500])
    with pytest.raises(ValueError, match="index -1"):
        S.render("city", "train", [-1])
    with pytest.raises(ValueError, match="unknown split 'test'"):
        S.render("city", "test", [0])
    with pytest.raises(ValueError, match="size 60x128"):
        S.render("city", "train", [0], size=(60, 128))


def test_preview_cli_writes_png_and_rejects_bad_domain(tmp_path):
    out = tmp_path / "p.png"
    cmd = [sys.executable, "-m", "unisemi.data.synthetic", "preview"]
    ok = subprocess.run(cmd + ["--domain", "town", "--out", str(out), "--n", "2"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run(cmd + ["--domain", "mars", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "unknown domain 'mars'" in bad.stderr and "city" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
