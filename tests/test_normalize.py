"""data.normalize: the input each published weight file was trained on, and laptop runs unchanged."""
from __future__ import annotations

import pytest
import torch

from unisemi.config import ConfigError, load_config
from unisemi.data.transforms import (expected_by_weights, input_scheme, normalize, normalize_float)
from unisemi.models.published import PUBLISHED

# one pixel, R = 255, G = 0, B = 128, and a second one, black
PIXELS = torch.tensor([[255, 0], [0, 0], [128, 0]], dtype=torch.uint8).view(1, 3, 1, 2)


def test_imagenet_is_rgb_over_255_minus_mean_over_std_by_hand():
    out = normalize(PIXELS, "imagenet")[0, :, 0, 0]
    want = torch.tensor([(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225])
    assert torch.allclose(out, want, atol=1e-6)
    assert out.dtype == torch.float32


def test_caffe_bgr_is_bgr_on_0_255_minus_the_caffe_mean_by_hand():
    out = normalize(PIXELS, "caffe_bgr")
    # channel 0 is blue: 128 - 104.00698793; channel 2 is red: 255 - 122.67891434; no std
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([23.99301207, -116.66876762, 132.32108566]), atol=1e-4)
    assert torch.allclose(out[0, :, 0, 1], torch.tensor([-104.00698793, -116.66876762, -122.67891434]), atol=1e-4)


def test_channel_order_a_pure_blue_image_lands_in_channel_0_under_caffe_bgr_only():
    blue = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    blue[:, 2] = 200
    caffe, imagenet = normalize(blue, "caffe_bgr"), normalize(blue, "imagenet")
    assert torch.allclose(caffe[:, 0], torch.full((1, 2, 2), 200 - 104.00698793), atol=1e-4)
    assert torch.allclose(imagenet[:, 2], torch.full((1, 2, 2), (200 / 255 - 0.406) / 0.225), atol=1e-5)
    # the uint8 input is not changed in place
    assert int(blue[0, 2, 0, 0]) == 200 and int(blue[0, 0, 0, 0]) == 0


@pytest.mark.parametrize("scheme", ["imagenet", "caffe_bgr"])
def test_float_images_in_0_1_normalise_as_their_uint8_version(scheme):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 4, 5), generator=g, dtype=torch.uint8)
    assert torch.allclose(normalize_float(x.float() / 255.0, scheme), normalize(x, scheme), atol=1e-4)


def test_unknown_scheme_is_one_line():
    with pytest.raises(ValueError, match=r"data.normalize='bgr': expected one of imagenet, caffe_bgr or weights"):
        normalize(PIXELS, "bgr")
    with pytest.raises(ValueError, match=r"data.normalize='bgr'"):
        normalize_float(PIXELS.float(), "bgr")


def test_the_default_imagenet_path_is_bit_identical_to_the_old_formula():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (3, 3, 8, 8), generator=g, dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.equal(normalize(x), (x.float() / 255.0 - mean) / std)
    assert torch.equal(normalize_float(x.float() / 255.0), (x.float() / 255.0 - mean) / std)


def test_every_published_file_says_its_input_and_weights_follows_it():
    assert {n: p.normalize for n, p in PUBLISHED.items()} == {
        "imagenet-resnet101": "imagenet", "imagenet-resnet18": "imagenet",
        "coco-deeplabv2-resnet101": "caffe_bgr", "coco-deeplabv2-resnet101-adaptsegnet": "caffe_bgr",
        "imagenet-vgg16": "imagenet", "imagenet-drn-d-22": "imagenet"}
    for value in ("none", "synthetic", "/some/file.pth"):
        assert expected_by_weights(value) == "imagenet"
    coco = load_config(None, ["model.encoder=deeplabv2_resnet101", "model.pretrained=coco-deeplabv2-resnet101"])
    assert coco.data.normalize == "weights" and input_scheme(coco) == "caffe_bgr"
    explicit = load_config(None, ["model.encoder=deeplabv2_resnet101", "model.pretrained=coco-deeplabv2-resnet101",
                                  "data.normalize=caffe_bgr"])
    assert input_scheme(explicit) == "caffe_bgr"


def test_a_scheme_the_weights_were_not_trained_on_is_a_config_error():
    with pytest.raises(ConfigError, match=r"key 'data.normalize': 'imagenet' is not valid, expected caffe_bgr "
                                          r"or weights: model.pretrained=coco-deeplabv2-resnet101 was trained"):
        load_config(None, ["model.encoder=deeplabv2_resnet101", "model.pretrained=coco-deeplabv2-resnet101",
                           "data.normalize=imagenet"])
    with pytest.raises(ConfigError, match=r"'caffe_bgr' is not valid, expected imagenet or weights"):
        load_config(None, ["model.encoder=resnet18", "model.pretrained=imagenet-resnet18",
                           "data.normalize=caffe_bgr"])
    # without published weights any scheme is the user's choice
    assert input_scheme(load_config(None, ["data.normalize=caffe_bgr"])) == "caffe_bgr"


def test_a_laptop_run_feeds_the_same_batch_as_before():
    """The Batches of an embedded-world run (data.normalize at its default) give the tensors the
    old `normalize` gave: same bits, so every stored laptop table computes as it did."""
    from unisemi.data import load_domain
    from unisemi.train import Batches
    cfg = load_config(None, ["data.domains=[city]", "data.n_labelled=4", "data.batch_size=2", "data.size=[32,32]"])
    assert input_scheme(cfg) == "imagenet"
    domains = {"city": load_domain(cfg.data, "city")}
    batch = Batches(cfg, domains, needs_unlabelled=False, device="cpu", rank=0).next()
    x, _ = batch["labelled"]["city"]
    again = Batches(cfg, domains, needs_unlabelled=False, device="cpu", rank=0)
    again._image = lambda raw: raw           # the uint8 batch the same draws give
    raw, _ = again.next()["labelled"]["city"]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert raw.dtype == torch.uint8
    assert torch.equal(x, (raw.float() / 255.0 - mean) / std)
