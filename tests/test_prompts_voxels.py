"""Clicks and boxes in a volume's voxel frame (numpy only, no napari)."""

import numpy as np

from napari_medsam.prompts.voxels import (
    box_on_slice,
    inside_volume,
    latest_box,
    map_points,
    points_on_slice,
    slice_prompt,
    slices_of,
)


def test_map_points_reads_an_affine_map_off_d_plus_one_probes():
    matrix, offset = np.array([[2.0, 0, 0], [0, 0.5, 0.1], [0, 0, 3]]), np.array([1.0, -2, 4])
    calls = []

    def convert(p):
        calls.append(1)
        return matrix @ p + offset

    coords = np.random.default_rng(0).uniform(-5, 5, (50, 3))
    np.testing.assert_allclose(map_points(coords, convert), coords @ matrix.T + offset)
    assert len(calls) == 4
    calls.clear()
    few = coords[:3]
    np.testing.assert_allclose(map_points(few, convert), few @ matrix.T + offset)
    assert len(calls) == 3  # few points: one call each


def test_points_on_slice_keeps_that_slices_clicks_inside_the_volume():
    zyx = np.array([[2.2, 1.0, 3.0], [1.6, 4.0, 5.0], [2.0, 9.6, 1.0], [3.0, 0.0, 0.0]])
    points_yx, labels = points_on_slice(zyx, [True, False, True, True], (4, 10, 6), 2)
    np.testing.assert_allclose(points_yx, [[1, 3], [4, 5]])  # 9.6 rounds to row 10: outside
    assert points_yx.dtype == np.float32 and labels.tolist() == [1, 0]
    assert inside_volume([3.4, 9.4, 5.4], (4, 10, 6)) and not inside_volume([-0.6, 0, 0], (4, 10, 6))


def test_box_on_slice_clips_to_the_slice_and_drops_boxes_outside():
    corners = np.array([[2.1, -3.0, 1.0], [1.9, 5.0, 1.0], [2.0, 5.0, 8.0], [2.0, -3.0, 8.0]])
    z, box = box_on_slice(corners, (4, 10, 6))
    assert z == 2 and box.dtype == np.float32
    np.testing.assert_allclose(box, [0, 1, 5, 5])
    assert box_on_slice(corners + [0, 20, 0], (4, 10, 6)) is None  # below the slice
    assert box_on_slice(corners + [5, 0, 0], (4, 10, 6)) is None  # past the last slice


def test_slice_prompt_takes_the_slices_clicks_and_its_latest_box():
    shape = (4, 10, 10)
    old = np.array([[2, 1, 1], [2, 1, 5], [2, 5, 5], [2, 5, 1]], float)
    new = np.array([[2, 2, 2], [2, 2, 6], [2, 7, 6], [2, 7, 2]], float)
    other = np.array([[3, 0, 0], [3, 0, 4], [3, 4, 4], [3, 4, 0]], float)
    points = np.array([[2, 3, 4], [1, 3, 3], [2.2, 6, 6], [2, 30, 3]], float)
    positive = np.array([True, True, False, True])
    prompt = slice_prompt(points, positive, [old, new, other], shape, 2)
    assert prompt.points_yx.tolist() == [[3, 4], [6, 6]]  # z 1 and off-volume dropped
    assert prompt.point_labels.tolist() == [1, 0]
    assert prompt.box_yxyx.tolist() == [2, 2, 7, 6]  # the newer box of slice 2
    assert latest_box([old, new], shape, 1) is None
    empty = slice_prompt(None, None, [], shape, 2)
    assert empty.is_empty and empty.points_yx.shape == (0, 2)
    assert slices_of(points_zyx=[points[1:2], points[2:3]]) == {1, 2}
    outside = other + [10, 0, 0]
    assert slices_of(boxes_corners_zyx=[new, other, outside], shape_zyx=shape) == {2, 3}
