"""SimpleClick disk maps in the model frame."""

import numpy as np
import pytest

from napari_medsam.prompts.clickmaps import click_maps


def test_positive_and_negative_disks_at_scaled_positions():
    # (H, W) = (32, 64) at side 128: scale 2; click (row 10, col 40) -> model (x 80, y 20)
    maps = click_maps(np.array([[10, 40], [5, 5]]), np.array([1, 0]), (32, 64), 128)
    assert maps.shape == (3, 128, 128) and maps.dtype == np.float32
    pos, neg, prev = maps
    assert pos[20, 80] == 1 and pos[20, 85] == 1 and pos[25, 80] == 1  # radius 5 included
    assert pos[20, 86] == 0 and pos[24, 84] == 0  # 6 px away / 5.66 px away
    assert pos.sum() == 81  # lattice points within radius 5 of a lattice point
    assert neg[10, 10] == 1 and neg.sum() == 81
    assert not (pos * neg).any()
    assert not prev.any()


def test_xy_not_swapped_on_non_square_slice():
    maps = click_maps(np.array([[0, 63]]), np.array([1]), (32, 64), 128, radius=1)
    ys, xs = np.nonzero(maps[0])
    assert xs.mean() == pytest.approx(126) and ys.mean() < 1  # top-right corner, not bottom-left


def test_disk_clipped_at_border_and_radius_option():
    maps = click_maps(np.array([[0, 0]]), np.array([1]), (64, 64), 64, radius=2)
    assert maps[0].sum() == 6  # quarter disk: (0,0),(0,1),(0,2),(1,0),(1,1),(2,0)


def test_previous_mask_channel_and_validation():
    prev = np.zeros((64, 64))
    prev[10:20, 30:40] = 1
    maps = click_maps(np.zeros((0, 2)), np.zeros(0), (64, 64), 64, prev_mask_model=prev)
    np.testing.assert_array_equal(maps[2], prev)
    assert maps[:2].sum() == 0
    with pytest.raises(ValueError):
        click_maps(np.zeros((0, 2)), np.zeros(0), (64, 64), 64, prev_mask_model=np.zeros((32, 32)))
    with pytest.raises(ValueError):
        click_maps(np.array([[1, 1]]), np.array([1, 0]), (64, 64), 64)
