"""The model's window chosen from the intensities inside and around a box (CT)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.prompts.object_window import (
    box_and_ring,
    object_window,
    percentile_window,
    window_for_prompt,
)

LUNG = IntensityWindow.from_preset("lung")
SOFT = IntensityWindow.from_preset("soft tissue")
BONE = IntensityWindow.from_preset("bone")


def _slice(background_hu: float, object_hu: float) -> tuple[np.ndarray, np.ndarray]:
    """(64, 64) HU slice with a 10 px square object at (27..36, 27..36), and its loose box."""
    image = np.full((64, 64), background_hu, np.float32)
    image[27:37, 27:37] = object_hu
    return image, np.array([26, 26, 37, 37], np.float32)


def test_ring_surrounds_the_box_and_is_clipped_to_the_slice():
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    inside, ring = box_and_ring(image, (2, 3, 4, 5))
    assert sorted(inside) == sorted(image[2:5, 3:6].ravel())
    assert ring.size == 9 * 10 - 9  # the 4 px minimum ring, clipped at rows 0..8, cols 0..9
    assert image[9, 9] not in ring and image[8, 9] in ring and image[9, 0] not in ring
    image[0, 0] = np.nan
    assert box_and_ring(image, (2, 3, 4, 5))[1].size == 80
    with pytest.raises(ValueError, match="not"):
        box_and_ring(image, (4, 3, 2, 5))


def test_an_organ_in_a_box_whose_far_surroundings_are_air_keeps_soft_tissue():
    image = np.full((64, 64), -1000.0, np.float32)  # outside the body
    image[8:56, 8:56] = 40.0  # the organ fills the box, the body ends 4-7 px beyond it
    image[14:50, 14:50] = 60.0
    assert object_window(image, (12, 12, 51, 51)) == SOFT


@pytest.mark.parametrize(
    ("background", "obj", "expected"),
    [(-850.0, 20.0, LUNG), (-80.0, 50.0, SOFT), (30.0, 900.0, BONE)],
)
def test_the_preset_follows_the_object_and_its_surroundings(background, obj, expected):
    image, box = _slice(background, obj)
    assert object_window(image, box) == expected


def test_a_nodule_in_lung_keeps_the_lung_visible_in_its_window():
    image, box = _slice(-850.0, 20.0)
    image[:8] = -1000.0  # air outside the body
    scaled = object_window(image, box).apply(image)
    assert scaled[30, 30] > scaled[40, 40] > scaled[0, 0]  # nodule > lung > air
    assert scaled[40, 40] - scaled[0, 0] > 0.09
    local = percentile_window(image, box).apply(image)  # the box + ring only: no air in it
    assert local[30, 30] - local[40, 40] > 0.5
    assert SOFT.apply(image)[40, 40] == SOFT.apply(image)[0, 0] == 0.0  # lung = air there


def test_percentile_window_width_is_bounded():
    flat, box = _slice(40.0, 45.0)
    assert percentile_window(flat, box).level_width[1] == pytest.approx(400.0)
    wide, box = _slice(-1000.0, 3000.0)
    assert percentile_window(wide, box).level_width[1] == pytest.approx(2000.0)


def test_window_for_prompt_keeps_the_display_for_mr_and_for_the_display_rule():
    image, box = _slice(-850.0, 20.0)
    display = IntensityWindow(-100.0, 300.0, "manual")
    assert window_for_prompt("display", display, image, box, is_ct=True) is display
    assert window_for_prompt("preset", display, image, box, is_ct=False) is display
    assert window_for_prompt("preset", display, image, box, is_ct=True) == LUNG
    assert window_for_prompt("percentile", display, image, box, is_ct=True).kind == "ct"
    with pytest.raises(ValueError, match="window rule"):
        window_for_prompt("auto", display, image, box, is_ct=True)
