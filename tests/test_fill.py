"""Fill between annotated slices: signed-distance interpolation and model refinement."""

from __future__ import annotations

import numpy as np
import pytest

from oracle_engines import OracleEngine
from napari_medsam.evaluation.protocol3d import dice3d
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.tasks.fill import (
    fill_between,
    fill_gaps,
    interpolate_masks,
    signed_distance,
)
from napari_medsam.types import Progress, SliceMask

WINDOW = IntensityWindow(0.0, 1.0)


def _ball(n_z=21, size=41, radius=9.5, spacing_z=1.0):
    zz, yy, xx = np.mgrid[:n_z, :size, :size].astype(float)
    c = (n_z - 1) / 2.0, (size - 1) / 2.0, (size - 1) / 2.0
    return ((zz - c[0]) * spacing_z) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius**2


def _disk(size, cy, cx, r):
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_signed_distance_is_negative_inside_positive_outside():
    m = _disk(21, 10, 10, 5)
    d = signed_distance(m)
    assert (d[m] < 0).all() and (d[~m] > 0).all()
    assert d[10, 10] == pytest.approx(0.5 - np.sqrt(26.0))  # nearest outside pixel: (11, 15)
    np.testing.assert_array_equal(signed_distance(m, (2.0, 2.0)) < 0, m)


def test_interpolation_of_two_discs_makes_the_sphere_between():
    ball = _ball()
    z0 = 10
    a, b = z0 - 6, z0 + 6  # two discs of a sphere, 12 slices apart
    slab = np.array([interpolate_masks(ball[a], ball[b], (z - a) / (b - a)) for z in range(a + 1, b)])
    # equal discs: every slice between is the same disc (interpolation is not a sphere model)
    np.testing.assert_array_equal(slab[0], ball[a])
    # unequal discs from one half of the sphere: the radius changes monotonically
    a, b = z0, z0 + 6
    areas = [interpolate_masks(ball[a], ball[b], (z - a) / (b - a)).sum() for z in range(a, b + 1)]
    assert areas[0] == ball[a].sum() and areas[-1] == ball[b].sum()
    assert all(x >= y for x, y in zip(areas, areas[1:], strict=False))
    slab = np.array([interpolate_masks(ball[a], ball[b], (z - a) / (b - a)) for z in range(a + 1, b)])
    assert dice3d(slab, ball[a + 1 : b]) > 0.9


def test_interpolation_follows_a_shifted_disc_and_rejects_bad_input():
    a, b = _disk(41, 15, 14, 6), _disk(41, 15, 22, 6)  # overlapping discs
    mid = interpolate_masks(a, b, 0.5)
    ys, xs = np.nonzero(mid)
    assert abs(xs.mean() - 18) < 0.5 and abs(ys.mean() - 15) < 0.5
    assert 0.6 * a.sum() < mid.sum() < a.sum()  # a shift shrinks the mask between
    # discs that do not overlap at all leave nothing between (a known limit of the method)
    assert not interpolate_masks(_disk(41, 15, 8, 5), _disk(41, 15, 32, 5), 0.5).any()
    with pytest.raises(ValueError, match="empty"):
        interpolate_masks(a, np.zeros_like(a), 0.5)
    with pytest.raises(ValueError, match="shapes"):
        interpolate_masks(a, a[:-1], 0.5)
    with pytest.raises(ValueError, match="t must"):
        interpolate_masks(a, b, 1.5)


def test_fill_gaps_skip_locked_slices_and_adjacent_anchors():
    assert fill_gaps({2, 3, 8, 12}, locked_zs={5}) == [(3, 8, [4, 6, 7]), (8, 12, [9, 10, 11])]
    assert fill_gaps({4}) == [] and fill_gaps({4, 5}) == []


def test_fill_between_never_writes_locked_or_anchor_slices():
    ball = _ball()
    anchors = {4: ball[4], 10: ball[10], 16: ball[16]}
    items = list(fill_between(None, ball.astype(np.float32), WINDOW, anchors, 3,
                              locked_zs={7, 13}, refine="none"))  # fmt: skip
    masks = [i for i in items if isinstance(i, SliceMask)]
    assert [m.z for m in masks] == [5, 6, 8, 9, 11, 12, 14, 15]
    assert all(m.label == 3 for m in masks)
    assert isinstance(items[-1], Progress) and items[-1].done == items[-1].total == 8
    pred = np.zeros_like(ball)
    for m in masks:
        pred[m.z] = m.mask_yx
    zs = [m.z for m in masks]
    assert dice3d(pred[zs], ball[zs]) > 0.9


def test_fill_skips_a_gap_whose_anchor_is_empty_and_checks_arguments():
    ball = _ball()
    anchors = {4: ball[4], 10: np.zeros_like(ball[10]), 16: ball[16]}
    items = list(fill_between(None, ball, WINDOW, anchors, 1, refine="none"))
    assert not [i for i in items if isinstance(i, SliceMask)]
    with pytest.raises(ValueError, match="refine"):
        list(fill_between(None, ball, WINDOW, anchors, 1, refine="magic"))
    with pytest.raises(ValueError, match="engine"):
        list(fill_between(None, ball, WINDOW, anchors, 1, refine="box"))
    with pytest.raises(ValueError, match="outside"):
        list(fill_between(None, ball, WINDOW, {40: ball[4], 1: ball[1]}, 1, refine="none"))


def test_refinement_prompts_the_model_with_the_interpolated_box():
    ball = _ball()
    engine = OracleEngine(ball.astype(np.uint8))
    anchors = {4: ball[4], 16: ball[16]}
    masks = [
        i for i in fill_between(engine, ball.astype(np.float32), WINDOW, anchors, 1, "vol",
                                refine="box")
        if isinstance(i, SliceMask)
    ]  # fmt: skip
    assert [m.z for m in masks] == list(range(5, 16))
    for m in masks:  # the oracle answers the truth for the boxed object
        np.testing.assert_array_equal(m.mask_yx, ball[m.z])
    assert engine.predict_calls == 11


def test_a_refined_mask_far_from_the_interpolation_is_not_used():
    ball = _ball()
    other = np.zeros_like(ball, dtype=np.uint8)
    other[:, :5, :5] = 1  # the oracle's answer for slice 10: a corner, nowhere near the ball
    other[np.arange(21) != 10] = ball[np.arange(21) != 10]
    engine = OracleEngine(other)
    anchors = {8: ball[8], 12: ball[12]}
    masks = {m.z: m for m in fill_between(engine, ball.astype(np.float32), WINDOW, anchors, 1,
                                          "vol", refine="box") if isinstance(m, SliceMask)}  # fmt: skip
    assert masks[10].score == 1.0 and masks[10].mask_yx.sum() > 200  # kept the interpolation
    np.testing.assert_array_equal(masks[9].mask_yx, ball[9])
