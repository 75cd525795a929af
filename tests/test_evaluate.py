import math

import pytest
import torch

from unisemi.evaluate import confusion_matrix, iou_from_confusion, mean_iou, summarize

IGNORE = 255


def test_confusion_matrix_counts_by_hand():
    target = torch.tensor([[0, 0, 1], [1, 2, IGNORE]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])
    conf = confusion_matrix(pred, target, 3)
    # rows = GT, cols = prediction; the ignored pixel (GT 255) is not counted
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert torch.equal(conf, expected)


def test_iou_and_miou_against_hand_computed_matrix():
    conf = torch.tensor([[8, 2, 0, 0], [1, 5, 0, 0], [0, 0, 0, 0], [0, 3, 0, 1]])
    iou = iou_from_confusion(conf)
    # class 0: 8 / (10 + 9 - 8) = 8/11; class 1: 5 / (6 + 10 - 5) = 5/11; class 2: absent -> NaN;
    # class 3: 1 / (4 + 1 - 1) = 1/4
    assert iou[0].item() == pytest.approx(8 / 11)
    assert iou[1].item() == pytest.approx(5 / 11)
    assert math.isnan(iou[2].item())
    assert iou[3].item() == pytest.approx(1 / 4)
    assert mean_iou(iou) == pytest.approx((8 / 11 + 5 / 11 + 1 / 4) / 3)
    zero = iou_from_confusion(conf, absent_as_zero=True)
    assert zero[2].item() == 0.0
    assert mean_iou(zero) == pytest.approx((8 / 11 + 5 / 11 + 0 + 1 / 4) / 4)


def test_predicted_but_absent_class_scores_zero_not_nan():
    conf = torch.tensor([[3, 1], [0, 0]])  # class 1 never in GT but predicted once
    iou = iou_from_confusion(conf)
    assert iou[1].item() == 0.0


def test_summarize_reports_percent_per_class_name():
    conf = torch.tensor([[2, 0], [0, 2]])
    out = summarize(conf, ["road", "sky"])
    assert out["miou"] == pytest.approx(100.0)
    assert out["iou"] == {"road": pytest.approx(100.0), "sky": pytest.approx(100.0)}
    assert out["pixel_acc"] == pytest.approx(100.0)


def test_vectorised_matrix_equals_pixel_loop():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (2, 9, 7), generator=gen)
    target[0, :2] = IGNORE
    pred = torch.randint(0, 5, (2, 9, 7), generator=gen)
    slow = torch.zeros(5, 5, dtype=torch.long)
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist()):
        if t != IGNORE:
            slow[t, p] += 1
    assert torch.equal(confusion_matrix(pred, target, 5), slow)


def test_confusion_matrix_with_many_classes_uses_wide_indices():
    import numpy as np
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 200, (2000,), generator=g)
    target[:50] = 255                                   # void, above every class id
    pred = torch.randint(0, 200, (2000,), generator=g)
    expected = np.zeros((200, 200), dtype=np.int64)
    for t, p in zip(target.tolist(), pred.tolist()):
        if t != 255:
            expected[t, p] += 1
    assert np.array_equal(confusion_matrix(pred, target, 200).numpy(), expected)


def test_confusion_matrix_skips_every_void_value_and_leaves_the_labels_untouched():
    # Void is any id outside [0, C): 255, a stray 7, and -1 in signed maps; uint8 maps too.
    target = torch.tensor([[0, 255, 1], [7, -1, 2]])
    pred = torch.tensor([[0, 1, 2], [2, 0, 2]])
    before = target.clone()
    expected = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    assert torch.equal(confusion_matrix(pred, target, 3), expected)
    assert torch.equal(target, before)
    unsigned = torch.tensor([[0, 255, 1], [7, 9, 2]], dtype=torch.uint8)
    assert torch.equal(confusion_matrix(pred, unsigned, 3), expected)


def test_confusion_matrix_sums_chunks_exactly(monkeypatch):
    import unisemi.evaluate as ev
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 6, (4, 9, 11), generator=g)
    target[0, 0] = 255
    pred = torch.randint(0, 5, (4, 9, 11), generator=g)
    whole = ev.confusion_matrix(pred, target, 5)
    monkeypatch.setattr(ev, "_CHUNK", 7)  # 396 pixels: 57 chunks, the last one partial
    assert torch.equal(ev.confusion_matrix(pred, target, 5), whole)
    assert int(whole.sum()) == int((target < 5).sum())


# The universal release's extra "None" output: predicting it is a miss of the pixel's class (a false
# negative), no class's false positive; void pixels stay out whatever they are predicted as.
NONE_TARGET = torch.tensor([0, 0, 1, 1, IGNORE])


def test_none_prediction_is_a_false_negative_only():
    pred = torch.tensor([0, 2, 1, 0, 2])        # C = 2; 2 is "None"
    conf = confusion_matrix(pred, NONE_TARGET, 2, extra_column=True)
    assert torch.equal(conf, torch.tensor([[1, 0, 1], [1, 1, 0]]))
    iou = iou_from_confusion(conf)
    # class 0: tp 1, GT 2, predicted 0 twice -> 1 / 3; class 1: tp 1, GT 2, predicted 1 once -> 1 / 2
    assert iou.tolist() == pytest.approx([1 / 3, 1 / 2])
    # the same pixel predicted as class 1 instead: class 0 unchanged, class 1 gets a false positive
    wrong = iou_from_confusion(confusion_matrix(torch.tensor([0, 1, 1, 0, 2]), NONE_TARGET, 2))
    assert wrong.tolist() == pytest.approx([1 / 3, 1 / 3])
    # predicted right: class 0 would be 2 / 3, so "None" lowered it
    right = iou_from_confusion(confusion_matrix(torch.tensor([0, 0, 1, 0, 2]), NONE_TARGET, 2, extra_column=True))
    assert right.tolist() == pytest.approx([2 / 3, 1 / 2])
    out = summarize(conf, ["road", "sky"])
    assert out["pixel_acc"] == pytest.approx(50.0)   # 2 right of 4 labelled pixels
    assert out["miou"] == pytest.approx(100 * (1 / 3 + 1 / 2) / 2)


def test_prediction_beyond_the_classes_needs_the_extra_column():
    with pytest.raises(ValueError, match="prediction is >= num_classes=2.*extra_column=True"):
        confusion_matrix(torch.tensor([0, 2, 1, 0, 0]), NONE_TARGET, 2)
    # the void pixel's "None" prediction alone is no error: void is never counted
    square = confusion_matrix(torch.tensor([0, 0, 1, 1, 2]), NONE_TARGET, 2)
    assert torch.equal(square, torch.tensor([[2, 0], [0, 2]]))
    wide = confusion_matrix(torch.tensor([0, 0, 1, 1, 2]), NONE_TARGET, 2, extra_column=True)
    assert torch.equal(wide, torch.tensor([[2, 0, 0], [0, 2, 0]]))
    # a square matrix reads the same as one with an empty extra column
    assert torch.equal(iou_from_confusion(square), iou_from_confusion(wide))
    with pytest.raises(ValueError, match=r"shape \(2, 4\): expected \(C, C\) or \(C, C \+ 1\)"):
        iou_from_confusion(torch.zeros(2, 4))


@pytest.mark.parametrize("classes", [5, 200])
def test_extra_column_matrix_equals_pixel_loop_across_chunks(monkeypatch, classes):
    import unisemi.evaluate as ev
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, classes, (3, 9, 11), generator=g)
    target[0, 0] = IGNORE
    pred = torch.randint(0, classes + 1, (3, 9, 11), generator=g)   # classes = the "None" output
    slow = torch.zeros(classes, classes + 1, dtype=torch.long)
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist()):
        if t != IGNORE:
            slow[t, p] += 1
    assert torch.equal(ev.confusion_matrix(pred, target, classes, extra_column=True), slow)
    monkeypatch.setattr(ev, "_CHUNK", 7)
    assert torch.equal(ev.confusion_matrix(pred, target, classes, extra_column=True), slow)


class _FixedPredictions(torch.nn.Module):
    """A model whose `a` head has `outputs` logits and predicts `pred` for every image."""

    def __init__(self, pred: torch.Tensor, outputs: int):
        super().__init__()
        self.pred, self.head_outputs = pred, {"a": outputs}

    def forward(self, x, domain):
        onehot = torch.nn.functional.one_hot(self.pred, self.head_outputs[domain])
        return {"logits": onehot.permute(2, 0, 1).float().expand(len(x), -1, -1, -1)}


def test_evaluate_domain_keeps_none_predictions_as_misses_only_for_a_wider_head():
    from unisemi.evaluate import evaluate_domain
    labels = NONE_TARGET.view(1, 1, 5).expand(3, 1, 5).to(torch.uint8)
    images = torch.zeros(3, 3, 1, 5, dtype=torch.uint8)
    wide = evaluate_domain(_FixedPredictions(torch.tensor([[0, 2, 1, 0, 2]]), 3), images, labels, "a", 2,
                           batch_size=2)
    assert torch.equal(wide, 3 * torch.tensor([[1, 0, 1], [1, 1, 0]]))
    square = evaluate_domain(_FixedPredictions(torch.tensor([[0, 1, 1, 0, 1]]), 2), images, labels, "a", 2,
                             batch_size=2)
    assert torch.equal(square, 3 * torch.tensor([[1, 1], [1, 1]]))
    empty = evaluate_domain(_FixedPredictions(torch.tensor([[0]]), 3), images[:0], labels[:0], "a", 2)
    assert empty.shape == (2, 3)   # an empty shard sums with the others' matrices
