"""The painting rule and the undo stack (levels, grouping, per-label undo, memory bound)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medsam.session.painting import LockedLabelError, paint_mask
from napari_medsam.session.undo import UndoStack


def _square(shape, y0, x0, y1, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_paint_replaces_object_on_slice_only():
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[1, 0:4, 0:4] = 5
    labels[2, 0:4, 0:4] = 5
    before = labels.copy()
    idx, old = paint_mask(labels, 1, _square((8, 8), 2, 2, 6, 6), 5)
    assert (labels[1] == 5).sum() == 16 and labels[1, 5, 5] == 5 and labels[1, 0, 0] == 0
    np.testing.assert_array_equal(labels[2], before[2])  # other slices untouched
    changed = np.flatnonzero(labels.ravel() != before.ravel())
    np.testing.assert_array_equal(np.sort(idx), changed)
    np.testing.assert_array_equal(old, before.ravel()[idx])


def test_paint_never_overwrites_other_labels_by_default_and_never_locked():
    labels = np.zeros((1, 6, 6), np.uint8)
    labels[0, :, 0:2] = 1  # unlocked neighbour
    labels[0, :, 4:6] = 2  # locked neighbour
    full = np.ones((6, 6), bool)
    paint_mask(labels, 0, full, 3, locked_ids={2})
    assert (labels[0, :, 0:2] == 1).all() and (labels[0, :, 4:6] == 2).all()
    assert (labels[0, :, 2:4] == 3).all()
    paint_mask(labels, 0, full, 3, locked_ids={2}, overwrite_unlocked=True)
    assert (labels[0, :, 0:4] == 3).all() and (labels[0, :, 4:6] == 2).all()
    with pytest.raises(LockedLabelError):
        paint_mask(labels, 0, full, 2, locked_ids={2})
    with pytest.raises(ValueError, match="shape"):
        paint_mask(labels, 0, np.ones((5, 5), bool), 3)


def test_paint_on_non_contiguous_volume():
    base = np.zeros((4, 6, 6), np.int32)
    labels = base.transpose(0, 2, 1)  # a view, not C-contiguous
    idx, old = paint_mask(labels, 2, _square((6, 6), 0, 0, 2, 3), 7)
    stack = UndoStack()
    stack.record(idx, old, np.full(idx.size, 7), label=7)
    assert (labels == 7).sum() == 6
    stack.undo(labels)
    assert not labels.any()


def test_undo_redo_multiple_levels():
    labels = np.zeros((4, 8, 8), np.uint8)
    stack = UndoStack()
    snapshots = [labels.copy()]
    for z in range(4):
        stack.paint(labels, z, _square((8, 8), z, z, z + 3, z + 3), 1, name=f"click {z}")
        snapshots.append(labels.copy())
    assert stack.undo_names == ["click 0", "click 1", "click 2", "click 3"]
    for k in range(4, 0, -1):
        step = stack.undo(labels)
        assert step.name == f"click {k - 1}"
        np.testing.assert_array_equal(labels, snapshots[k - 1])
    assert stack.undo(labels) is None and not stack.can_undo()
    for k in range(1, 5):
        stack.redo(labels)
        np.testing.assert_array_equal(labels, snapshots[k])
    assert stack.redo(labels) is None
    stack.undo(labels)
    stack.paint(labels, 0, np.zeros((8, 8), bool), 1)  # a new edit drops the redo branch
    assert not stack.can_redo()


def test_group_makes_one_step_and_keeps_first_old_last_new():
    labels = np.zeros((5, 6, 6), np.uint8)
    stack = UndoStack()
    with stack.group("propagate liver", label=5, extra={"prompts": "before"}):
        for z in range(5):
            stack.paint(labels, z, _square((6, 6), 0, 0, 3, 3), 5)
        stack.paint(labels, 2, _square((6, 6), 1, 1, 4, 4), 5)  # same voxels edited twice
        stack.set_extra(after="x")
    assert stack.undo_names == ["propagate liver"]
    step = stack.undo(labels)
    assert step.extra == {"prompts": "before", "after": "x"} and 5 in step.labels
    assert not labels.any()
    assert len(np.unique(step.index)) == len(step.index)
    stack.redo(labels)
    assert (labels == 5).sum() == 4 * 9 + 9


def test_undo_per_label_leaves_other_objects():
    labels = np.zeros((2, 6, 6), np.uint8)
    stack = UndoStack()
    stack.paint(labels, 0, _square((6, 6), 0, 0, 2, 2), 1)
    stack.paint(labels, 1, _square((6, 6), 0, 0, 2, 2), 2)
    stack.paint(labels, 0, _square((6, 6), 3, 3, 5, 5), 2)
    step = stack.undo(labels, label=1)  # the oldest step, out of order
    assert step.labels == {1}
    assert not (labels == 1).any() and (labels == 2).sum() == 8
    assert stack.can_undo(2) and not stack.can_undo(1)
    assert stack.redo(labels, label=2) is None
    stack.redo(labels, label=1)
    assert (labels == 1).sum() == 4


def test_out_of_order_undo_keeps_voxels_changed_later():
    labels = np.zeros((1, 4, 4), np.uint8)
    stack = UndoStack()
    stack.paint(labels, 0, _square((4, 4), 0, 0, 2, 2), 1)
    stack.paint(labels, 0, np.zeros((4, 4), bool), 1, name="erase 1")
    stack.paint(labels, 0, np.ones((4, 4), bool), 2)  # object 2 fills where 1 was
    step = stack.undo(labels, label=1)
    assert step.name == "erase 1"
    # bringing object 1 back must not wipe what object 2 painted there since
    assert (labels == 2).all()
    # a step that took label 1's voxels counts as touching label 1
    stack2 = UndoStack()
    labels[:] = 0
    stack2.paint(labels, 0, _square((4, 4), 0, 0, 2, 2), 1)
    stack2.paint(labels, 0, np.ones((4, 4), bool), 2, overwrite_unlocked=True)
    assert stack2.undo(labels, label=1).labels == {1, 2}
    assert (labels[0, :2, :2] == 1).all() and (labels == 1).sum() == 4


def test_record_external_brush_edit():
    labels = np.zeros((2, 4, 4), np.uint8)
    idx = np.array([5, 6, 21])
    old = labels.ravel()[idx].copy()
    labels.ravel()[idx] = 3
    stack = UndoStack()
    stack.record(idx, old, np.full(3, 3, np.uint8), label=3, name="brush")
    assert stack.undo(labels).name == "brush" and not labels.any()


def test_empty_edits_make_no_step_and_memory_is_bounded():
    labels = np.zeros((10, 32, 32), np.uint8)
    stack = UndoStack(max_steps=3)
    stack.paint(labels, 0, np.zeros((32, 32), bool), 1)
    assert stack.undo_names == []
    for z in range(6):
        stack.paint(labels, z, np.ones((32, 32), bool), 1, name=str(z))
    assert stack.undo_names == ["3", "4", "5"]
    small = UndoStack(max_bytes=3 * 1024 * 3)  # index (uint32) + old + new = 6 bytes/voxel
    for z in range(6):
        small.paint(labels, z, np.zeros((32, 32), bool), 1)
    assert 1 <= len(small.undo_names) <= 2 and small.nbytes <= 2 * 1024 * 6
    with small.group("x"):
        with pytest.raises(RuntimeError):
            small.undo(labels)


def test_begin_end_group_for_asynchronous_results():
    labels = np.zeros((3, 4, 4), np.uint8)
    stack = UndoStack()
    stack.begin_group("propagate spleen", label=1)
    assert stack.in_group
    for z in range(3):  # slices arriving one by one from a worker
        stack.paint(labels, z, np.ones((4, 4), bool), 1)
    step = stack.end_group()
    assert step.name == "propagate spleen" and stack.undo_names == ["propagate spleen"]
    assert not stack.in_group
    stack.undo(labels)
    assert not labels.any()
    with pytest.raises(RuntimeError):
        stack.end_group()
