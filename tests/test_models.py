"""Behavioural tests for unisemi.models (CPU, small inputs)."""
from dataclasses import dataclass, replace

import pytest
import torch

from unisemi.models import ENCODERS, HEADS, SegmentationModel, build_model, encode_parts
from unisemi.models.weights import load_encoder_weights


@dataclass
class ModelCfg:
    # Mirrors the model fields of unisemi.config (owned by the lead).
    encoder: str = "tiny"
    output_stride: int = 8
    width: int = 32
    head: str = "fcn"
    aspp_rates: tuple = (6, 12, 18, 24)
    aspp_active_branches: int = 4
    decoder_channels: int = 256
    pretrained: str = "none"


SPACES = {"cityscapes": 19, "voc": 21}


def _cfg(**kw):
    return replace(ModelCfg(), **kw)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These convs are tiny; extra OpenMP threads only add sync overhead and
    # make the suite very slow when the CPU is shared with other jobs.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("encoder", ["tiny", "resnet18"])
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("os_", [8, 16])
def test_shapes_per_head_and_domain(encoder, head, os_):
    dec = 32 if encoder == "tiny" else 64  # small decoder keeps the test fast
    model = build_model(_cfg(encoder=encoder, head=head, output_stride=os_,
                             decoder_channels=dec), SPACES).eval()
    x = torch.randn(2, 3, 64, 96)
    feat_stride = 4 if head == "deeplabv3plus" else os_
    with torch.no_grad():
        for domain, n in SPACES.items():
            out = model(x, domain)
            assert out["logits"].shape == (2, n, 64, 96)
            assert out["features"].shape == (2, model.feature_channels, 64 // feat_stride,
                                             96 // feat_stride)
            assert out["encoder"].shape == (2, model.encoder_channels, 64 // os_, 96 // os_)
            dec_out = model.decode(model.encode(x), domain, None)
            assert dec_out["logits"].shape[-2:] == out["features"].shape[-2:]
    if head != "deeplabv3plus":
        assert model.feature_channels == model.encoder_channels


@pytest.mark.parametrize("name,low,out", [("resnet50", 256, 2048), ("resnet101", 256, 2048),
                                          ("resnet34", 64, 512)])
def test_deep_resnets_os8(name, low, out):
    enc = ENCODERS[name](8, 64).eval()
    assert (enc.low_channels, enc.out_channels) == (low, out)
    with torch.no_grad():
        f = enc(torch.randn(1, 3, 64, 64))
    assert f["low"].shape == (1, low, 16, 16)
    assert f["out"].shape == (1, out, 8, 8)


def test_tiny_param_count_and_width():
    n = sum(p.numel() for p in ENCODERS["tiny"](8, 32).parameters())
    assert 0.4e6 <= n <= 0.8e6
    assert sum(p.numel() for p in ENCODERS["tiny"](8, 16).parameters()) < n


def _resnet18_keys():
    return set(ENCODERS["resnet18"](8, 64).state_dict())


def test_torchvision_names():
    keys = _resnet18_keys()
    for k in ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
              "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight",
              "layer4.1.bn2.bias"]:
        assert k in keys
    assert not any(k.startswith("fc.") for k in keys)
    assert "layer3.0.conv3.weight" in ENCODERS["resnet50"](16, 64).state_dict()


def test_load_torchvision_style_checkpoint(tmp_path):
    src = ENCODERS["resnet18"](8, 64)
    state = {k: v.clone() for k, v in src.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    dst = ENCODERS["resnet18"](16, 64)  # OS does not change parameter shapes
    rep = load_encoder_weights(dst, path)
    assert set(rep["loaded"]) == set(src.state_dict())
    assert rep["unexpected"] == ["fc.bias", "fc.weight"]
    assert rep["missing"] == [] and rep["mismatched"] == []
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_wrapped_prefixed_checkpoint_missing_and_mismatched(tmp_path):
    src = ENCODERS["resnet18"](8, 64)
    state = {"module.backbone." + k: v for k, v in src.state_dict().items()}
    del state["module.backbone.layer4.1.conv2.weight"]
    state["module.backbone.conv1.weight"] = torch.randn(64, 3, 3, 3)  # wrong kernel size
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    dst = ENCODERS["resnet18"](8, 64)
    before = dst.conv1.weight.clone()
    rep = load_encoder_weights(dst, path)
    assert rep["missing"] == ["layer4.1.conv2.weight"]
    assert rep["mismatched"] == ["conv1.weight"]
    assert torch.equal(dst.conv1.weight, before)
    assert torch.equal(dst.layer1[0].conv1.weight, src.layer1[0].conv1.weight)


def test_weight_file_errors(tmp_path):
    enc = ENCODERS["tiny"](8, 32)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_encoder_weights(enc, tmp_path / "nope.pth")
    bad = tmp_path / "junk.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_encoder_weights(enc, bad)


def test_build_model_loads_pretrained_path(tmp_path, caplog):
    src = ENCODERS["tiny"](8, 32)
    path = tmp_path / "tiny.pth"
    torch.save({"model": {"encoder." + k: v for k, v in src.state_dict().items()}}, path)
    with caplog.at_level("INFO", logger="unisemi"):
        model = build_model(_cfg(pretrained=str(path)), SPACES)
    assert torch.equal(model.encoder.stem[0].weight, src.stem[0].weight)
    assert "tiny.pth" in caplog.text
    with pytest.raises(ValueError, match="synthetic"):    # unknown keywords list the known ones
        build_model(_cfg(pretrained="imagenet"), SPACES)
    with pytest.raises(FileNotFoundError, match="gone.pth"):
        build_model(_cfg(pretrained=str(tmp_path / "gone.pth")), SPACES)


def test_aspp_active_branches_sums_first_k():
    model = build_model(_cfg(head="aspp", aspp_active_branches=2), {"a": 5}).eval()
    head = model.heads["a"]
    assert len(head.branches) == 4
    with torch.no_grad():
        feats = model.encode(torch.randn(2, 3, 64, 64))
        logits, _ = head(feats)
        x = feats["out"]
        expected = head.branches[0](x) + head.branches[1](x)
        full = sum(b(x) for b in head.branches)
    torch.testing.assert_close(logits, expected)
    assert not torch.allclose(logits, full)
    w = head.branches[3].weight
    assert abs(w.std().item() - 0.01) < 0.002


def test_domain_heads_are_isolated():
    model = build_model(_cfg(head="deeplabv3plus", decoder_channels=32), SPACES)
    out = model(torch.randn(2, 3, 64, 64), "cityscapes")
    out["logits"].sum().backward()
    assert all(p.grad is None for p in model.heads["voc"].parameters())
    assert all(p.grad is not None for p in model.heads["cityscapes"].parameters())
    assert model.encoder.stem[0].weight.grad is not None


def test_add_and_replace_head():
    model = build_model(_cfg(head="aspp"), {"src": 19})
    x = torch.randn(1, 3, 32, 32)
    model.replace_head("src", 7)
    assert model(x, "src")["logits"].shape[1] == 7
    model.add_head("tgt", 3)
    assert model(x, "tgt")["logits"].shape[1] == 3
    with pytest.raises(ValueError, match="tgt"):
        model.add_head("tgt", 4)
    with pytest.raises(KeyError, match="nowhere"):
        model.replace_head("nowhere", 4)


def test_unknown_names_are_reported():
    with pytest.raises(ValueError, match="vgg16.*resnet18"):
        build_model(_cfg(encoder="vgg16"), SPACES)
    with pytest.raises(ValueError, match="pspnet.*fcn"):
        build_model(_cfg(head="pspnet"), SPACES)
    with pytest.raises(ValueError, match="32.*8, 16"):
        build_model(_cfg(output_stride=32), SPACES)
    model = build_model(_cfg(), SPACES)
    with pytest.raises(KeyError, match="ade20k.*cityscapes"):
        model(torch.randn(1, 3, 32, 32), "ade20k")


def test_segmentation_model_is_constructible_directly():
    model = SegmentationModel(ENCODERS["tiny"](16, 16), HEADS["fcn"], {"a": 2})
    assert model(torch.randn(1, 3, 32, 32), "a")["logits"].shape == (1, 2, 32, 32)
    assert model.domains == ["a"]


def test_encode_parts_one_pass_per_image_size():
    model = build_model(_cfg(), SPACES)
    a, b, c = torch.randn(2, 3, 64, 64), torch.randn(1, 3, 48, 80), torch.randn(3, 3, 64, 64)
    feats = encode_parts(model, [a, b, c])
    # train mode: batch norm statistics come from the pass, so the same-size parts must share one
    joint = model.encode(torch.cat([a, c]))
    torch.testing.assert_close(feats[0]["out"], joint["out"][:2])
    torch.testing.assert_close(feats[2]["out"], joint["out"][2:])
    torch.testing.assert_close(feats[1]["out"], model.encode(b)["out"])
    assert [f["out"].shape[0] for f in feats] == [2, 1, 3]
    assert feats[1]["out"].shape[-2:] == (6, 10)          # 48x80 at output stride 8


def test_supervised_terms_take_domains_of_different_sizes():
    from unisemi.methods.supervised import supervised_terms
    model = build_model(_cfg(), SPACES)
    labelled = {"cityscapes": (torch.randn(2, 3, 64, 64), torch.randint(0, 19, (2, 64, 64))),
                "voc": (torch.randn(2, 3, 40, 56), torch.randint(0, 21, (2, 40, 56)))}
    terms = supervised_terms(model, labelled)
    assert set(terms) == {"sup/cityscapes", "sup/voc"}
    assert all(torch.isfinite(t) for t in terms.values())
