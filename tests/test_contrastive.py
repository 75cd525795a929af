"""The contrastive method (Alonso et al. 2021): loss, memory bank, teacher, augmentations,
pseudo-label weighting and the released-code switches, each on a case small enough to check by hand."""
import math

import pytest
import torch

from contrastive_case import TINY, state_and_batch as _state_and_batch
from unisemi.config import load_config
from unisemi.data import augment as A
from unisemi.losses import IGNORE_INDEX
from unisemi.methods import contrastive as M
from unisemi.methods.contrastive.loss import contrastive_loss, l1_normalised
from unisemi.methods.contrastive.memory import push, select
from unisemi.methods.contrastive.reference import contrastive_loss_loop
from unisemi.methods.teacher import cosine_tau, ema_update, make_teacher
from unisemi.train import fit


def _memory():
    memory = torch.zeros(2, 3, 2)
    memory[0, 0] = torch.tensor([1.0, 0.0])
    memory[0, 1] = torch.tensor([0.0, 1.0])
    return memory, torch.tensor([2, 0])


def test_contrastive_loss_by_hand_without_attention():
    memory, fill = _memory()
    p, cls, valid = torch.tensor([[2.0, 0.0]]), torch.tensor([0]), torch.tensor([True])
    w_mem = torch.ones(2, 3)
    # class 0: pairs (p, [1,0]) -> 1 - 1 = 0 and (p, [0,1]) -> 1 - 0 = 1; mean 0.5; class 1 empty
    # (one student vector: min_vectors=1 admits it; the default skip rule is in test_contrastive_fidelity)
    assert contrastive_loss(p, cls, valid, torch.ones(1), memory, fill, w_mem,
                            min_vectors=1).item() == pytest.approx(0.5)
    # the release divides by all C = 2 classes
    assert contrastive_loss(p, cls, valid, torch.ones(1), memory, fill, w_mem,
                            divide_by_all_classes=True, min_vectors=1).item() == pytest.approx(0.25)


def test_contrastive_loss_by_hand_with_attention_weights():
    memory, fill = _memory()
    p, cls, valid = torch.tensor([[2.0, 0.0]]), torch.tensor([0]), torch.tensor([True])
    # memory scores 0.2, 0.6 -> Eq. 8 weights 2 * [0.2, 0.6] / 0.8 = [0.5, 1.5]
    s_mem = torch.tensor([[0.2, 0.6, 0.9], [0.3, 0.3, 0.3]])
    in_mem = torch.arange(3)[None] < fill[:, None]
    w_mem = l1_normalised(s_mem.reshape(-1), torch.arange(2).repeat_interleave(3), in_mem.reshape(-1), 2).view(2, 3)
    assert w_mem[0, :2].tolist() == pytest.approx([0.5, 1.5]) and w_mem[0, 2] == 0
    # mean over the two pairs of w_z * distance: (0.5 * 0 + 1.5 * 1) / 2
    assert contrastive_loss(p, cls, valid, torch.ones(1), memory, fill, w_mem,
                            min_vectors=1).item() == pytest.approx(0.75)


def test_vectorised_loss_and_gradients_equal_the_per_class_loop():
    torch.manual_seed(0)
    c, k, d, n = 5, 7, 4, 40
    pred = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
    s_pred = torch.rand(n, dtype=torch.float64, requires_grad=True)
    cls, valid = torch.randint(0, c, (n,)), torch.rand(n) > 0.2
    memory, fill = torch.randn(c, k, d, dtype=torch.float64), torch.tensor([7, 3, 0, 1, 5])
    s_mem = torch.rand(c, k, dtype=torch.float64)
    in_mem = torch.arange(k)[None] < fill[:, None]
    for every_class in (False, True):
        w_pred = l1_normalised(s_pred, torch.where(valid, cls, 0), valid, c)
        w_mem = l1_normalised(s_mem.reshape(-1), torch.arange(c).repeat_interleave(k), in_mem.reshape(-1), c).view(c, k)
        # the loop admits a class from one vector per side (fill[3] == 1)
        fast = contrastive_loss(pred, cls, valid, w_pred, memory, fill, w_mem, every_class, min_vectors=1)
        slow = contrastive_loss_loop(pred, cls, valid, s_pred, memory, fill, s_mem, every_class)
        g_fast = torch.autograd.grad(fast, (pred, s_pred))
        g_slow = torch.autograd.grad(slow, (pred, s_pred))
        assert fast.item() == pytest.approx(slow.item(), abs=1e-12)
        for a, b in zip(g_fast, g_slow):
            assert torch.allclose(a, b, atol=1e-12)


def test_memory_is_a_fifo_per_class_truncated_at_psi():
    memory, fill = torch.zeros(2, 3, 1), torch.zeros(2, dtype=torch.long)
    cls, chosen = torch.tensor([0, 0, 1]), torch.tensor([True, True, True])
    memory, fill = push(memory, fill, torch.tensor([[1.0], [2.0], [9.0]]), cls, chosen)
    memory, fill = push(memory, fill, torch.tensor([[3.0], [4.0], [8.0]]), torch.tensor([0, 0, 0]),
                        torch.tensor([True, True, False]))
    # newest first; class 0 held [1, 2] and receives [3, 4]: psi = 3 keeps [3, 4, 1]
    assert memory[0, :, 0].tolist() == [3.0, 4.0, 1.0] and fill.tolist() == [3, 1]
    assert memory[1, 0, 0] == 9.0


def test_selection_keeps_top_k_per_image_and_class_and_the_release_keeps_the_lowest():
    cls = torch.tensor([0, 0, 0, 1, 0, 0])
    image = torch.tensor([0, 0, 0, 0, 1, 1])
    keep = torch.tensor([True, True, True, True, True, False])
    score = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.2, 0.99])
    top, _ = select(cls, image, keep, score, per_image=2, num_classes=2)
    assert top.tolist() == [False, True, True, True, True, False]          # filtered rows never enter
    low, _ = select(cls, image, keep, score, per_image=1, num_classes=2, lowest=True)
    assert low.tolist() == [True, False, False, True, True, False]


def test_vectorised_memory_update_equals_the_loop():
    from unisemi.methods.contrastive.reference import memory_update_loop
    torch.manual_seed(1)
    c, k, d, n = 4, 6, 3, 200
    memory, fill = torch.randn(c, k, d), torch.tensor([6, 2, 0, 4])
    v, cls = torch.randn(n, d), torch.randint(0, c, (n,))
    image, keep, score = torch.arange(n) // 50, torch.rand(n) > 0.5, torch.rand(n)
    chosen, order = select(cls, image, keep, score, 2, c)
    fast = push(memory, fill, v, cls, chosen, order)
    slow = memory_update_loop(memory, fill, v, cls, image, keep, score, 2)
    assert torch.equal(fast[1], slow[1]) and torch.equal(fast[0], slow[0])


def test_quality_filter_keeps_correct_confident_pixels_only():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [0.1, 0.0], [5.0, 0.0]]).T.reshape(1, 2, 1, 4)
    labels = torch.tensor([[[0, 0, 0, IGNORE_INDEX]]])
    keep = M.quality_filter(logits, labels, 0.95)
    # correct+confident, wrong, correct but unsure (p=0.52), void
    assert keep.reshape(-1).tolist() == [True, False, False, False]


def test_ema_schedule_and_update():
    assert cosine_tau(0, 100, 0.995, 1.0) == pytest.approx(0.995)
    assert cosine_tau(50, 100, 0.995, 1.0) == pytest.approx(0.9975)
    assert cosine_tau(100, 100, 0.995, 1.0) == pytest.approx(1.0)
    student = torch.nn.BatchNorm1d(2)
    teacher = make_teacher(student)
    with torch.no_grad():
        student.weight.fill_(3.0)
        student.running_mean.fill_(1.0)
    ema_update(teacher, student, 0.9)
    assert teacher.weight.tolist() == pytest.approx([1.2, 1.2])           # 0.9 * 1 + 0.1 * 3
    assert teacher.running_mean.tolist() == pytest.approx([0.1, 0.1])
    assert not any(p.requires_grad for p in teacher.parameters())


def test_classmix_labels_follow_pixel_provenance_and_half_the_classes():
    torch.manual_seed(3)
    y = torch.zeros(2, 4, 6, dtype=torch.long)
    y[0, :, :2], y[0, :, 2:4], y[0, :, 4:] = 1, 2, 3          # image 0: classes 1, 2, 3
    y[1, :2], y[1, 2:] = 4, 5                                   # image 1: classes 4, 5
    y[1, 0, 0] = IGNORE_INDEX
    x = torch.stack([torch.full((3, 4, 6), 0.25), torch.full((3, 4, 6), 0.75)])
    conf = torch.stack([torch.full((4, 6), 0.1), torch.full((4, 6), 0.9)])
    xm, ym, (cm,) = A.class_mix(x, y, (conf,), p=1.0, num_classes=6)
    from_src = xm[:, 0] != x[:, 0]
    assert torch.equal(ym[from_src], y.roll(-1, 0)[from_src])              # label = provenance
    assert torch.equal(ym[~from_src], y[~from_src])
    assert torch.equal(cm[from_src], conf.roll(-1, 0)[from_src])
    # floor(n/2) + 1 classes (the release): image 0 pasted both (2 // 2 + 1) classes of image 1,
    # void dropped since other classes are present; image 1 got 3 // 2 + 1 = 2 of image 0's
    assert sorted(ym[0][from_src[0]].unique().tolist()) == [4, 5]
    assert int(from_src[0].sum()) == 23 and ym[0, 0, 0] == 1  # all but the void pixel
    pasted = ym[1][from_src[1]].unique()
    assert len(pasted) == 2 and all(int((ym[1] == c).sum()) == 8 for c in pasted)
    assert (ym[1] == IGNORE_INDEX).sum() == 0                 # void is never pasted


def test_pseudo_label_ce_weights_pixels_by_sharpened_confidence():
    logits = torch.zeros(1, 2, 1, 3)                       # CE = log 2 everywhere
    target = torch.tensor([[[0, 1, IGNORE_INDEX]]])
    conf = torch.tensor([[[0.5, 1.0, 1.0]]])
    w = conf ** 6
    expected = math.log(2) * (0.5 ** 6 + 1.0) / 2               # mean over the 2 valid pixels
    assert M.weighted_ce(logits, target, None, w).item() == pytest.approx(expected)
    released = math.log(2) * (0.5 ** 6 + 1.0) / 3               # the release also counts the void one
    assert M.weighted_ce(logits, target, None, w, over_all_pixels=True).item() == pytest.approx(released)


def test_class_weights_are_sqrt_median_over_frequency():
    counts = torch.tensor([100.0, 25.0, 0.0, 400.0, 100.0], dtype=torch.float64)
    w = M.class_weights(counts)
    # median of all 5 counts [0, 25, 100, 100, 400] = 100 -> sqrt(100/f) = [1, 2, -, .5, 1];
    # the unseen class gets the max
    assert w.tolist() == pytest.approx([1.0, 2.0, 2.0, 0.5, 1.0])
    assert M.class_weights(torch.zeros(3, dtype=torch.float64)).tolist() == [1.0, 1.0, 1.0]




def test_warmup_gates_pseudo_and_contrastive_terms_and_the_release_ramps_pseudo():
    cfg, model, state, batch = _state_and_batch()
    assert set(M.losses(model, state, batch, step=0)) == {"sup", "ent"}
    assert set(M.losses(model, state, batch, step=2)) == {"sup", "ent", "pseudo", "contr"}
    cfg, model, state, batch = _state_and_batch(["contrastive.released_sigmoid_ramp=true",
                                                 "contrastive.warmup=4"])
    terms = M.losses(model, state, batch, step=2)
    assert "pseudo" in terms and "contr" not in terms


def test_memory_holds_teacher_projections_of_labelled_pixels_only():
    # the FQF is off so that an untrained teacher still yields candidates
    cfg, model, state, batch = _state_and_batch(["contrastive.feature_filter=false"])
    with torch.no_grad():                                   # make student and teacher heads differ
        for p in state.heads.projection.parameters():
            p.add_(1.0)
    x, y = batch["labelled"]["city"]
    from unisemi.data.transforms import normalize_float
    memory, fill = M.memory_after_push(state, normalize_float(x), y)
    assert int(state.fill.sum()) == 0                       # computed, not written
    state.memory.copy_(memory)
    state.fill.copy_(fill)
    n = int(state.fill.sum())
    # per image and class at most max(1, psi / N_l) = 2 entries: 2 images
    assert 0 < n and bool((state.fill <= 2 * state.per_image).all())
    stored = state.memory[torch.arange(state.memory.shape[1])[None] < state.fill[:, None]]
    with torch.no_grad():
        feats = state.teacher.decode(state.teacher.encode(normalize_float(x)), "city")["features"]
        teacher = state.teacher_heads.projection(M.pixels(feats))
        student = state.heads.projection.eval()(M.pixels(feats))
    assert bool((torch.cdist(stored, teacher).min(1).values < 1e-3).all())     # teacher vectors
    assert bool((torch.cdist(stored, student).min(1).values > 1e-2).all())     # not the student's


def test_teacher_gets_no_gradient_and_the_release_keeps_it_in_train_mode():
    cfg, model, state, batch = _state_and_batch()
    sum(M.losses(model, state, batch, step=2).values()).backward()
    assert all(p.grad is None for p in state.teacher.parameters())
    assert not state.teacher.training
    assert any(p.grad is not None for p in state.heads.prediction.parameters())
    cfg, model, state, batch = _state_and_batch(["contrastive.released_teacher_train_mode=true"])
    M.losses(model, state, batch, step=2)
    assert state.teacher.training


def test_memory_side_attention_identity_switch():
    cfg, model, state, batch = _state_and_batch(["contrastive.released_memory_attention_identity=true"])
    sum(M.losses(model, state, batch, step=2).values()).backward()
    # with identity weights the memory-side modules take no part in the loss
    assert all(p.grad is None for p in state.heads.attention_mem.parameters())


def _assert_same(a, b, where=""):
    """Exact equality of nested checkpoint parts (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_contrastive_fit_is_deterministic_and_resumes_exactly(tmp_path):
    from unisemi import checkpoint
    # (6 steps fill the 4-row labelled window and 6 of the 1483 unlabelled rows: the windows are
    # state that must resume exactly even before the weights switch on)
    cfg = load_config("contrastive_city", TINY)
    full = fit(cfg, out_dir=tmp_path / "full")
    a = full["final"]["domains"]["city"]["miou"]
    assert fit(cfg)["final"]["domains"]["city"]["miou"] == a
    fit(cfg, out_dir=tmp_path / "cut", stop_after=3)
    resumed = fit(cfg, resume=tmp_path / "cut", out_dir=tmp_path / "resumed")
    assert resumed["final"]["domains"]["city"]["miou"] == a
    # every parameter and buffer: model, memory, fill, class-balance windows, teacher, heads
    _assert_same(full["model"].state_dict(), resumed["model"].state_dict(), "model")
    state = full["state"].state_dict()
    assert {"memory", "fill", "balance_labelled", "balance_unlabelled"} <= set(state)
    assert any(k.startswith("teacher.") for k in state)
    _assert_same(state, resumed["state"].state_dict(), "state")
    assert int(full["state"].fill.sum()) > 0 and float(full["state"].balance_unlabelled.sum()) > 0
    # and the optimiser state, from the final checkpoints of both runs
    ck_full, ck_resumed = checkpoint.load(tmp_path / "full"), checkpoint.load(tmp_path / "resumed")
    assert ck_full["step"] == ck_resumed["step"] == cfg.train.iterations
    _assert_same(ck_full["optimizers"], ck_resumed["optimizers"], "optimizers")


def test_grouped_linear_applies_each_rows_class_weights():
    from unisemi.methods.contrastive.attention import grouped_linear
    torch.manual_seed(0)
    x = torch.randn(100, 5, dtype=torch.float64)
    w = torch.randn(4, 5, 3, dtype=torch.float64)
    for cls in (torch.randint(0, 4, (100,)), torch.full((100,), 2)):      # mixed, and one class only
        expected = torch.einsum("nd,ndh->nh", x, w[cls])
        assert torch.allclose(grouped_linear(x, cls, w, 4, block=8), expected, atol=1e-12)


def test_batched_class_attention_equals_one_mlp_per_class():
    from unisemi.methods.contrastive.attention import ClassAttention
    from unisemi.methods.contrastive.reference import attention_scores_loop
    torch.manual_seed(0)
    att = ClassAttention(3, 4, 5).double()
    x = torch.randn(50, 4, dtype=torch.float64)
    cls, valid = torch.randint(0, 3, (50,)), torch.rand(50) > 0.2
    fast = att.score(x, cls, valid)
    slow = attention_scores_loop(att, x, cls, valid)
    assert torch.allclose(fast[valid], slow[valid], atol=1e-12)
    # grouped memory scoring is the same modules on (C, K, D)
    m = torch.randn(3, 6, 4, dtype=torch.float64)
    in_mem = torch.arange(6)[None] < torch.tensor([[6], [2], [4]])
    grouped = att.score_grouped(m, in_mem)
    flat = attention_scores_loop(att, m.reshape(-1, 4), torch.arange(3).repeat_interleave(6), in_mem.reshape(-1))
    assert torch.allclose(grouped[in_mem], flat.view(3, 6)[in_mem], atol=1e-12)


def test_grouped_mm_class_attention_equals_one_mlp_per_class_with_gradients():
    # float32 with widths a multiple of 4 takes the CPU grouped_mm path, which skips invalid rows
    from unisemi.methods.contrastive.attention import ClassAttention
    from unisemi.methods.contrastive.reference import attention_scores_loop
    torch.manual_seed(0)
    att = ClassAttention(3, 8, 12)
    x = torch.randn(70, 8)
    cls, valid = torch.randint(0, 3, (70,)), torch.rand(70) > 0.3
    valid[cls == 2] = False                                      # a class with no valid row
    weight = torch.rand(70)
    grads = []
    for f in (att.score, lambda *a: attention_scores_loop(att, *a)):
        s = f(x, cls, valid)
        grads.append((s, torch.autograd.grad((torch.where(valid, s, 0) * weight).sum(), list(att.parameters()))))
    (fast, g_fast), (slow, g_slow) = grads
    assert torch.isfinite(fast).all() and torch.allclose(fast[valid], slow[valid], atol=1e-6)
    for a, b in zip(g_fast, g_slow):
        assert torch.allclose(a, b, atol=1e-5)


def test_domain_adaptation_samples_the_source_but_never_stores_it_in_the_bank():
    cfg, model, state, batch = _state_and_batch(["contrastive.source_domain=game",
                                                 "contrastive.feature_filter=false"])
    from unisemi.data import load_domain
    src = load_domain(M.extra_labelled(cfg)["game"], "game")
    from unisemi.data.synthetic import get_domain
    assert len(src.labelled) == get_domain("game").train_size and len(src.unlabelled) == 0
    xs, ys = src.fetch("train", src.labelled[:2])
    x, y = batch["labelled"]["city"]
    batch["labelled"]["city"] = (x, torch.full_like(y, IGNORE_INDEX))   # target: nothing to store
    batch["labelled"]["game"] = (xs.float() / 255, ys.long())
    terms = M.losses(model, state, batch, step=2)
    assert int(state.fill.sum()) == 0                                  # source pixels never enter
    assert terms["sup"].item() > 0                                     # ...but the source trains
    assert M.extra_labelled(load_config("contrastive_city", TINY + [
        "contrastive.source_domain=game", "contrastive.released_source_never_sampled=true"])) == {}


def test_source_domain_must_share_the_target_label_space():
    from unisemi.config import ConfigError
    with pytest.raises(ConfigError, match="contrastive.source_domain.*label space of 'city'"):
        load_config("contrastive_city", TINY + ["contrastive.source_domain=town"])


def test_released_sigmoid_ramp_scales_pseudo_by_exp_minus_5_one_minus_t_squared():
    values = {}
    for name, extra in (("ramp", ["contrastive.released_sigmoid_ramp=true", "contrastive.warmup=4"]),
                        ("full", ["contrastive.warmup=2"])):
        cfg, model, state, batch = _state_and_batch(extra)
        torch.manual_seed(7)                                   # same augmentation draws
        values[name] = M.losses(model, state, batch, step=2)["pseudo"].item()
    assert values["ramp"] == pytest.approx(values["full"] * math.exp(-5 * (1 - 2 / 4) ** 2), rel=1e-5)


def test_unlabelled_contrastive_pixels_are_confidence_filtered_unless_released(monkeypatch):
    seen = {}
    real = M.contrast

    def spy(state, feats, labels, valid, *bank):
        seen["unlabelled"] = int(valid[2:].sum())            # the first 2 maps are labelled
        return real(state, feats, labels, valid, *bank)

    monkeypatch.setattr(M, "contrast", spy)
    for released, expect_any in ((False, False), (True, True)):
        cfg, model, state, batch = _state_and_batch([
            "contrastive.confidence=0.999", f"contrastive.released_no_unlabelled_filter={str(released).lower()}"])
        M.losses(model, state, batch, step=2)
        assert (seen["unlabelled"] > 0) == expect_any      # an untrained teacher is never 99.9% sure
