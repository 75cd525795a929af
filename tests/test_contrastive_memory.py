"""Memory bank of the contrastive method: how many vectors each image pushes per class (item 6),
which ones and in what order (item 7), each computed by hand on a tiny input, the paper / our
default side by side with the `released_*` switch; and the vectorised update against a plain loop."""
import pytest
import torch

from unisemi.config import load_config
from unisemi.methods import contrastive as M
from unisemi.methods.contrastive.memory import needs_ranking, push, select

TINY = ["data.size=[32, 64]", "data.labelled_fraction=0", "data.n_labelled=8", "model.width=8",
        "train.threads=1", "train.progress=false", "contrastive.proj_dim=8", "contrastive.attention_hidden=8"]


def _per_image(psi: int, n_labelled: int, num_classes: int, voc: bool = False) -> int:
    from unisemi.models import build_model
    cfg = load_config("contrastive_city", TINY + [f"contrastive.memory_size={psi}",
                                                  f"contrastive.released_push_count_voc={str(voc).lower()}"])
    model = build_model(cfg.model, {"city": num_classes})
    return M.State(cfg, model, "city", num_classes, n_labelled).per_image


@pytest.mark.parametrize("psi, n_labelled, expected", [
    (256, 100, 3),      # 2.56 rounds to 3 (the release's Cityscapes 1/30); a floor would give 2
    (256, 372, 1),      # 0.69 -> 1
    (256, 744, 1),      # 0.34 -> 0 -> max(1, .) = 1
    (5, 2, 2),          # 2.5 -> 2: Python's round goes to even
    (7, 2, 4),          # 3.5 -> 4
    (256, 10000, 1),
])
def test_push_count_is_python_round_of_psi_over_labelled(psi, n_labelled, expected):
    assert _per_image(psi, n_labelled, 19) == expected


@pytest.mark.parametrize("psi, n_labelled, classes, default, voc", [
    (256, 212, 21, 1, 7),     # VOC 1/50: round(1.21) = 1, x 21/3 = 7 (the release's 7)
    (256, 100, 21, 3, 21),    # int(7.0 * 3) = 21
    (256, 530, 21, 1, 1),     # round(0.48) = 0 -> int(0) -> max(1, .) = 1
    (256, 100, 10, 3, 10),    # int(10/3 * 3) = int(10.0) = 10
    (256, 50, 8, 5, 13),      # round(5.12) = 5; int(8/3 * 5) = int(13.33) = 13
])
def test_released_voc_push_count_multiplies_by_c_over_3(psi, n_labelled, classes, default, voc):
    assert _per_image(psi, n_labelled, classes) == default
    assert _per_image(psi, n_labelled, classes, voc=True) == voc


# Eight candidates of two images, two classes, one vector per image and class (k = 1, B = 2: each
# class may receive E = B k = 2). Vector i is [i].
IMAGE = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
CLS = torch.tensor([0, 1, 1, 0, 1, 1, 0, 1])
KEEP = torch.tensor([True, True, True, True, True, True, False, True])      # 6 is FQF-filtered
SCORE = torch.tensor([0.2, 0.9, 0.85, 0.5, 0.3, 0.8, 0.99, 0.4])
VECTORS = torch.arange(8.0).unsqueeze(1)


def _bank():
    memory = torch.zeros(2, 3, 1)                 # psi = 3; class 0 holds [100], class 1 [200, 201]
    memory[0, 0, 0], memory[1, 0, 0], memory[1, 1, 0] = 100.0, 200.0, 201.0
    return memory, torch.tensor([1, 2])


def _update(**kw):
    memory, fill = _bank()
    chosen, order = select(CLS, IMAGE, KEEP, SCORE, 1, 2, n_images=2, **kw)
    memory, fill = push(memory, fill, VECTORS, CLS, chosen, order, max_new=2 * 2 * 1)
    return memory[..., 0].tolist(), fill.tolist()


def test_a_class_with_no_more_candidates_than_it_may_keep_pushes_them_all_in_input_order():
    # Class 0 has 2 kept candidates (0: .2, 3: .5; 6 is filtered) <= E = 2: both, unranked, in
    # input order. Class 1 has 5 (> 2): ranked, best per image: image 0 -> 1 (.9), image 1 -> 5 (.8).
    assert _update(in_order_when_fits=True) == ([[0.0, 3.0, 100.0], [1.0, 5.0, 200.0]], [3, 3])
    # Ranking every class (the previous behaviour): class 0 keeps only image 0's best, 3 (.5).
    assert _update() == ([[3.0, 100.0, 0.0], [1.0, 5.0, 200.0]], [2, 3])


def test_released_top_k_over_the_batch_and_the_released_ascending_sort():
    # Over the batch, class 1 keeps its best two, 1 (.9) and 2 (.85), both of image 0.
    assert _update(in_order_when_fits=True, over_batch=True) == ([[0.0, 3.0, 100.0], [1.0, 2.0, 200.0]], [3, 3])
    # The release's ascending sort keeps the lowest two, 4 (.3) then 7 (.4); class 0 is unranked.
    assert _update(in_order_when_fits=True, over_batch=True, lowest=True) == \
        ([[0.0, 3.0, 100.0], [4.0, 7.0, 200.0]], [3, 3])
    # Lowest per image: image 0 -> 2 (.85), image 1 -> 4 (.3).
    assert _update(in_order_when_fits=True, lowest=True) == ([[0.0, 3.0, 100.0], [2.0, 4.0, 200.0]], [3, 3])


def test_only_the_candidates_of_overfull_classes_are_scored():
    asked = []

    def score(mask):
        asked.append(mask.clone())
        return SCORE
    chosen, _ = select(CLS, IMAGE, KEEP, score, 1, 2, n_images=2, in_order_when_fits=True)
    assert asked[0].tolist() == [False, True, True, False, True, True, False, True]   # class 1 only
    assert chosen.tolist() == [True, True, False, True, False, True, False, False]
    assert needs_ranking(CLS, KEEP, 1, 2).tolist() == KEEP.tolist()                   # ranking all
    with pytest.raises(ValueError):
        select(CLS, IMAGE, KEEP, SCORE, 1, 2, over_batch=True)                          # E unknown


def _loop(memory, fill, v, cls, image, keep, score, k, n_images, over_batch, lowest, in_order):
    """The memory update as plain Python: per class, the kept candidates in input order; if more
    than E = n_images k (or always, without `in_order`), the best (lowest) k per image or E over the
    batch by score, ties by position; prepended to the class's queue, cut at psi."""
    memory, fill = memory.clone(), fill.clone()
    c, psi, _ = memory.shape
    e = n_images * k
    sign = 1.0 if lowest else -1.0
    for cl in range(c):
        rows = [i for i in range(len(cls)) if bool(keep[i]) and int(cls[i]) == cl]
        if not rows:
            continue
        if len(rows) > e or not in_order:
            by_score = sorted(rows, key=lambda i: (sign * float(score[i]), i))
            if over_batch:
                rows = by_score[:e]
            else:
                rows = [i for img in range(n_images) for i in [r for r in by_score if int(image[r]) == img][:k]]
        queue = [v[i] for i in rows] + [memory[cl, j].clone() for j in range(int(fill[cl]))]
        queue = queue[:psi]
        memory[cl] = 0
        memory[cl, :len(queue)] = torch.stack(queue)
        fill[cl] = len(queue)
    return memory, fill


@pytest.mark.parametrize("over_batch, lowest, in_order", [
    (False, False, True), (True, False, True), (True, True, True), (False, True, True), (False, False, False)])
def test_vectorised_update_equals_the_loop(over_batch, lowest, in_order):
    torch.manual_seed(3)
    c, psi, d, n, images, k = 6, 10, 4, 300, 3, 2
    fill = torch.tensor([10, 3, 0, 7, 1, 0])
    memory = torch.randn(c, psi, d) * (torch.arange(psi)[None, :, None] < fill[:, None, None])
    v = torch.randn(n, d)
    # Skewed classes, so that some fit (<= E = 6 kept candidates) and skip the ranking.
    cls = torch.multinomial(torch.tensor([0.4, 0.3, 0.2, 0.05, 0.03, 0.02]), n, replacement=True)
    image, keep, score = torch.arange(n) * images // n, torch.rand(n) > 0.3, torch.rand(n)
    chosen, order = select(cls, image, keep, score, k, c, lowest, n_images=images, over_batch=over_batch,
                           in_order_when_fits=in_order)
    fast = push(memory, fill, v, cls, chosen, order, max_new=c * images * k)
    slow = _loop(memory, fill, v, cls, image, keep, score, k, images, over_batch, lowest, in_order)
    fits = torch.bincount(cls[keep], minlength=c) <= images * k
    assert bool(fits.any()) and not bool(fits.all())             # both paths are exercised
    assert torch.equal(fast[1], slow[1]) and torch.equal(fast[0], slow[0])
    # The static bound is never exceeded, so it drops nothing.
    assert int(chosen.sum()) <= c * images * k
    unbounded = push(memory, fill, v, cls, chosen, order)
    assert torch.equal(unbounded[0], fast[0]) and torch.equal(unbounded[1], fast[1])
