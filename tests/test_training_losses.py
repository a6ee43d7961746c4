"""Known values of the fine-tuning losses on hand-made inputs."""

import math

import pytest
import torch

from napari_medsam.training.losses import dice_loss, normalized_focal_loss, segmentation_loss


def test_nfl_at_zero_logits_is_half_log_two():
    # p = 0.5 everywhere: beta = 0.25 is rescaled to 1, loss = alpha * log 2 per pixel
    logits = torch.zeros(2, 4, 4)
    target = torch.zeros(2, 4, 4, dtype=torch.bool)
    target[:, :2] = True
    assert float(normalized_focal_loss(logits, target)) == pytest.approx(
        0.5 * math.log(2), rel=1e-6
    )


def test_nfl_normalisation_and_focus_on_hard_pixels():
    # one wrong pixel (p_t = 0.1), three right ones (p_t = 0.9)
    p = torch.tensor([[[0.9, 0.9], [0.9, 0.1]]])
    logits = torch.log(p / (1 - p))
    target = torch.ones(1, 2, 2, dtype=torch.bool)
    beta = torch.tensor([0.01, 0.01, 0.01, 0.81])
    mult = 4 / beta.sum()
    logs = -torch.log(torch.tensor([0.9, 0.9, 0.9, 0.1]))
    expected = float((0.5 * beta * mult * logs).sum() / 4)
    assert float(normalized_focal_loss(logits, target)) == pytest.approx(expected, rel=1e-5)


def test_nfl_ignores_zero_weight_pixels():
    logits = torch.tensor([[[5.0, -50.0]]])
    target = torch.tensor([[[True, True]]])
    weight = torch.tensor([[[1.0, 0.0]]])
    only_first = normalized_focal_loss(logits[..., :1], target[..., :1])
    assert float(normalized_focal_loss(logits, target, weight)) == pytest.approx(float(only_first))


def test_dice_loss_known_values():
    target = torch.zeros(1, 4, 4, dtype=torch.bool)
    target[0, :2] = True  # 8 of 16 pixels
    # p = 0.5: 1 - (2 * 4 + 1) / (8 + 8 + 1)
    assert float(dice_loss(torch.zeros(1, 4, 4), target)) == pytest.approx(1 - 9 / 17)
    perfect = torch.where(target, 40.0, -40.0)
    assert float(dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    # all wrong: no overlap, 8 predicted + 8 true pixels
    assert float(dice_loss(-perfect, target)) == pytest.approx(1 - 1 / 17, abs=1e-6)


def test_segmentation_loss_is_nfl_plus_weighted_dice_and_has_gradients():
    logits = torch.randn(3, 8, 8, requires_grad=True)
    target = torch.rand(3, 8, 8) > 0.5
    loss = segmentation_loss(logits, target, dice_weight=0.5)
    expected = normalized_focal_loss(logits, target) + 0.5 * dice_loss(logits, target)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()))
    loss.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
