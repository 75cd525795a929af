import math

import pytest
import torch

from unisemi.losses import cross_entropy, entropy_map


def test_cross_entropy_by_hand_with_ignored_pixel():
    # two pixels: logits (0, ln 3) -> p(class 1) = 3/4; second pixel ignored
    logits = torch.tensor([[0.0, math.log(3.0)], [5.0, -5.0]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[1, 255]]])
    assert cross_entropy(logits, target).item() == pytest.approx(-math.log(0.75))


def test_cross_entropy_class_weights_are_a_weighted_mean():
    logits = torch.zeros(1, 2, 1, 2)  # uniform: every nll = ln 2
    logits[0, 0, 0, 1] = math.log(3.0)  # pixel 1: p(class 0) = 3/4
    target = torch.tensor([[[1, 0]]])
    w = torch.tensor([1.0, 3.0])
    # pixel 0 (class 1, weight 3): ln 2; pixel 1 (class 0, weight 1): -ln(3/4)
    expected = (3 * math.log(2.0) + 1 * -math.log(0.75)) / 4
    assert cross_entropy(logits, target, class_weight=w).item() == pytest.approx(expected)


def test_cross_entropy_all_ignored_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    loss = cross_entropy(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_entropy_map_uniform_and_peaked():
    uniform = torch.zeros(1, 4, 1, 1)
    assert entropy_map(uniform).item() == pytest.approx(math.log(4))
    # p = (1/2, 1/4, 1/4): H = 1/2 ln 2 + 2 * 1/4 ln 4 = 1.5 ln 2
    p = torch.tensor([0.5, 0.25, 0.25]).log().view(1, 3, 1, 1)
    assert entropy_map(p).item() == pytest.approx(1.5 * math.log(2))
