"""Published weights by name: resolution under $UNISEMI_WEIGHTS, one converter per layout, a load
that is complete or one line of error, the partial switch, and `python -m unisemi weights check`."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
import torch

from published_layouts import published_file
from unisemi.cli import main as cli_main
from unisemi.models import build_model
from unisemi.models.encoders import ENCODERS
from unisemi.models.published import PUBLISHED, sha256_prefix
from unisemi.models.weights import compare, read_state_dict


def _cfg(encoder: str, pretrained: str, **kw):
    return SimpleNamespace(encoder=encoder, output_stride=8, width=32, head="fcn", pretrained=pretrained, **kw)


def _use(monkeypatch, name: str):
    path, state = published_file(name)
    monkeypatch.setenv("UNISEMI_WEIGHTS", str(path.parent))
    return path, state


def test_the_table_names_the_files_encoders_and_layouts():
    assert set(PUBLISHED) == {"imagenet-resnet101", "imagenet-resnet18", "coco-deeplabv2-resnet101",
                              "coco-deeplabv2-resnet101-adaptsegnet", "imagenet-vgg16", "imagenet-drn-d-22"}
    assert all(p.encoder in ENCODERS for p in PUBLISHED.values())
    assert PUBLISHED["coco-deeplabv2-resnet101"].files == ("resnet101COCO-41f33a49.pth",)
    assert sha256_prefix("resnet101-63fe2227.pth") == "63fe2227" and sha256_prefix("encoder.pt") is None


# (name, encoder, {our key: the file's key}) tensors that must arrive unchanged
DIRECT = [
    ("coco-deeplabv2-resnet101", "deeplabv2_resnet101",
     {"layer4.2.conv3.weight": "layer4.2.conv3.weight", "layer3.22.bn2.running_var": "layer3.22.bn2.running_var"}),
    ("coco-deeplabv2-resnet101-adaptsegnet", "deeplabv2_resnet101",
     {"layer1.0.downsample.1.running_mean": "Scale.layer1.0.downsample.1.running_mean",
      "conv1.weight": "Scale.conv1.weight"}),
    ("imagenet-drn-d-22", "drn_d_22",
     {"layer6.0.downsample.1.running_var": "layer6.0.downsample.1.running_var", "layer8.0.weight": "layer8.0.weight"}),
    ("imagenet-resnet18", "resnet18", {"layer4.1.bn2.bias": "layer4.1.bn2.bias"}),
]


@pytest.mark.parametrize("name, encoder, keys", DIRECT)
def test_each_published_layout_loads_completely(name, encoder, keys, monkeypatch, caplog):
    path, state = _use(monkeypatch, name)
    with caplog.at_level("INFO", logger="unisemi"):
        model = build_model(_cfg(encoder, name), {"d": 3})
    total = sum(1 for k in model.encoder.state_dict() if not k.endswith("num_batches_tracked"))
    assert f"loaded {total} of {total} encoder tensors, missing 0, mismatched 0, unexpected 0" in caplog.text
    mine = model.encoder.state_dict()
    for ours, theirs in keys.items():
        assert torch.equal(mine[ours], state[theirs]), ours
    # The row's weights_hash: the first 16 hex of the file's sha256.
    assert model.weights_hash == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    # Synthetic bytes are not the published file: the name's sha256 prefix says so.
    assert "this is not the published file" in caplog.text


def test_vgg16_fc6_fc7_are_decimated_into_largefov(monkeypatch):
    _, state = _use(monkeypatch, "imagenet-vgg16")
    enc = build_model(_cfg("vgg16_largefov", "imagenet-vgg16"), {"d": 3}).encoder
    w6, b6, w7 = state["classifier.0.weight"], state["classifier.0.bias"], state["classifier.3.weight"]
    # fc6 unit u, input channel c, tap (i, j) <- VGG fc6 unit 4u, input c*49 + 7*(3i) + 3j
    # (torchvision flattens pool5's C x 7 x 7 in that order).
    assert enc.fc6.weight[1, 5, 2, 2] == w6[4, 5 * 49 + 6 * 7 + 6]
    assert enc.fc6.weight[0, 0, 1, 0] == w6[0, 0 * 49 + 3 * 7 + 0]
    assert enc.fc6.weight[255, 511, 0, 1] == w6[1020, 511 * 49 + 0 * 7 + 3]
    assert enc.fc6.bias[3] == b6[12]
    assert enc.fc7.weight[2, 3, 0, 0] == w7[8, 12] and enc.fc7.bias[7] == state["classifier.3.bias"][28]
    assert torch.equal(enc.features[28].weight, state["features.28.weight"])


def test_imagenet_resnet101_also_fits_the_release_s_deeplabv2_imagenet():
    from unisemi.models.convert import torchvision_resnet
    from unisemi.models.published import check_encoder
    from published_layouts import random_state, resnet_bottleneck_shapes
    entry = PUBLISHED["imagenet-resnet101"]
    check_encoder(entry, "resnet101")
    check_encoder(entry, "deeplabv2_resnet101_imagenet")
    with pytest.raises(ValueError, match="set model.encoder=resnet101 or deeplabv2_resnet101_imagenet"):
        check_encoder(entry, "deeplabv2_resnet101")
    shapes = resnet_bottleneck_shapes()          # torchvision's ResNet-101 with its 1000-way fc
    state, dropped = torchvision_resnet({k: torch.empty(v, device="meta") for k, v in shapes.items()})
    with torch.device("meta"):
        enc = ENCODERS["deeplabv2_resnet101_imagenet"](8)
    report = compare(enc, state)
    assert dropped == ["fc.bias", "fc.weight"] and len(report["loaded"]) == 520
    assert report["missing"] == report["mismatched"] == report["unexpected"] == []


def test_a_published_layout_loads_nothing_by_name_alone():
    """The issue's case: AdaptSegNet's `Scale.` keys match 0 of 520 encoder tensors by name."""
    path, _ = published_file("coco-deeplabv2-resnet101-adaptsegnet")
    with torch.device("meta"):
        enc = ENCODERS["deeplabv2_resnet101"](8)
    report = compare(enc, read_state_dict(path))
    assert report["loaded"] == [] and len(report["missing"]) == 520


def _partial(tmp_path, monkeypatch, drop: str):
    _, state = published_file("imagenet-resnet18")
    cut = {k: v for k, v in state.items() if k != drop}
    torch.save(cut, tmp_path / "resnet18-f37072fd.pth")
    monkeypatch.setenv("UNISEMI_WEIGHTS", str(tmp_path))
    return cut


def test_a_partial_file_is_refused_in_one_line_and_the_switch_allows_it(tmp_path, monkeypatch, caplog):
    cut = _partial(tmp_path, monkeypatch, "layer4.1.conv2.weight")
    with pytest.raises(ValueError) as err:
        build_model(_cfg("resnet18", "imagenet-resnet18"), {"d": 3})
    msg = str(err.value)
    assert "\n" not in msg and "pretrained 'imagenet-resnet18'" in msg
    assert "99 of 100 encoder tensors from the file; 1 missing (first: layer4.1.conv2.weight)" in msg
    assert "model.pretrained_partial=true" in msg
    torch.manual_seed(0)
    with caplog.at_level("INFO", logger="unisemi"):
        model = build_model(_cfg("resnet18", "imagenet-resnet18", pretrained_partial=True), {"d": 3})
    assert "PARTIAL LOAD" in caplog.text and "loaded 99 of 100 encoder tensors, missing 1" in caplog.text
    mine = model.encoder.state_dict()
    assert torch.equal(mine["layer4.1.conv1.weight"], cut["layer4.1.conv1.weight"])
    assert mine["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)     # left at its random init


def test_extra_or_misshaped_tensors_are_refused_too(tmp_path, monkeypatch):
    # A ResNet-101 trunk matches every ResNet-50 key by name and shape; its extra blocks give it away.
    from unisemi.models.weights import incomplete_line, is_complete
    trunk = {k: v for k, v in published_file("coco-deeplabv2-resnet101")[1].items() if not k.startswith("layer5.")}
    with torch.device("meta"):
        r50 = ENCODERS["resnet50"](8)
    report = compare(r50, trunk)
    assert not is_complete(report) and len(report["unexpected"]) == 255 and report["missing"] == []
    assert incomplete_line(report, "pretrained file x.pth", 265, "resnet50").startswith(
        "pretrained file x.pth does not fit encoder resnet50: 265 of 265 encoder tensors from the file; "
        "255 unexpected (first: layer3.10.bn1.bias, layer3.10.bn1.running_mean, layer3.10.bn1.running_var, ...)")
    _, state = published_file("imagenet-resnet18")
    bad = dict(state, **{"conv1.weight": torch.zeros(64, 3, 3, 3)})
    torch.save(bad, tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"99 of 100 .*1 mismatched \(first: conv1.weight\)"):
        build_model(_cfg("resnet18", str(tmp_path / "r18.pth")), {"d": 3})


def test_wrong_encoder_retired_name_and_missing_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("UNISEMI_WEIGHTS", str(tmp_path))
    with pytest.raises(ValueError, match="'coco-deeplabv2-resnet101' holds a deeplabv2_resnet101 encoder, "
                                         "but model.encoder is resnet101"):
        build_model(_cfg("resnet101", "coco-deeplabv2-resnet101"), {"d": 3})
    with pytest.raises(ValueError, match="ImageNet \\+ COCO.*coco-deeplabv2-resnet101-adaptsegnet"):
        build_model(_cfg("deeplabv2_resnet101", "imagenet-deeplabv2-resnet101"), {"d": 3})
    expected = tmp_path / "drn_d_22-4bd2f8ea.pth"
    with pytest.raises(FileNotFoundError, match=f"expected {expected}; get drn_d_22-4bd2f8ea.pth from"):
        build_model(_cfg("drn_d_22", "imagenet-drn-d-22"), {"d": 3})
    monkeypatch.delenv("UNISEMI_WEIGHTS")
    with pytest.raises(FileNotFoundError, match=r"\$UNISEMI_WEIGHTS is not set"):
        build_model(_cfg("drn_d_22", "imagenet-drn-d-22"), {"d": 3})
    # A file by path in a layout made for another encoder (DeepLab's layer5 classifier).
    coco, _ = published_file("coco-deeplabv2-resnet101")
    with pytest.raises(ValueError, match="deeplabv2-resnet layout, made for encoder deeplabv2_resnet101, "
                                         "but model.encoder is resnet101"):
        build_model(_cfg("resnet101", str(coco)), {"d": 3})


def test_weights_check_exit_codes_and_report(tmp_path, monkeypatch, capsys):
    path, _ = _use(monkeypatch, "imagenet-drn-d-22")
    assert cli_main(["weights", "check", "imagenet-drn-d-22"]) == 0
    out = capsys.readouterr().out
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in out and "published sha256: not published" in out
    assert "sha256 prefix in the file name 4bd2f8ea: DIFFERS" in out
    assert "layout drn -> encoder drn_d_22: loaded 125 of 125 encoder tensors, missing 0" in out
    assert "complete: every encoder tensor comes from the file" in out

    _partial(tmp_path, monkeypatch, "layer2.0.bn1.running_var")
    assert cli_main(["weights", "check", str(tmp_path / "resnet18-f37072fd.pth"), "--encoder", "resnet18"]) == 1
    out = capsys.readouterr().out
    assert "loaded 99 of 100" in out and "missing: layer2.0.bn1.running_var" in out and "INCOMPLETE" in out

    monkeypatch.setenv("UNISEMI_WEIGHTS", str(tmp_path / "empty"))
    assert cli_main(["weights", "check", "imagenet-vgg16"]) == 2
    err = capsys.readouterr().err
    assert f"expected {tmp_path / 'empty' / 'vgg16-397923af.pth'}" in err and err.count("\n") == 1


def test_weights_problem_is_the_run_s_error_before_any_trial(tmp_path, monkeypatch):
    from unisemi.models.loading import weights_problem
    _partial(tmp_path, monkeypatch, "layer4.1.conv2.weight")
    line = weights_problem("imagenet-resnet18", "resnet18")
    assert line.startswith("pretrained 'imagenet-resnet18'") and "1 missing (first: layer4.1.conv2.weight)" in line
    assert weights_problem("imagenet-resnet18", "resnet18", partial=True) is None
    assert weights_problem("imagenet-resnet18", "resnet34").startswith(
        "pretrained 'imagenet-resnet18' holds a resnet18")
    assert weights_problem("synthetic", "tiny") is None and weights_problem("none", "tiny") is None
    path, _ = published_file("imagenet-drn-d-22")
    monkeypatch.setenv("UNISEMI_WEIGHTS", str(path.parent))
    assert weights_problem("imagenet-drn-d-22", "drn_d_22") is None


@pytest.mark.slow
def test_a_run_from_a_published_name_records_its_weights_hash(monkeypatch):
    """fit() from `model.pretrained=imagenet-drn-d-22`: the universal paper's backbone, started from
    the (synthetic) published file; every evaluation row carries the file's weights_hash."""
    from unisemi.config import load_config
    from unisemi.train import fit
    path, _ = _use(monkeypatch, "imagenet-drn-d-22")
    cfg = load_config("supervised_city", [
        "data.size=[32, 64]", "data.n_labelled=8", "data.batch_size=2", "data.val_images=4",
        "train.progress=false", "train.threads=1", "train.iterations=2", "train.eval_every=2",
        "model.encoder=drn_d_22", "model.pretrained=imagenet-drn-d-22"])
    result = fit(cfg, stop_after=2)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert result["weights_hash"] == digest and all(r["weights_hash"] == digest for r in result["history"])
