"""Propagation through the volume with fake numpy engines (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from oracle_engines import OracleEngine
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.tasks.propagate import (
    DEFAULT_BOX_MARGIN,
    DEFAULT_STOP_OVERLAP,
    default_settings,
    interior_point_yx,
    mask_iou,
    prompt_from_mask,
    propagate,
)
from napari_medsam.tasks.propagate_options import PropagationOptions
from napari_medsam.types import Progress, SliceMask, SlicePrediction

WINDOW = IntensityWindow(0.0, 1.0)


def _blob_volume(n_z=12):
    """Label 1: a disk on slices 3..8 of a (n_z, 20, 20) volume, radius 5, 6, 7, 8, 7, 6 px.

    The radius changes by one pixel a slice, so every slice's box differs while
    neighbouring slices overlap (IoU 0.72..0.76) above the default
    ``stop_overlap``, as an organ's slices do on CT.
    """
    labels = np.zeros((n_z, 20, 20), np.uint8)
    yy, xx = np.mgrid[:20, :20]
    for z in range(3, 9):
        r = 8 - abs(z - 6)
        labels[z][(yy - 10) ** 2 + (xx - 10) ** 2 <= r * r] = 1
    return labels


def _run(engine, labels, start_z, **kw):
    image = labels.astype(np.float32)
    items = list(propagate(engine, image, WINDOW, start_z, labels[start_z] == 1, 1, "vol", PropagationOptions(**kw)))
    masks = [i for i in items if isinstance(i, SliceMask)]
    progress = [i for i in items if isinstance(i, Progress)]
    return masks, progress


class ScriptedEngine:
    """Returns fixed masks / scores per slice and records every prompt."""

    name = "scripted"
    image_size = 256

    def __init__(self, masks_zyx, scores=None):
        self.masks_zyx = np.asarray(masks_zyx, bool)
        self.scores = scores or {}
        self.prompts = {}
        self.embedded = []

    def embed(self, image_yx, cache_key=None):
        self.embedded.append(cache_key[1])

    def predict(self, image_yx, prompt, cache_key=None):
        z = cache_key[1]
        self.prompts[z] = prompt
        logits = np.full((256, 256), float(z), np.float32)
        return SlicePrediction(self.masks_zyx[z].copy(), logits, self.scores.get(z, 0.9))


def test_stops_where_the_object_ends_and_yields_one_mask_per_slice():
    labels = _blob_volume()
    engine = OracleEngine(labels)
    masks, progress = _run(engine, labels, 5)
    assert [m.z for m in masks] == [6, 7, 8, 4, 3]  # up first, then down
    for m in masks:
        np.testing.assert_array_equal(m.mask_yx, labels[m.z] == 1)
        assert m.label == 1 and m.mask_yx.dtype == bool
    assert len({id(m.mask_yx) for m in masks}) == len(masks)
    # slices 9 and 2 were tried (the object vanished there), nothing beyond
    assert engine.predict_calls == 7
    assert progress[-1].done == progress[-1].total == 11
    assert all(p.done <= p.total for p in progress)
    assert [p.done for p in progress] == sorted(p.done for p in progress)


def test_single_direction_and_bad_arguments():
    labels = _blob_volume()
    masks, _ = _run(OracleEngine(labels), labels, 5, direction="down")
    assert [m.z for m in masks] == [4, 3]
    masks, _ = _run(OracleEngine(labels), labels, 5, direction="up")
    assert [m.z for m in masks] == [6, 7, 8]
    with pytest.raises(ValueError, match="direction"):
        _run(OracleEngine(labels), labels, 5, direction="sideways")
    with pytest.raises(IndexError):
        _run(OracleEngine(labels), labels, 12)


def test_locked_slices_are_never_overwritten_and_seed_the_next_slice():
    labels = _blob_volume()
    engine = ScriptedEngine(labels == 1)
    hand = np.zeros((20, 20), bool)
    hand[0:4, 0:5] = True  # the user's correction on slice 7, far from the model's masks
    masks, _ = _run(engine, labels, 5, locked_zs={7}, locked_masks={7: hand})
    assert 7 not in [m.z for m in masks] and 7 not in engine.prompts
    m = DEFAULT_BOX_MARGIN  # box of the hand mask, widened
    np.testing.assert_array_equal(engine.prompts[8].box_yxyx, [0, 0, 3 + m, 4 + m])
    assert engine.prompts[8].prev_logits_lowres is None  # no logits for a hand-drawn slice


def test_locked_slice_without_mask_or_empty_ends_the_direction():
    labels = _blob_volume()
    masks, _ = _run(ScriptedEngine(labels == 1), labels, 5, locked_zs={7})
    assert [m.z for m in masks] == [6, 4, 3]
    empty = np.zeros((20, 20), bool)
    masks, _ = _run(ScriptedEngine(labels == 1), labels, 5, locked_zs={4}, locked_masks={4: empty})
    assert [m.z for m in masks] == [6, 7, 8]


def test_repropagation_from_a_corrected_slice():
    truth = _blob_volume()
    wrong = truth.copy()
    wrong[6:9] = 0
    wrong[6:9, 0:4, 0:4] = 1  # the model drifts to a wrong blob above slice 5
    # (no overlap guard here: the default one would stop at the jump, which is a feature)
    masks, _ = _run(ScriptedEngine(wrong == 1), truth, 5, direction="up", stop_overlap=0.0)
    assert [m.z for m in masks] == [6, 7, 8] and not (masks[0].mask_yx & (truth[6] == 1)).any()
    # the user corrects slice 6 by hand; re-propagating from there keeps it and follows the truth
    engine = OracleEngine(truth)
    labels = truth.astype(np.uint8)
    again = list(
        propagate(
            engine, labels.astype(np.float32), WINDOW, 6, truth[6] == 1, 1, "vol",
            PropagationOptions(locked_zs={6}),
        )
    )
    got = {m.z: m.mask_yx for m in again if isinstance(m, SliceMask)}
    assert sorted(got) == [3, 4, 5, 7, 8]
    for z, m in got.items():
        np.testing.assert_array_equal(m, truth[z] == 1)


def test_score_and_overlap_thresholds_stop_a_direction():
    labels = _blob_volume()
    engine = ScriptedEngine(labels == 1, scores={7: 0.2})
    masks, _ = _run(engine, labels, 5, stop_score=0.5)
    assert [m.z for m in masks] == [6, 4, 3]
    shifted = labels == 1
    shifted[4] = np.roll(shifted[4], 4, axis=1)  # slides sideways, off slice 5's mask
    jump = mask_iou(shifted[4], shifted[5])
    assert 0.3 < jump < 0.5
    masks, _ = _run(ScriptedEngine(shifted), labels, 5, stop_overlap=jump + 0.01)
    assert [m.z for m in masks] == [6, 7, 8]
    masks, _ = _run(ScriptedEngine(shifted), labels, 5, stop_overlap=jump - 0.01)
    assert [m.z for m in masks] == [6, 7, 8, 4]  # slice 3 does not overlap the shifted 4 enough
    areas = (labels == 1).sum(axis=(1, 2))  # 81, 113, 149, 197, 149, 113 on slices 3..8
    masks, _ = _run(ScriptedEngine(labels == 1), labels, 5, min_area=int(areas[3]) + 1)
    assert [m.z for m in masks] == [6, 7, 8, 4]  # slice 3 is the only one below the area


def test_clear_past_end_only_at_the_outer_end():
    labels = _blob_volume()
    masks, progress = _run(
        ScriptedEngine(labels == 1), labels, 5, direction="up", clear_past_end=True
    )
    assert [m.z for m in masks] == [6, 7, 8, 9, 10, 11]  # 9 predicted empty: 9..11 cleared
    assert not any(m.mask_yx.any() for m in masks[3:]) and masks[-1].score == 0.0
    assert progress[-1].done == progress[-1].total == 6
    # a corrected slice further up says the object goes on: nothing is cleared
    kw = dict(
        direction="up", clear_past_end=True, locked_zs={10}, locked_masks={10: labels[5] == 1}
    )
    masks, _ = _run(ScriptedEngine(labels == 1), labels, 5, **kw)
    assert [m.z for m in masks] == [6, 7, 8]
    # an empty seed (a negative click erased the slice) clears everything beyond it
    masks, _ = _run(ScriptedEngine(labels == 1), np.zeros_like(labels), 5, clear_past_end=True)
    assert [m.z for m in masks] == [6, 7, 8, 9, 10, 11, 4, 3, 2, 1, 0]
    assert not any(m.mask_yx.any() for m in masks)


def test_prompt_from_previous_mask_box_point_logits():
    labels = _blob_volume()
    engine = ScriptedEngine(labels == 1)
    start_logits = np.full((256, 256), -5.0, np.float32)
    _run(
        engine,
        labels,
        5,
        use_point=True,
        use_prev_logits=True,
        box_margin=2,
        start_logits_lowres=start_logits,
    )
    p6, p7 = engine.prompts[6], engine.prompts[7]
    np.testing.assert_array_equal(p6.prev_logits_lowres, start_logits)
    assert p7.prev_logits_lowres[0, 0] == 6.0  # slice 6's logits feed slice 7
    seed = labels[5] == 1
    y, x = p6.points_yx[0].astype(int)
    assert seed[y, x] and p6.point_labels.tolist() == [1]
    ys, xs = np.nonzero(seed)
    np.testing.assert_array_equal(
        p6.box_yxyx, [ys.min() - 2, xs.min() - 2, ys.max() + 2, xs.max() + 2]
    )


def test_helpers():
    m = np.zeros((9, 9), bool)
    m[1:8, 1:8] = True
    np.testing.assert_array_equal(interior_point_yx(m), [4, 4])
    assert interior_point_yx(np.zeros((3, 3), bool)) is None
    assert mask_iou(m, m) == 1.0 and mask_iou(m, ~m) == 0.0 and mask_iou(~m & m, ~m & m) == 0.0
    edge = np.zeros((5, 5), bool)
    edge[0:2, 0:2] = True
    box = prompt_from_mask(edge, box_margin=3).box_yxyx
    np.testing.assert_array_equal(box, [0, 0, 4, 4])  # clipped to the slice
    with pytest.raises(ValueError):
        prompt_from_mask(np.zeros((5, 5), bool))


def test_stop_at_locked_reruns_only_up_to_the_neighbouring_corrections():
    labels = _blob_volume()
    engine = ScriptedEngine(labels == 1)
    kw = dict(
        locked_zs={4, 7}, locked_masks={4: labels[4] == 1, 7: labels[7] == 1}, stop_at_locked=True
    )
    masks, progress = _run(engine, labels, 5, clear_past_end=True, **kw)
    assert [m.z for m in masks] == [6]  # 7 above and 4 below are corrected: nothing beyond runs
    assert sorted(engine.prompts) == [6]
    assert progress[-1].done == progress[-1].total


def test_default_overlap_guard_stops_a_jump_to_another_object():
    truth = _blob_volume()
    wrong = truth.copy()
    wrong[6:9] = 0
    wrong[6:9, 0:4, 0:4] = 1
    masks, _ = _run(ScriptedEngine(wrong == 1), truth, 5, direction="up")
    assert masks == []
    assert default_settings()["stop_overlap"] > 0.0


def test_default_overlap_guard_stops_a_leak_into_a_neighbour():
    """A mask that spills into the organ next door (IoU 0.57 with the slice before) ends
    the direction with the measured default; a mild guard (0.2) would paint it and go on."""
    truth = _blob_volume()
    leak = truth == 1
    leak[6, 1:19, 14:20] = True  # slice 6's mask runs into a neighbour on the right
    overlap = mask_iou(leak[6], truth[5] == 1)
    assert 0.2 < overlap < DEFAULT_STOP_OVERLAP
    masks, _ = _run(ScriptedEngine(leak), truth, 5, direction="up")
    assert masks == []
    masks, _ = _run(ScriptedEngine(leak), truth, 5, direction="up", stop_overlap=0.2)
    assert [m.z for m in masks] == [6, 7, 8]
