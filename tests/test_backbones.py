"""The papers' backbones: output stride and channels as published, where the stride and the
dilations sit, and the published key layouts loading completely into them."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from published_layouts import published_file
from unisemi.models import build_model
from unisemi.models.encoders import ENCODERS

PAPER = ("deeplabv2_resnet101", "deeplabv2_resnet101_imagenet", "vgg16_largefov", "drn_d_22")


def _meta_out(name: str, size: int) -> dict:
    with torch.device("meta"):          # shapes only: a ResNet-101 at 512x512 costs nothing
        enc = ENCODERS[name](8)
        out = enc(torch.empty(1, 3, size, size))
    shapes = {k: tuple(v.shape[1:]) for k, v in out.items()}
    assert (enc.out_channels, enc.low_channels) == (shapes["out"][0], shapes["low"][0])
    return shapes


@pytest.mark.parametrize("name, size, out, low", [
    # DeepLabv2 with the ceil-mode pool: 321 -> 41 (VOC crops), 512 -> 65 (Cityscapes crops).
    ("deeplabv2_resnet101", 321, (2048, 41, 41), (256, 81, 81)),
    ("deeplabv2_resnet101", 512, (2048, 65, 65), (256, 129, 129)),
    # The release's ImageNet variant floors like torchvision: 512 -> 64.
    ("deeplabv2_resnet101_imagenet", 321, (2048, 41, 41), (256, 81, 81)),
    ("deeplabv2_resnet101_imagenet", 512, (2048, 64, 64), (256, 128, 128)),
    # LargeFOV: Caffe pools round up too; fc7 has 1024 channels.
    ("vgg16_largefov", 321, (1024, 41, 41), (256, 81, 81)),
    ("vgg16_largefov", 512, (1024, 65, 65), (256, 129, 129)),
    # DRN-D: three stride-2 stages (layer2-4), 512 channels out, layer3 (64) at stride 4.
    ("drn_d_22", 512, (512, 64, 64), (64, 128, 128)),
    ("drn_d_22", 321, (512, 41, 41), (64, 81, 81)),
])
def test_output_stride_and_channels_as_published(name, size, out, low):
    shapes = _meta_out(name, size)
    assert shapes["out"] == out and shapes["low"] == low


def test_torchvision_layout_floors_where_deeplabv2_rounds_up():
    assert _meta_out("resnet101", 512)["out"] == (2048, 64, 64)


@pytest.mark.parametrize("name", PAPER)
def test_paper_encoders_are_output_stride_8_only(name):
    with pytest.raises(ValueError, match=f"{name} is published at output stride 8 only; got model.output_stride=16"):
        ENCODERS[name](16)


def test_deeplabv2_stride_on_the_first_1x1_and_its_dilations():
    with torch.device("meta"):
        enc, tv = ENCODERS["deeplabv2_resnet101"](8), ENCODERS["resnet101"](8)
    first = enc.layer2[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
    assert first.downsample[0].stride == (2, 2)
    assert enc.layer3[0].conv1.stride == (1, 1) and enc.layer4[0].conv1.stride == (1, 1)
    # Every block of layer3 / layer4, the first included, dilates by 2 / 4 (torchvision: 1 / 2 first).
    assert {b.conv2.dilation for b in enc.layer3} == {(2, 2)}
    assert {b.conv2.dilation for b in enc.layer4} == {(4, 4)}
    assert tv.layer2[0].conv1.stride == (1, 1) and tv.layer2[0].conv2.stride == (2, 2)
    assert tv.layer3[0].conv2.dilation == (1, 1) and tv.layer4[0].conv2.dilation == (2, 2)
    assert enc.maxpool.ceil_mode and not tv.maxpool.ceil_mode


def test_deeplabv2_imagenet_variant_strides_the_3x3_with_deeplab_dilations():
    """The contrastive release's deeplabv2_imagenet.py: torchvision's block, DeepLab's dilations."""
    with torch.device("meta"):
        enc = ENCODERS["deeplabv2_resnet101_imagenet"](8)
    assert enc.layer2[0].conv1.stride == (1, 1) and enc.layer2[0].conv2.stride == (2, 2)
    assert {b.conv2.dilation for b in enc.layer3} == {(2, 2)} and {b.conv2.dilation for b in enc.layer4} == {(4, 4)}
    assert not enc.maxpool.ceil_mode and not enc.bn1.weight.requires_grad


def test_deeplabv2_batch_norm_affine_is_frozen_but_statistics_update():
    with torch.device("meta"):
        enc = ENCODERS["deeplabv2_resnet101"](8)
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 104 and not any(p.requires_grad for m in bns for p in m.parameters())
    # As in the releases: scale and shift stay, running statistics are still tracked in train mode.
    assert all(m.track_running_stats and m.momentum == 0.1 for m in bns)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 104 and all(m.weight.requires_grad for m in convs)


def test_same_weights_compute_differently_in_the_caffe_and_torchvision_layouts():
    """The COCO file's trunk loads by name into both (identical key sets), but the stride placement
    and the dilations differ, so the outputs do too: it must go into deeplabv2_resnet101."""
    trunk = {k: v for k, v in published_file("coco-deeplabv2-resnet101")[1].items()
             if not k.startswith("layer5.")}
    with torch.device("meta"):          # no random init to pay for: every tensor is loaded
        caffe, tv = ENCODERS["deeplabv2_resnet101"](8), ENCODERS["resnet101"](8)
        dl_tv = ENCODERS["deeplabv2_resnet101_imagenet"](8)
    for enc in (caffe, tv, dl_tv):
        enc.to_empty(device="cpu")
        assert enc.load_state_dict(trunk, strict=False).missing_keys == []
    x = torch.randn(1, 3, 65, 65, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b, c = caffe.eval()(x)["out"], tv.eval()(x)["out"], dl_tv.eval()(x)["out"]
    assert a.shape == b.shape == c.shape == (1, 2048, 9, 9)
    def rel(p, q):
        return float((p - q).norm() / q.norm())
    # The case (stride placement and first-block dilations): 38% on these weights.
    assert rel(a, b) > 0.1, rel(a, b)
    # Each difference alone still shows (stride placement: 4.8%; first-block dilations: 37%).
    assert rel(a, c) > 0.01 and rel(c, b) > 0.1, (rel(a, c), rel(c, b))


def test_vgg16_largefov_structure():
    enc = ENCODERS["vgg16_largefov"](8)
    assert enc.fc6.dilation == (12, 12) and enc.fc6.padding == (12, 12)
    assert tuple(enc.fc6.weight.shape) == (1024, 512, 3, 3) and tuple(enc.fc7.weight.shape) == (1024, 1024, 1, 1)
    pools = {i: m.stride for i, m in enumerate(enc.features) if isinstance(m, torch.nn.MaxPool2d)}
    assert pools == {4: 2, 9: 2, 16: 2, 23: 1, 30: 1}
    assert {enc.features[i].dilation for i in (24, 26, 28)} == {(2, 2)}


def test_drn_d_22_dilations_as_fyu_drn():
    enc = ENCODERS["drn_d_22"](8)
    assert [b.conv1.dilation for b in enc.layer5] == [(2, 2), (2, 2)]
    assert [b.conv1.dilation for b in enc.layer6] == [(4, 4), (4, 4)]
    assert enc.layer7[0].dilation == (2, 2) and enc.layer8[0].dilation == (1, 1)
    assert enc.layer0[0].stride == (1, 1) and enc.layer2[0].stride == (2, 2)


@pytest.mark.parametrize("name, weights", [("deeplabv2_resnet101", "coco-deeplabv2-resnet101"),
                                           ("vgg16_largefov", "imagenet-vgg16"),
                                           ("drn_d_22", "imagenet-drn-d-22")])
def test_published_layout_loads_and_changes_the_forward(name, weights, monkeypatch):
    path, state = published_file(weights)
    monkeypatch.setenv("UNISEMI_WEIGHTS", str(path.parent))
    cfg = SimpleNamespace(encoder=name, output_stride=8, head="fcn", pretrained="none")
    torch.manual_seed(0)
    scratch = build_model(cfg, {"d": 3})
    torch.manual_seed(0)
    loaded = build_model(SimpleNamespace(**{**vars(cfg), "pretrained": weights}), {"d": 3})
    x = torch.randn(1, 3, 65, 65, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = scratch.eval().encode(x)["out"], loaded.eval().encode(x)["out"]
    assert a.shape == b.shape and not torch.allclose(a, b)
    # The file's tensors under our names are the encoder's now (fc6 / fc7 are converted: test_weights).
    mine = loaded.encoder.state_dict()
    same = [k for k in state if k in mine]
    assert len(same) == len([k for k in mine if not k.endswith("num_batches_tracked")
                             and not k.startswith(("fc6.", "fc7."))])
    assert all(torch.equal(mine[k], state[k]) for k in same)


@pytest.mark.parametrize("name, features", [("deeplabv2_resnet101", (2048, 41, 41)),
                                            ("vgg16_largefov", (1024, 41, 41)), ("drn_d_22", (512, 41, 41))])
def test_paper_encoders_are_priced_from_flops(name, features):
    """cost.py prices a step from FLOPs counted on the meta device: the new encoders just work."""
    import dataclasses

    from unisemi.ablation.step_flops import model_pass
    from unisemi.config import ModelConfig
    mc = dataclasses.replace(ModelConfig(), encoder=name, output_stride=8, head="aspp")
    fwd, shape = model_pass(mc, 21, (321, 321), False)
    both, _ = model_pass(mc, 21, (321, 321), True)
    assert shape == features and fwd > 1e10 and 2 * fwd < both < 4 * fwd
