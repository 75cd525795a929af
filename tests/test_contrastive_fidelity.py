"""Paper default vs released switch, side by side, each on an input small enough to compute by
hand (docs/contrastive.md lists the switches and their sources)."""
import math

import pytest
import torch
import torch.nn.functional as F

from contrastive_case import TINY, state_and_batch as _state_and_batch
from unisemi.config import load_config
from unisemi.data import augment as A
from unisemi.losses import IGNORE_INDEX
from unisemi.methods import contrastive as M
from unisemi.methods.contrastive.config import Config
from unisemi.methods.contrastive.loss import contrastive_loss
from unisemi.methods.teacher import cosine_tau, ema_update, make_teacher, warmup_tau

V = IGNORE_INDEX


# 1. skip rule -------------------------------------------------------------------------------

def test_a_class_needs_two_student_vectors_and_two_memory_rows():
    # memory: class 0 holds 2 rows e0, e1; class 1 holds 1 row e0; class 2 holds 2 rows e0, e1
    memory = torch.zeros(3, 2, 2)
    memory[0, 0], memory[0, 1] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    memory[1, 0] = torch.tensor([1.0, 0.0])
    memory[2, 0], memory[2, 1] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    fill = torch.tensor([2, 1, 2])
    # students: two of class 0 (e0, e0), two of class 1 (e1, e1), one of class 2 (e0)
    pred = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    cls = torch.tensor([0, 0, 1, 1, 2])
    valid, ones = torch.ones(5, dtype=torch.bool), torch.ones(5)
    w_mem = torch.ones(3, 2)
    # class 0: distances (0, 1) per student -> 0.5; class 1: 1 - e1.e0 = 1; class 2: 0.5
    release = contrastive_loss(pred, cls, valid, ones, memory, fill, w_mem)
    assert release.item() == pytest.approx(0.5)             # only class 0 takes part
    one = contrastive_loss(pred, cls, valid, ones, memory, fill, w_mem, min_vectors=1)
    assert one.item() == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # dividing by C (released_divide_by_all_classes) counts the skipped classes as 0
    assert contrastive_loss(pred, cls, valid, ones, memory, fill, w_mem,
                            divide_by_all_classes=True).item() == pytest.approx(0.5 / 3)
    # an invalid vector does not count towards the two
    valid[1] = False
    assert contrastive_loss(pred, cls, valid, ones, memory, fill, w_mem).item() == 0.0


# 2. entropy ---------------------------------------------------------------------------------

def test_entropy_is_in_nats_by_default_and_divided_by_log_c_when_released():
    # C = 4: pixel a uniform (H = ln 4), pixel b half/half (H = ln 2), pixel c void
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1e4, -1e4], [5.0, 0.0, 0.0, 0.0]])
    logp = F.log_softmax(logits.T.reshape(1, 4, 1, 3), 1)
    target = torch.tensor([[[0, 1, V]]])
    assert M.mean_entropy(logp, target).item() == pytest.approx((math.log(4) + math.log(2)) / 2)
    # release: log2 entropy / log2 C = 1 and 0.5, averaged over the 2 non-void pixels
    assert M.mean_entropy(logp, target, normalised=True).item() == pytest.approx(0.75)


# 3. supervised CE ---------------------------------------------------------------------------

def test_supervised_ce_divides_by_valid_pixels_or_by_the_sum_of_class_weights():
    logits = torch.zeros(1, 2, 1, 4)                     # CE = ln 2 on every pixel
    target = torch.tensor([[[0, 1, 1, V]]])
    alpha = torch.tensor([3.0, 1.0])
    ln2 = math.log(2)
    # Eq. 3: (3 + 1 + 1) ln 2 / N, N = 3 valid pixels
    assert M.weighted_ce(logits, target, alpha).item() == pytest.approx(5 * ln2 / 3)
    # release (F.cross_entropy(weight=)): (3 + 1 + 1) ln 2 / (3 + 1 + 1)
    assert M.weighted_ce(logits, target, alpha, weighted_mean=True).item() == pytest.approx(ln2)
    assert F.cross_entropy(logits, target, weight=alpha, ignore_index=V).item() == pytest.approx(ln2)
    # all void: 0 both ways (the release's CrossEntropy2d gives NaN)
    void = torch.full_like(target, V)
    assert M.weighted_ce(logits, void, alpha).item() == 0.0
    assert M.weighted_ce(logits, void, alpha, weighted_mean=True).item() == 0.0


def test_released_switches_reach_the_step():
    cfg, model, state, batch = _state_and_batch()
    torch.manual_seed(5)
    paper = M.losses(model, state, batch, step=0)
    cfg, model, state, batch = _state_and_batch(["contrastive.released_normalised_entropy=true"])
    torch.manual_seed(5)
    released = M.losses(model, state, batch, step=0)
    n = state.num_classes
    assert released["ent"].item() == pytest.approx(paper["ent"].item() / math.log(n), rel=1e-5)
    assert released["sup"].item() == pytest.approx(paper["sup"].item(), rel=1e-6)


# 4. class balancing -------------------------------------------------------------------------

def test_class_weight_median_runs_over_all_classes_zeros_included():
    counts = torch.tensor([0.0, 10.0, 40.0, 90.0, 0.0], dtype=torch.float64)
    # median of [0, 0, 10, 40, 90] = 10 (of the seen ones it would be 40)
    # sqrt(10 / f) = [-, 1, 1/2, 1/3, -]; unseen classes: the largest weight, 1
    assert M.class_weights(counts).tolist() == pytest.approx([1.0, 1.0, 0.5, 1 / 3, 1.0])
    # even C: np.median's mean of the two middle counts, (0 + 2) / 2 = 1 -> sqrt(1/2) for the seen;
    # the unseen get max(1, the largest weight) = 1, as the release's inf -> 1 -> max
    assert M.class_weights(torch.tensor([0.0, 0.0, 2.0, 2.0])).tolist() == pytest.approx(
        [1.0, 1.0, math.sqrt(0.5), math.sqrt(0.5)])
    # more than half unseen: median 0; the release's weights would be 0 and NaN, ours are ones
    assert M.class_weights(torch.tensor([0.0, 0.0, 5.0])).tolist() == [1.0, 1.0, 1.0]


def test_balance_windows_fill_labelled_once_and_slide_over_unlabelled():
    lab, unl = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)
    readiness = []
    for step in range(5):
        counts_l = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64) * (step + 1)
        counts_u = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) * (step + 1)
        lab, unl, ready = M.balance_windows(lab, unl, counts_l, counts_u, step)
        readiness.append(ready)
    assert readiness == [False, False, True, True, True]     # full once step + 1 >= max(2, 3)
    assert lab[:, 0].tolist() == [1.0, 2.0]                  # steps 0, 1 only
    assert sorted(unl[:, 1].tolist()) == [3.0, 4.0, 5.0]      # the last 3 steps
    counts = lab.sum(0) + unl.sum(0)                          # [3, 12, 0]
    # median of [0, 3, 12] = 3: sqrt(3/3) = 1, sqrt(3/12) = 1/2; class 2 unseen: max(1, 1) = 1
    assert M.class_weights(counts).tolist() == pytest.approx([1.0, 0.5, 1.0])


def test_class_balance_windows_are_sized_from_the_data_and_written_only_in_update():
    cfg, model, state, batch = _state_and_batch()
    # N_l = 8, B = 2 -> 4 labelled rows; N_train = 2975 city images, B_u = 2 -> 1483 rows
    assert tuple(state.balance_labelled.shape) == (4, state.num_classes)
    assert tuple(state.balance_unlabelled.shape) == (1483, state.num_classes)
    M.losses(model, state, batch, step=0)
    assert float(state.balance_labelled.sum()) == 0 and float(state.balance_unlabelled.sum()) == 0
    M.update(model, state, batch, step=0)
    y = batch["labelled"]["city"][1]
    assert state.balance_labelled[0].tolist() == M.class_histogram(y, state.num_classes).tolist()
    assert float(state.balance_labelled[1:].sum()) == 0
    assert float(state.balance_unlabelled[0].sum()) == 2 * 32 * 64          # every pseudo-label
    assert float(state.class_counts.sum()) == 0                             # cumulative: off


# 5. EMA -------------------------------------------------------------------------------------

def test_ema_warmup_starts_the_teacher_as_a_copy_and_parameters_only_keeps_buffers():
    assert warmup_tau(0, 0.995) == 0.0
    assert warmup_tau(1, 0.995) == pytest.approx(10 / 11)           # 1 - 1/11 < 0.995
    assert warmup_tau(100, 0.995) == 0.995                          # 1 - 1/1001 > 0.995
    student = torch.nn.BatchNorm1d(1)
    with torch.no_grad():
        student.weight.fill_(3.0)
        student.running_mean.fill_(2.0)
    tau0 = cosine_tau(0, 100, 0.995, 1.0)
    paper, released = make_teacher(student), make_teacher(student)
    with torch.no_grad():
        paper.weight.fill_(1.0), released.weight.fill_(1.0)
        paper.running_mean.fill_(0.0), released.running_mean.fill_(0.0)
    ema_update(paper, student, tau0)
    ema_update(released, student, warmup_tau(0, tau0), buffers=False)
    assert paper.weight.item() == pytest.approx(0.995 * 1 + 0.005 * 3)
    assert paper.running_mean.item() == pytest.approx(0.005 * 2)
    assert released.weight.item() == 3.0                            # a copy of the student
    assert released.running_mean.item() == 0.0                     # buffers untouched
    with torch.no_grad():
        student.weight.fill_(14.0)
    ema_update(released, student, warmup_tau(1, cosine_tau(1, 100, 0.995, 1.0)), buffers=False)
    assert released.weight.item() == pytest.approx(10 / 11 * 3 + 1 / 11 * 14)      # = 4


def test_update_applies_the_released_ema_switches():
    for extra, expect_copy in (([], False), (["contrastive.released_ema_warmup=true"], True)):
        cfg, model, state, batch = _state_and_batch(extra)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        M.update(model, state, {}, step=0)
        same = all(torch.equal(t, s) for t, s in zip(state.teacher.parameters(), model.parameters()))
        assert same == expect_copy


# 8. Feature Quality Filter resolution -------------------------------------------------------

def test_quality_filter_takes_softmax_at_the_crop_and_nearest_downsamples():
    # teacher logits at the feature resolution (1 x 2), C = 2; logit difference d = l0 - l1
    logits = torch.tensor([[[[1.0, -1.0]], [[-1.0, 1.0]]]])              # d = [2, -2]
    labels = torch.tensor([[[0, 1]]])
    # at the feature resolution: pixel 1 predicts 1 with p = sigmoid(2) = 0.88 > 0.8: kept
    assert M.quality_filter(logits, labels, 0.8).tolist() == [[[True, True]]]
    # release: upsampled to the 1 x 4 crop with align_corners=True, d = [2, 2/3, -2/3, -2];
    # nearest back to 1 x 2 reads crop columns 0 and 2: pixel 1 has p = sigmoid(2/3) = 0.66
    assert M.quality_filter(logits, labels, 0.8, crop_size=(1, 4)).tolist() == [[[True, False]]]
    assert torch.sigmoid(torch.tensor(2 / 3)).item() < 0.8 < torch.sigmoid(torch.tensor(2.0)).item()


# 9. ClassMix picks --------------------------------------------------------------------------

def _mask_classes(y, mask):
    return sorted(set(y[mask].tolist()))


def test_classmix_picks_floor_half_plus_one_and_background_only_when_alone():
    torch.manual_seed(0)
    y = torch.tensor([
        [[0, 3, 5, V]],          # VOC-like: background, 3, 5, void
        [[0, 0, V, V]],          # background and void only
        [[V, V, V, V]],          # void only
        [[1, 2, 3, 4]],          # four classes
    ])
    for _ in range(5):
        with_bg = A.classmix_mask(y, 6, background=0)
        plain = A.classmix_mask(y, 6)
        # image 0: candidates {3, 5} (background dropped) -> 2 // 2 + 1 = 2 -> both
        assert _mask_classes(y[0], with_bg[0]) == [3, 5]
        # without a background class: {0, 3, 5} -> 3 // 2 + 1 = 2 of them, void never
        assert len(_mask_classes(y[0], plain[0])) == 2 and not plain[0, 0, 3]
        # image 1: background is all that is left besides void -> picked, void not
        assert with_bg[1].tolist() == [[True, True, False, False]]
        # image 2: nothing but void: the release picks the void label itself
        assert bool(with_bg[2].all())
        # image 3: 4 // 2 + 1 = 3 classes
        assert len(_mask_classes(y[3], with_bg[3])) == 3


def test_batched_classmix_counts_equal_a_per_image_loop():
    torch.manual_seed(1)
    y = torch.randint(0, 7, (16, 5, 5))
    y[y == 6] = V
    mask = A.classmix_mask(y, 6, background=0)
    for img, m in zip(y, mask):
        present = set(img.unique().tolist())
        cand = present - {V} if present - {V} else present
        cand = cand - {0} if cand - {0} else cand
        picked = set(img[m].tolist())
        assert picked <= cand and len(picked) == len(cand) // 2 + 1


def test_the_objects_domain_has_background_and_the_method_passes_it():
    cfg = load_config("contrastive_city", TINY + ["data.domains=[objects]", "data.size=[32, 32]"])
    from unisemi.models import build_model
    from unisemi.data import load_domain
    dd = load_domain(cfg.data, "objects")
    state = M.build(cfg, build_model(cfg.model, {"objects": dd.num_classes}))
    assert dd.classes[0] == "background" and state.background == 0
    assert M.build(*_state_and_batch()[:2]).background is None               # city has none


# preset -------------------------------------------------------------------------------------

def test_released_preset_turns_every_released_switch_on():
    cfg = load_config("contrastive_city_released", ["train.progress=false"])
    switches = [f for f in Config.__dataclass_fields__ if f.startswith("released_")]
    # the release multiplies the push count by C/3 on PASCAL VOC only, so on city it stays off
    voc_only = {"released_push_count_voc"}
    assert switches and all(getattr(cfg.contrastive, f) is (f not in voc_only) for f in switches)
    assert cfg.contrastive.class_balance_cumulative is False       # the release's windows
    assert cfg.model.aspp_active_branches == 2
    base = load_config("contrastive_city")
    assert not any(getattr(base.contrastive, f) for f in switches)


# helpers ------------------------------------------------------------------------------------


