"""Negative clicks from other labelled objects: prompts.negatives on synthetic slices,
and the segment / propagate tasks that merge them into the engine's prompts."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeEngine

from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.prompts.negatives import (
    negative_points_yx,
    prompt_region_yx,
    with_negatives_from_labels,
)
from napari_medsam.tasks.propagate import propagate
from napari_medsam.tasks.segment import segment_slice
from napari_medsam.tasks.propagate_options import PropagationOptions
from napari_medsam.types import SliceMask, SlicePrompt

H, W = 40, 50


def _box_region(y0, x0, y1, x1):
    region = np.zeros((H, W), bool)
    region[y0 : y1 + 1, x0 : x1 + 1] = True
    return region


def test_one_point_per_component_at_its_interior_largest_first():
    labels = np.zeros((H, W), np.uint8)
    labels[5:15, 5:15] = 1  # the object being segmented
    labels[5:12, 20:27] = 2  # 7 x 7: centre (8, 23)
    labels[20:31, 5:16] = 3  # 11 x 11: centre (25, 10)
    labels[20:25, 30:35] = 3  # a second component of label 3, 5 x 5: centre (22, 32)
    region = np.ones((H, W), bool)
    points = negative_points_yx(labels, 1, region, max_points=5, min_pixels=1)
    assert points.dtype == np.float32 and points.shape == (3, 2)
    np.testing.assert_array_equal(points, [[25, 10], [8, 23], [22, 32]])
    for y, x in points.astype(int):
        assert labels[y, x] not in (0, 1)


def test_cap_keeps_the_largest_overlaps():
    labels = np.zeros((H, W), np.uint8)
    labels[0:3, 0:3] = 4  # 9 px
    labels[10:20, 10:20] = 5  # 100 px
    labels[30:35, 30:35] = 6  # 25 px
    points = negative_points_yx(labels, 1, np.ones((H, W), bool), max_points=2, min_pixels=1)
    assert [labels[int(y), int(x)] for y, x in points] == [5, 6]
    assert negative_points_yx(labels, 1, np.ones((H, W), bool), max_points=0).shape == (0, 2)


def test_only_components_in_the_region_and_the_point_lies_inside_it():
    labels = np.zeros((H, W), np.uint8)
    labels[10:30, 0:20] = 7  # reaches into the box from the left
    labels[0:5, 40:50] = 8  # outside the box
    region = _box_region(12, 15, 28, 40)
    points = negative_points_yx(labels, 1, region, min_pixels=1)
    assert points.shape == (1, 2)
    y, x = points[0].astype(int)
    assert region[y, x] and labels[y, x] == 7
    # deepest inside the box: the component's column nearest its centre that the box holds
    assert x == 15


def test_specks_below_min_pixels_are_ignored():
    labels = np.zeros((H, W), np.uint8)
    labels[10:12, 10:12] = 9  # 4 px
    region = np.ones((H, W), bool)
    assert negative_points_yx(labels, 1, region, min_pixels=5).shape == (0, 2)
    assert negative_points_yx(labels, 1, region, min_pixels=4).shape == (1, 2)


def test_the_segmented_label_and_background_never_give_points():
    labels = np.zeros((H, W), np.uint16)
    labels[:, :] = 300
    assert negative_points_yx(labels, 300, np.ones((H, W), bool)).shape == (0, 2)
    assert negative_points_yx(np.zeros((H, W), int), 1, np.ones((H, W), bool)).shape == (0, 2)


def test_region_from_box_or_from_positive_clicks():
    box = SlicePrompt(box_yxyx=np.array([30, 40, 5, 45], np.float32))  # corners in any order
    region = prompt_region_yx(box, (H, W))
    assert region.sum() == 26 * 6 and region[5, 40] and region[30, 45]
    clicks = SlicePrompt(
        points_yx=np.array([[20, 25], [0, 0]], np.float32), point_labels=np.array([1, 0])
    )
    region = prompt_region_yx(clicks, (H, W), near_px=3)
    assert region.sum() == 49 and region[17, 22] and region[23, 28] and not region[0, 0]
    assert not prompt_region_yx(SlicePrompt(), (H, W)).any()


def test_with_negatives_appends_label_zero_clicks_and_keeps_the_rest():
    labels = np.zeros((H, W), np.uint8)
    labels[10:30, 10:20] = 1
    labels[10:30, 22:32] = 2  # the neighbour inside the box
    logits = np.zeros((256, 256), np.float32)
    prompt = SlicePrompt(
        points_yx=np.array([[20, 15]], np.float32),
        point_labels=np.array([1]),
        box_yxyx=np.array([8, 8, 31, 33], np.float32),
        prev_logits_lowres=logits,
    )
    out = with_negatives_from_labels(prompt, labels, 1)
    assert out.point_labels.tolist() == [1, 0]
    np.testing.assert_array_equal(out.points_yx[0], [20, 15])
    y, x = out.points_yx[1].astype(int)
    assert labels[y, x] == 2
    assert out.box_yxyx is prompt.box_yxyx and out.prev_logits_lowres is logits
    # nothing else on the slice: the very same prompt
    assert with_negatives_from_labels(prompt, labels * (labels == 1), 1) is prompt


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        negative_points_yx(np.zeros((H, W), int), 1, np.ones((H, W + 1), bool))


# ---------------------------------------------------------------- tasks


def _two_objects(n_z=6, other_zs=range(3)):
    """Object 1 on every slice; object 2 right next to it on ``other_zs`` only."""
    labels = np.zeros((n_z, 32, 32), np.uint8)
    labels[:, 8:21, 6:15] = 1
    for z in other_zs:
        labels[z, 8:21, 15:23] = 2
    return labels


def _negatives(prompt):
    return prompt.points_yx[prompt.point_labels == 0]


def test_segment_slice_adds_the_other_objects_as_negatives_only_when_asked():
    labels = _two_objects()
    image = labels.astype(np.float32)
    prompt = SlicePrompt(box_yxyx=np.array([6, 4, 22, 16], np.float32))
    window = IntensityWindow(0.0, 2.0)
    engine = FakeEngine(truth_zyx=labels)
    off = list(segment_slice(engine, image, window, 1, prompt, 1, "v"))[-1]
    on = list(
        segment_slice(engine, image, window, 1, prompt, 1, "v", negatives_from_yx=labels[1])
    )[-1]
    assert isinstance(on, SliceMask) and on.mask_yx.sum() == off.mask_yx.sum() == 13 * 9
    first, second = engine.prompts
    assert len(first.points_yx) == 0
    ((y, x),) = _negatives(second).astype(int)
    assert labels[1, y, x] == 2 and (6 <= y <= 22 and 4 <= x <= 16)
    with pytest.raises(ValueError, match="labels of shape"):
        list(segment_slice(engine, image, window, 1, prompt, 1, "v", negatives_from_yx=labels))


def test_propagate_takes_each_slices_negatives_from_the_labels_on_that_slice():
    labels = _two_objects()
    snapshot = labels.copy()
    engine = FakeEngine(truth_zyx=labels)
    items = list(
        propagate(
            engine, labels.astype(np.float32), IntensityWindow(0.0, 2.0), 3, labels[3] == 1,
            1, "v", PropagationOptions(negatives_from_zyx=snapshot),
        )
    )  # fmt: skip
    assert sorted(i.z for i in items if isinstance(i, SliceMask)) == [0, 1, 2, 4, 5]
    for call in engine.predict_calls:
        z, negatives = call.cache_key.z, _negatives(call.prompt).astype(int)
        if z < 3:  # object 2 is inside the box (widened by 2 px): one click on it
            assert len(negatives) == 1 and snapshot[z][tuple(negatives[0])] == 2
        else:
            assert len(negatives) == 0
    with pytest.raises(ValueError, match="labels of shape"):
        next(
            propagate(
                engine, labels, IntensityWindow(0.0, 2.0), 3, labels[3] == 1, 1, None,
                PropagationOptions(negatives_from_zyx=labels[:2]),
            )
        )  # fmt: skip
