"""SimpleClick disk maps in the model frame."""

import numpy as np
import pytest

from napari_medsam.prompts.clickmaps import click_maps


def test_positive_and_negative_disks_on_pixel_centres():
    # side == longest side: scale 1, so a click's disk is centred on its own pixel
    maps = click_maps(np.array([[10, 40], [5, 5]]), np.array([1, 0]), (32, 64), 64)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    pos, neg, prev = maps
    assert pos[10, 40] == 1 and pos[10, 45] == 1 and pos[15, 40] == 1  # radius 5 included
    assert pos[10, 46] == 0 and pos[14, 44] == 0  # 6 px away / 5.66 px away
    assert pos.sum() == 81  # lattice points within radius 5 of a lattice point
    assert neg[5, 5] == 1 and neg.sum() == 81
    assert not (pos * neg).any()
    assert not prev.any()


def test_disk_centre_follows_the_scaled_pixel_centre():
    # (32, 64) at side 128: scale 2; pixel (10, 40) spans model rows 20-21, cols 80-81
    maps = click_maps(np.array([[10, 40]]), np.array([1]), (32, 64), 128)
    ys, xs = np.nonzero(maps[0])
    assert xs.mean() == pytest.approx(80.5) and ys.mean() == pytest.approx(20.5)


def test_xy_not_swapped_on_non_square_slice():
    maps = click_maps(np.array([[0, 63]]), np.array([1]), (32, 64), 128, radius=1)
    ys, xs = np.nonzero(maps[0])
    assert xs.mean() > 120 and ys.mean() < 2  # top-right corner, not bottom-left


def test_stretch_mode_scales_rows_and_columns_separately():
    # (32, 64) stretched to 128 x 128: rows x4, columns x2
    maps = click_maps(np.array([[10, 40]]), np.array([1]), (32, 64), 128, resize="stretch")
    ys, xs = np.nonzero(maps[0])
    assert ys.mean() == pytest.approx(41.5, abs=0.01) and xs.mean() == pytest.approx(80.5, abs=0.01)


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
