"""Transfer (Xiao et al. 2018): split-sets, L-Net targets, CAM seeds, P-Net, relabelling, groups.

The pipeline tests (stages, the weak-ground-truth poison check) are in test_transfer_pipeline.py;
the random walk, the affinity and the superpixel labelling in test_diffusion.py.
"""
import numpy as np
import pytest
import torch
from torch import nn

from unisemi.config import ConfigError, load_config
from unisemi.methods import transfer
from unisemi.methods.transfer import cam, config as tc, lnet, pnet
from unisemi.methods.transfer.setting import binary_targets, class_lut, partition, strong_source
from unisemi.optim import build_optimizer, step_groups

TINY = ["method=transfer", "data.domains=[objects]", "data.size=[32, 32]", "data.n_labelled=40",
        "data.batch_size=4", "model.width=8", "train.threads=1", "train.progress=false"]


def test_split_sets_partition_the_twenty_categories():
    voc = set(tc.VOC_OBJECTS)
    s1, s2, s3 = (set(tc.strong_classes(k)) for k in (1, 2, 3))
    assert s1 == set(tc.SPLIT1_STRONG) and len(s1) == 10
    assert s2 == voc - s1 and len(s2) == 10                      # split 2 is the reverse
    assert len(s3) == 6 and s3 <= voc and s3 == {"chair", "cow", "dog", "motorbike", "person", "train"}
    assert tc.strong_classes(4) == ()                            # split 4: all 20 weak
    with pytest.raises(ValueError, match="transfer.split=5"):
        tc.strong_classes(5)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="transfer.split"):
        load_config(None, TINY + ["transfer.split=5"])
    with pytest.raises(ConfigError, match="transfer.phase"):
        load_config(None, TINY + ["transfer.phase=gan"])
    with pytest.raises(ConfigError, match="data.domains.*PASCAL VOC"):
        load_config(None, TINY + ["data.domains=[city]"])
    with pytest.raises(ConfigError, match="transfer.pnet_size"):
        load_config(None, TINY + ["transfer.pnet_size=12"])


def test_strong_images_hold_no_weak_category_and_weak_images_hold_one():
    from unisemi.data import synthetic
    cfg = load_config(None, TINY + ["data.n_labelled=60"])
    part = partition(cfg)
    assert len(part.strong) and len(part.weak) and len(part.strong) + len(part.weak) == 60
    classes = synthetic.get_domain("objects").classes
    weak_ids = [classes.index(c) for c in tc.VOC_OBJECTS if c not in tc.SPLIT1_STRONG]
    strong_present = synthetic.image_labels("objects", "train", part.strong)
    assert not strong_present[:, weak_ids].any()
    assert part.weak_labels[:, weak_ids].any(1).all()
    assert torch.equal(part.weak_labels, synthetic.image_labels("objects", "train", part.weak))


def test_binary_targets_by_hand():
    lut = class_lut(("background", "a", "b", "c"), ["b", "c"])
    labels = torch.tensor([[[0, 1, 2], [3, 255, 2]]], dtype=torch.uint8)
    target, valid = binary_targets(labels, lut)
    assert torch.equal(target, torch.tensor([[[0., 0., 1.], [1., 0., 1.]]]))
    assert torch.equal(valid, torch.tensor([[[True, True, True], [True, False, True]]]))


def test_lnet_targets_are_binary_and_cover_exactly_the_strong_pixels():
    cfg = load_config(None, TINY)
    src = strong_source(cfg)
    _, y = src.data.fetch("train", src.indices)
    target, valid = binary_targets(y, src.object_lut)
    assert set(target.unique().tolist()) <= {0.0, 1.0}
    strong_ids = torch.tensor([src.data.classes.index(c) for c in tc.SPLIT1_STRONG])
    on_strong = torch.isin(y.long(), strong_ids)
    assert on_strong.any() and torch.equal(target.bool(), on_strong)     # exactly those pixels
    assert torch.equal(valid, y != 255)


def test_split4_strong_images_come_from_the_other_domain_without_voc_classes():
    cfg = load_config(None, TINY + ["transfer.split=4", "data.n_labelled=80"])
    assert len(partition(cfg).strong) == 0                      # every objects image is weak
    src = strong_source(cfg)
    assert src.data.name == "indoor" and len(src.indices) > 0
    _, y = src.data.fetch("train", src.indices)
    excluded = [src.data.classes.index(c) for c in tc.STRONG_DOMAIN_EXCLUDED["indoor"]]
    assert not torch.isin(y.long(), torch.tensor(excluded)).any()
    target, _ = binary_targets(y, src.object_lut)
    wall = src.data.classes.index("wall")
    assert (target[y == wall] == 0).all() and (target[y == src.data.classes.index("bed")] == 1).all()


def test_lnet_bce_by_hand():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 5.0]]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    valid = torch.tensor([[[True, True], [True, False]]])
    expected = (np.log(2) + np.log(1 + np.exp(2.0)) + np.log(1 + np.exp(-1.0))) / 3
    assert lnet.bce(logits, target, valid).item() == pytest.approx(expected, rel=1e-6)


def test_cam_seeds_threshold_on_the_per_class_peak_and_the_image_labels():
    cams = torch.tensor([[[[0.2, 1.0], [0.8, -3.0]],      # class 1: peak 1.0
                          [[0.5, 0.1], [0.0, 0.4]],       # class 2: peak 0.5, not in the image
                          [[-1.0, -2.0], [-0.5, -0.1]]]])  # class 3: nowhere positive
    present = torch.tensor([[True, False, True]])
    s = cam.seed_masks(cams, present, 0.75)
    assert torch.equal(s[0, 0], torch.tensor([[False, True], [True, False]]))   # >= 0.75
    assert not s[0, 1].any() and not s[0, 2].any()


# --- P-Net -------------------------------------------------------------------------------------

def test_pnet_layers_follow_table_1():
    net = pnet.PNet((64, 64))
    convs = [m for m in net.convs if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.convs) == 3
    assert (net.fc4.in_features, net.fc4.out_features) == (128 * 8 * 8, 256)
    assert (net.fc5.out_features, net.fc6.out_features) == (512, 1)
    x = torch.randn(5, 3, 64, 64)
    shapes, h = [], x
    for m in net.convs:
        h = m(h)
        if isinstance(m, nn.MaxPool2d):
            shapes.append(tuple(h.shape))
    assert shapes == [(5, 32, 32, 32), (5, 64, 16, 16), (5, 128, 8, 8)]
    p = net.prob(x)
    assert p.shape == (5,) and ((p > 0) & (p < 1)).all()
    with pytest.raises(ValueError, match="multiples of 8"):
        pnet.PNet((60, 64))


def test_encoding_is_the_image_times_each_class_mask():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    masks = torch.zeros(2, 2, 4, 4)
    masks[0, 0, :2] = 1.0           # image 0, class slot 0: top half
    masks[1, 1, :, 0] = 0.5         # image 1, class slot 1: half of the first column
    out = pnet.encode(images, masks, (4, 4))
    assert out.shape == (4, 3, 4, 4)
    assert torch.equal(out[0, :, :2], images[0, :, :2]) and (out[0, :, 2:] == 0).all()
    assert (out[1] == 0).all() and (out[2] == 0).all()
    assert torch.equal(out[3, :, :, 0], 0.5 * images[1, :, :, 0]) and (out[3, :, :, 1:] == 0).all()
    small = pnet.encode(images, masks, (2, 2))                  # 2x2 area means
    assert small[0, 0, 0, 0].item() == pytest.approx(images[0, 0, :2, :2].mean().item())
    assert small[0, 0, 1, 0].item() == 0.0


def test_present_classes_and_masks_by_hand():
    labels = torch.tensor([[[3, 3, 0], [1, 255, 0]],
                           [[0, 0, 0], [0, 0, 0]]], dtype=torch.uint8)
    classes, valid = pnet.present_classes(labels, num_classes=5, k=3)
    assert classes[0, :2].tolist() == [1, 3] and valid[0].tolist() == [True, True, False]
    assert valid[1].tolist() == [False, False, False]
    probs = torch.full((2, 5, 2, 3), 0.2)
    real, fake = pnet.real_and_fake_masks(labels, probs, classes)
    assert torch.equal(real[0, 1], torch.tensor([[1., 1., 0.], [0., 0.2, 0.]]))  # void: the fake's 0.2
    assert torch.equal(real[0, 0], torch.tensor([[0., 0., 0.], [1., 0.2, 0.]]))
    assert (fake == 0.2).all()


def _pnet_state(cfg, model):
    weak = {"indices": torch.tensor([1, 3]), "labels": torch.full((2, 32, 32), 7, dtype=torch.uint8)}
    return transfer.State(cfg, weak, pnet.PNet((32, 32)))


def test_relabel_replaces_exactly_the_weak_images_ground_truth():
    cfg = load_config(None, TINY)
    state = _pnet_state(cfg, None)
    y = torch.zeros(3, 32, 32, dtype=torch.uint8)
    out = transfer.relabel(state, "objects", torch.tensor([3, 2, 1]), y)
    assert (out[0] == 7).all() and (out[1] == 0).all() and (out[2] == 7).all()


def test_one_step_of_each_group_moves_only_its_own_parameters():
    from unisemi.models import build_model
    cfg = load_config(None, TINY + ["transfer.phase=pnet"])
    torch.manual_seed(0)
    model = build_model(cfg.model, {"objects": 21})
    state = _pnet_state(cfg, model)
    groups = transfer.groups(cfg, model, state)
    assert [g.name for g in groups] == ["seg", "pnet"]
    assert groups[0].lr == 1e-5 and groups[1].lr == 1e-3           # the paper's two rates
    x = torch.randn(2, 3, 32, 32)
    y = torch.randint(0, 21, (2, 32, 32))
    batch = {"labelled": {"objects": (x, y)}, "unlabelled": {}}

    def step(which):
        m0 = {k: v.clone() for k, v in model.state_dict().items()}
        p0 = {k: v.clone() for k, v in state.pnet.state_dict().items()}
        w0 = {k: v.detach().clone() for k, v in model.named_parameters()}   # BN statistics aside
        terms = transfer.losses(model, state, batch, 0)
        assert set(terms) == {"seg", "pnet"} and set(terms["seg"]) == {"ce", "adv"}
        loss = {g: sum(terms[g].values()) for g in which}
        opts = {g.name: build_optimizer(g) for g in groups}
        scalers = {g.name: torch.amp.GradScaler("cuda", enabled=False) for g in groups}
        step_groups(groups, loss, opts, scalers, lambda params: None)
        now = dict(model.named_parameters())
        moved_m = any(not torch.equal(v, now[k]) for k, v in w0.items())
        moved_p = any(not torch.equal(v, state.pnet.state_dict()[k]) for k, v in p0.items())
        model.load_state_dict(m0)
        state.pnet.load_state_dict(p0)
        return moved_m, moved_p

    assert step(["seg"]) == (True, False)
    assert step(["pnet"]) == (False, True)


def test_adversarial_terms_follow_eq_4_and_5():
    torch.manual_seed(0)
    net = pnet.PNet((8, 8))
    x = torch.randn(2, 3, 8, 8)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    labels = torch.randint(0, 4, (2, 8, 8))
    gen, disc = pnet.adversarial_terms(net, x, logits, labels, k=3, lambda_adv=0.5)
    classes, valid = pnet.present_classes(labels, 4, 3)
    real, fake = pnet.real_and_fake_masks(labels, logits.softmax(1), classes)
    w = valid.flatten().float()
    d_fake = net.prob(pnet.encode(x, fake, (8, 8)))
    d_real = net.prob(pnet.encode(x, real, (8, 8)))
    n = w.sum()
    assert gen.item() == pytest.approx(0.5 * (-(torch.log(d_fake)) * w).sum().item() / n.item(), rel=1e-5)
    expected = ((-(torch.log(d_real)) * w).sum() + (-(torch.log(1 - d_fake)) * w).sum()) / n
    assert disc.item() == pytest.approx(expected.item(), rel=1e-5)
    (g,) = torch.autograd.grad(disc, logits, allow_unused=True)
    assert g is None or (g == 0).all()             # Eq. 5 sees a detached prediction


# --- the table -------------------------------------------------------------------------------------

def test_table2_spec_rows_marks_paper_numbers_and_ratio_column():
    import json
    from pathlib import Path

    import pandas as pd
    import yaml

    from unisemi.ablation import report
    from unisemi.ablation.spec import expand, load_spec
    s = load_spec("transfer/table2")
    trials, pending = expand(s, "laptop")
    runnable = {t.cell_id for t in trials}
    assert len(runnable) == 9 and len(trials) == 18                  # 1 + 4 splits x 2, two seeds
    assert all("paper-only" in r for r in pending.values()) and len(pending) == 7
    methods = {t.cell_id: t.config["method"] for t in trials}
    assert methods["row=fully_supervised"] == "supervised" and methods["row=split4_pnet"] == "transfer"
    for k in (1, 2, 3, 4):                                           # marks = the split's strong classes
        for ph in ("lnet", "pnet"):
            assert set(s.level("row", f"split{k}_{ph}").get("marked_classes") or []) == set(tc.strong_classes(k))
    ref_file = Path(__file__).resolve().parents[2] / "shared" / "papers" / "reference_tables.yaml"
    if ref_file.exists():
        ref = yaml.safe_load(ref_file.read_text())["transfer"]["table2"]["miou"]
        assert s.paper_value({"row": "fully_supervised"}, "voc") == ref["fully_supervised"]
        for k in (1, 2, 3, 4):
            for ph, name in (("lnet", "l_net"), ("pnet", "p_net")):
                assert s.paper_value({"row": f"split{k}_{ph}"}, "voc") == ref[f"split{k}"][name]
    # the ratio column: ours and the paper's, as % of the fully supervised cell
    names = ["background", *tc.VOC_OBJECTS]
    rows = []
    for cell, miou in (("fully_supervised", 40.0), ("split1_pnet", 30.0)):
        for seed in (0, 1):
            rows.append(dict(trial=f"{cell}{seed}", cell=f"row={cell}", cell_json=json.dumps({"row": cell}),
                             seed=seed, split_seed=seed, domain="objects", domain_key="voc", is_final=True,
                             is_best=True, status="ok", miou=miou + seed, class_names=names,
                             class_iou=[miou] * 21, profile="laptop"))
    df = pd.DataFrame(rows)
    out = report.summarize(s, df).set_index("cell")
    assert out.loc["row=split1_pnet", "ratio"] == pytest.approx(100 * 30.5 / 40.5)
    assert out.loc["row=split1_pnet", "paper_ratio"] == pytest.approx(100 * 60.7 / 62.9)   # 96.5%
    md = report.markdown(s, report.summarize(s, df), [])
    assert "% of fully_supervised ours" in md and "75.3%" in md and "96.5%" in md
    per_class = report.per_class_markdown(s, df)
    line = next(l for l in per_class.splitlines() if l.startswith("| row=split1_pnet"))
    cells = line.split(" | ")[1:-1]
    marked = [n for n, v in zip(names, cells) if v.startswith("[")]
    assert set(marked) == set(tc.SPLIT1_STRONG)


def test_lnet_batch_size_is_its_own_or_the_segmenters():
    from unisemi.data import load_domain
    from unisemi.methods.transfer.setting import stage_batches
    cfg = load_config(None, TINY)
    assert cfg.transfer.lnet_batch_size == 0 and lnet.batch_size(cfg) == 4      # data.batch_size
    own = load_config(None, TINY + ["transfer.lnet_batch_size=6"])
    assert lnet.batch_size(own) == 6
    dd = load_domain(own.data, "objects")
    indices = torch.arange(10)
    x, y = stage_batches(own, dd, indices, seed=3, batch_size=lnet.batch_size(own)).next()
    assert x.shape[0] == 6 and y.shape[0] == 6
    x, _ = stage_batches(own, dd, indices, seed=3).next()
    assert x.shape[0] == 4                                                   # other stages: data.batch_size
    with pytest.raises(ConfigError, match=r"key 'transfer.lnet_batch_size': -1 is not valid"):
        load_config(None, TINY + ["transfer.lnet_batch_size=-1"])


def test_fields_added_after_stages_were_stored_stay_out_of_recipes_at_their_default():
    """So the stored laptop stages keep their hashes; a set value is a new stage."""
    from unisemi.methods.transfer import recipes
    from unisemi.methods.universal.embeddings import embedding_recipe
    from unisemi.config import to_dict
    plain = recipes.lnet_recipe(load_config(None, TINY))["config"]
    assert "lnet_batch_size" not in plain["transfer"] and "pretrained_partial" not in plain["model"]
    assert "normalize" not in plain["data"] and "sunrgbd_val" not in plain["data"]
    own = recipes.lnet_recipe(load_config(None, TINY + ["transfer.lnet_batch_size=30", "data.normalize=imagenet"]))
    assert own["config"]["transfer"]["lnet_batch_size"] == 30 and own["config"]["data"]["normalize"] == "imagenet"
    u = load_config("universal_city_town", ["data.sunrgbd_val=val37"])
    rec = embedding_recipe(to_dict(u), u, "city")["config"]
    assert rec["data"]["sunrgbd_val"] == "val37" and "normalize" not in rec["data"]
    assert "pretrained_partial" not in rec["model"]
