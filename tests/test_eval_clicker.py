"""The RITM click simulator on small hand-made masks with known answers."""

import numpy as np
import pytest

from napari_medsam.evaluation.clicker import Click, Clicker, next_click


def square(shape, y0, x0, size):
    mask = np.zeros(shape, bool)
    mask[y0 : y0 + size, x0 : x0 + size] = True
    return mask


def test_empty_prediction_on_square_clicks_its_centre():
    gt = square((11, 13), 3, 4, 5)  # rows 3..7, cols 4..8: centre (5, 6)
    click = next_click(gt, np.zeros_like(gt))
    assert click == Click(5, 6, True)


def test_over_segmentation_gives_negative_click_in_false_positive_region():
    gt = square((20, 20), 8, 8, 3)
    pred = square((20, 20), 2, 2, 15)  # contains gt with a wide false-positive ring
    click = next_click(gt, pred)
    assert click is not None and not click.is_positive
    assert pred[click.y, click.x] and not gt[click.y, click.x]


def test_under_segmentation_gives_positive_click_in_missed_part():
    gt = square((20, 20), 2, 2, 14)
    pred = square((20, 20), 2, 2, 14)
    pred[:, 9:] = False  # right part of the object missed
    click = next_click(gt, pred)
    assert click.is_positive and gt[click.y, click.x] and not pred[click.y, click.x]


def test_image_border_counts_as_boundary():
    # object touches the left image border: without the one-pixel padding the
    # farthest point would sit on the border column; with it, it sits mid-object
    gt = np.zeros((9, 10), bool)
    gt[2:7, :5] = True  # 5x5 square on the left border: centre (4, 2)
    click = next_click(gt, np.zeros_like(gt))
    assert (click.y, click.x) == (4, 2)


def test_equal_maxima_give_a_positive_click():
    gt = np.zeros((9, 20), bool)
    gt[3:6, 2:5] = True  # 3x3 missed object: FN max = 2
    pred = np.zeros_like(gt)
    pred[3:6, 12:15] = True  # 3x3 spurious blob: FP max = 2
    click = next_click(gt, pred)
    assert click == Click(4, 3, True)


def test_ties_break_on_first_pixel_in_raster_order():
    gt = square((10, 10), 3, 3, 4)  # even side: four central pixels tie
    assert next_click(gt, np.zeros_like(gt)) == Click(4, 4, True)


def test_perfect_prediction_gives_no_click():
    gt = square((8, 8), 2, 2, 3)
    assert next_click(gt, gt.copy()) is None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        next_click(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_clicked_pixels_are_never_chosen_twice():
    gt = square((12, 12), 2, 2, 7)
    clicker = Clicker(gt)
    empty = np.zeros_like(gt)
    for _ in range(gt.sum()):
        assert clicker.make_next_click(empty) is not None
    coords = [(c.y, c.x) for c in clicker.clicks]
    assert len(set(coords)) == len(coords) == gt.sum()
    assert all(c.is_positive and gt[c.y, c.x] for c in clicker.clicks)
    # every error pixel has been clicked: nothing is left to click
    assert clicker.make_next_click(empty) is None
    assert len(clicker.clicks) == gt.sum()


def test_clicker_exposes_prompt_arrays():
    gt = square((20, 20), 8, 8, 3)
    clicker = Clicker(gt)
    clicker.make_next_click(np.zeros_like(gt))
    clicker.make_next_click(square((20, 20), 0, 0, 20))  # everything predicted: negative
    assert clicker.points_yx.dtype == np.float32 and clicker.points_yx.shape == (2, 2)
    np.testing.assert_array_equal(clicker.points_yx[0], [9, 9])
    np.testing.assert_array_equal(clicker.point_labels, [1, 0])
    assert Clicker(gt).points_yx.shape == (0, 2)
