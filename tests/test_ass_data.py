"""ASS's data cases: #City = 0 (no labelled target: GA alone, the Oracle and SA refused),
#City = all (the unlabelled stream draws from the whole pool), the `sim` source's labels mapped
into the target's ids, and the mIoU over a class subset (SYNTHIA's 13 classes)."""
import math

import pytest
import torch

from unisemi.config import ConfigError, load_config
from unisemi.data import load_domain
from unisemi.evaluate import summarize
from unisemi.methods import ass
from unisemi.train import Batches, fit
from test_ass import TINY

V = 255
SYNTHIA13 = ["road", "sidewalk", "building", "traffic light", "traffic sign", "vegetation", "sky",
             "person", "rider", "car", "bus", "motorcycle", "bicycle"]


# ---------------------------------------------------------------------------------------------
# #City = 0

def test_a_domain_without_labelled_images_has_no_labelled_batch_but_its_unlabelled_stream():
    cfg = load_config("ass_game_city", TINY + ["data.n_labelled=0", "ass.variant=none"])
    city = load_domain(cfg.data, "city")
    assert len(city.labelled) == 0 and len(city.unlabelled) == 2975
    batches = Batches(cfg, {"city": city}, True, torch.device("cpu"), rank=0)
    batch = batches.next()
    assert "city" not in batch["labelled"] and batch["unlabelled"]["city"].shape == (2, 3, 32, 64)
    state = batches.state_dict()                       # checkpoints hold only the samplers that exist
    assert set(state["labelled"]) == set() and set(state["unlabelled"]) == {"city"}
    batches.load_state_dict(state)


def test_city_0_is_unsupervised_da_with_ga_alone_and_trains_finite():
    r = fit(load_config("ass_game_city", TINY + ["data.n_labelled=0", "ass.variant=none"]))
    loss = r["final"]["loss"]
    # no L_seg on the target: the source's CE, G's GA term and D_g's loss only
    assert set(loss) == {"seg:seg/game", "seg:gadv", "disc:gd"}
    assert all(math.isfinite(v) for v in loss.values()) and math.isfinite(r["final"]["miou_mean"])
    assert r["splits"]["city"]["n_labelled"] == 0


def test_nothing_to_train_on_at_city_0_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"key 'data.n_labelled': 0 is not valid.*Oracle"):
        load_config("ass_game_city", TINY + ["data.n_labelled=0", "ass.source_domain=", "ass.variant=none"])
    for variant in ("fcsa", "csa"):                      # D_s's target half needs labelled target images
        with pytest.raises(ConfigError, match=rf"key 'ass.variant': '{variant}' is not valid.*#City = 0"):
            load_config("ass_game_city", TINY + ["data.n_labelled=0", f"ass.variant={variant}"])
    with pytest.raises(ConfigError, match=r"key 'data.n_labelled': 0 is not valid.*method 'supervised'"):
        load_config("supervised_city", ["data.n_labelled=0"])


def test_a_fraction_that_rounds_to_no_labelled_image_stops_fit_for_a_method_that_needs_them():
    cfg = load_config("supervised_city", ["data.labelled_fraction=0.0001", "data.size=[32, 64]",
                                          "train.iterations=1", "train.progress=false"])
    with pytest.raises(ValueError, match=r"without labelled images, and method 'supervised' trains on them"):
        fit(cfg)


# ---------------------------------------------------------------------------------------------
# #City = all

def test_a_fully_labelled_domain_draws_its_unlabelled_stream_from_the_whole_pool():
    cfg = load_config("ass_game_city", TINY + ["data.n_labelled=2975"])
    city = load_domain(cfg.data, "city")
    assert len(city.unlabelled) == 0
    batches = Batches(cfg, {"city": city}, True, torch.device("cpu"), rank=0)
    assert torch.equal(batches.unlabelled["city"].indices, torch.arange(2975))
    # its own seed: not the labelled stream's order
    assert not torch.equal(batches.unlabelled["city"].next(), batches.labelled["city"].next())
    # a partly labelled domain keeps the rest of the pool as its unlabelled set
    part = load_domain(load_config("ass_game_city", TINY).data, "city")
    mixed = Batches(cfg, {"city": part}, True, torch.device("cpu"), rank=0)
    assert torch.equal(mixed.unlabelled["city"].indices, part.unlabelled)


def test_city_all_trains_every_term_finite():
    r = fit(load_config("ass_game_city", TINY + ["data.n_labelled=2975", "train.iterations=2",
                                                 "train.eval_every=2"]))
    loss = r["final"]["loss"]
    assert set(loss) == {"seg:seg/game", "seg:seg/city", "seg:gadv", "seg:sadv", "disc:gd", "disc:sd"}
    assert all(math.isfinite(v) for v in loss.values())


# ---------------------------------------------------------------------------------------------
# sim -> city

def test_sim_labels_map_by_name_into_the_target_ids():
    lut = ass.source_to_target(("road", "sky", "car"), ("road", "car", "truck", "sky"))
    y = torch.tensor([[0, 1, 2, V]])
    assert lut[y].tolist() == [[0, 3, 1, V]]
    # SYNTHIA16 -> Cityscapes: wall 3 -> 3, vegetation 8 -> 8, sky 9 -> 10, person 10 -> 11,
    # car 12 -> 13, bus 13 -> 15, motorcycle 14 -> 17, bicycle 15 -> 18
    from unisemi.data import label_space
    full = ass.source_to_target(label_space("sim"), label_space("city"))
    assert full[torch.tensor([0, 3, 8, 9, 10, 12, 13, 14, 15, V])].tolist() == [0, 3, 8, 10, 11, 13, 15, 17, 18, V]


def test_a_source_is_accepted_when_its_classes_are_target_classes():
    assert load_config("ass_game_city", TINY + ["ass.source_domain=sim"]).ass.source_domain == "sim"
    with pytest.raises(ConfigError, match=r"ass.source_domain.*'pavement' is not"):    # CamVid's names
        load_config("ass_game_city", TINY + ["ass.source_domain=town"])


def test_sim_to_city_trains_and_reports_the_mean_over_the_13_classes():
    r = fit(load_config("ass_game_city", TINY + ["ass.source_domain=sim",
                                                 "eval.classes=[" + ", ".join(SYNTHIA13) + "]"]))
    city = r["final"]["domains"]["city"]
    assert len(city["iou"]) == 19                       # every class is still scored
    iou13 = [city["iou"][k] for k in SYNTHIA13 if not math.isnan(city["iou"][k])]
    assert city["miou"] == pytest.approx(sum(iou13) / len(iou13))
    assert all(math.isfinite(v) for v in r["final"]["loss"].values())


# ---------------------------------------------------------------------------------------------
# the class subset of the mIoU

def test_the_miou_over_a_class_subset_by_hand():
    # rows = truth, cols = prediction: a 10/0/0, b 2/6/2, c 0/4/6
    conf = torch.tensor([[10, 0, 0], [2, 6, 2], [0, 4, 6]])
    # IoU: a 10 / (10 + 2) , b 6 / (10 + 10 - 6), c 6 / (10 + 8 - 6)
    a, b, c = 10 / 12, 6 / 14, 6 / 12
    assert summarize(conf, ("a", "b", "c"))["miou"] == pytest.approx(100 * (a + b + c) / 3)
    sub = summarize(conf, ("a", "b", "c"), subset=("c", "a"))
    assert sub["miou"] == pytest.approx(100 * (a + c) / 2)
    assert sub["iou"]["b"] == pytest.approx(100 * b)      # outside the subset, still reported


def test_eval_classes_must_be_classes_of_every_evaluated_domain():
    with pytest.raises(ConfigError, match=r"key 'eval.classes': 'signsymbol' is not valid, expected a class of domain 'city'"):
        load_config("ass_game_city", TINY + ["eval.classes=[road, signsymbol]"])


# ---------------------------------------------------------------------------------------------
# the same rules on a real dataset (a fixture tree in the Cityscapes layout)

def test_a_real_dataset_at_city_0_and_all_follows_the_embedded_worlds_rules(tmp_path, monkeypatch):
    import fixtures_real as fx
    from unisemi.data import real
    fx.cityscapes_tree(tmp_path / "cityscapes")
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))
    base = ["data.domains=[cityscapes]", "data.resize=[32,64]", "data.crop=[32,32]", "data.workers=0",
            "data.check_counts=false"]                     # a 3-image fixture, not 2975
    pool = len(load_domain(load_config(None, base + ["data.n_labelled=1"]).data, "cityscapes").train_pairs)
    full = load_domain(load_config(None, base + [f"data.n_labelled={pool}"]).data, "cityscapes")
    assert len(full.unlabelled) == 0
    reads = []
    read = real._read_labelled
    monkeypatch.setattr(real, "_read_labelled", lambda *a: reads.append(a) or read(*a))
    (x,) = full.stream("unlabelled", 2, seed=0, part=(0, 1), pin_memory=False).next()
    assert x.shape == (2, 3, 32, 32) and reads == []          # the whole pool, labels unread
    # #City = 0: no labelled stream for the target, its unlabelled stream over the whole pool
    cfg = load_config(None, base + ["method=ass", "data.n_labelled=0", "ass.source_domain=game",
                                    "ass.variant=none", "data.batch_size=2", "data.unlabelled_batch_size=2"])
    batches = Batches(cfg, {"cityscapes": load_domain(cfg.data, "cityscapes")}, True, torch.device("cpu"), rank=0)
    assert batches.streams["labelled"] == {} and set(batches.streams["unlabelled"]) == {"cityscapes"}
