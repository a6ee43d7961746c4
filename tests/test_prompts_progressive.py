"""Progressive merge of a corrective click (prompts/progressive.py)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medsam.prompts.geometry import RESIZE_STRETCH
from napari_medsam.prompts.progressive import click_to_lowres_rc, merge_click_region


def _logits(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, 4.0, -4.0).astype(np.float32)


def _square(side: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((side, side), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_a_positive_click_keeps_only_the_added_region_that_holds_it():
    prev = _square(64, 10, 10, 30, 30)
    # the new prediction grows the object where clicked, adds a far blob, loses a corner
    new = prev | _square(64, 10, 30, 30, 40) | _square(64, 50, 50, 60, 60)
    new[10:14, 10:14] = False
    merged = merge_click_region(_logits(prev), _logits(new), (20, 35), positive=True) > 0
    np.testing.assert_array_equal(merged, prev | _square(64, 10, 30, 30, 40))


def test_a_negative_click_removes_only_the_region_that_holds_it():
    prev = _square(64, 10, 10, 30, 30) | _square(64, 40, 40, 50, 50)
    new = _square(64, 10, 10, 30, 20)  # removes the right half and the second square
    merged = merge_click_region(_logits(prev), _logits(new), (45, 45), positive=False) > 0
    np.testing.assert_array_equal(merged, _square(64, 10, 10, 30, 30))


def test_a_click_whose_pixel_did_not_change_takes_the_new_prediction_whole():
    prev = _square(64, 10, 10, 30, 30)
    new = _square(64, 12, 12, 28, 28)
    merged = merge_click_region(_logits(prev), _logits(new), (5, 5), positive=True)
    np.testing.assert_array_equal(merged, _logits(new))


def test_logits_inside_the_region_are_the_new_ones_and_outside_the_previous_ones():
    rng = np.random.default_rng(0)
    prev = rng.normal(size=(32, 32)).astype(np.float32) - 3.0
    new = prev.copy()
    new[4:8, 4:8] = 5.0
    new[20:24, 20:24] = 5.0
    merged = merge_click_region(prev, new, (5, 5), positive=True)
    np.testing.assert_array_equal(merged[4:8, 4:8], new[4:8, 4:8])
    np.testing.assert_array_equal(merged[20:24, 20:24], prev[20:24, 20:24])


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="two"):
        merge_click_region(np.zeros((8, 8)), np.zeros((8, 4)), (0, 0), True)


@pytest.mark.parametrize("hw", [(512, 512), (300, 200)])
def test_click_maps_to_the_lowres_pixel_under_it(hw):
    h, w = hw
    row, col = click_to_lowres_rc(np.array([h - 1, 0.0]), hw, 256, 256, RESIZE_STRETCH)
    assert (row, col) == (255, 0)
    row, col = click_to_lowres_rc(np.array([h / 2, w / 2]), hw, 256, 256, RESIZE_STRETCH)
    assert abs(row - 128) <= 1 and abs(col - 128) <= 1
