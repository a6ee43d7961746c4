"""The 3D workflow in the dock widget: propagate, correct and re-propagate, lock, undo/redo, restore.

Through the manifest, with the fake engine on real worker threads.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from fakes import FakeEngine
from napari.utils.key_bindings import KeyBinding

from napari_medsam._qt import dialogs, files
from napari_medsam.io.phantom import make_phantom
from napari_medsam.session import LabelRegistry

WIDGET = ("napari-medsam", "MedSAM segmentation")
LIVER = 1
SEED_Z = 8  # where the phantom's liver is largest
LIVER_ZS = set(range(4, 12))
# the liver's pointy ends (slices 4 and 11) overlap their neighbours by IoU 0.38 and 0.50 on
# this 4 mm phantom, below DEFAULT_STOP_OVERLAP (0.6): propagation stops short of them, as it
# does at real organs' last slices
PROPAGATED_ZS = set(range(5, 11))


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape_zyx=(12, 64, 64), spacing_zyx_mm=(4.0, 1.0, 1.0))


@pytest.fixture(autouse=True)
def never_ask(monkeypatch):
    """No modal dialog in tests: record restore questions, answer yes."""
    asked = []
    monkeypatch.setattr(
        dialogs, "ask_restore", lambda parent, info: asked.append(info) or True
    )
    return asked


def _open(make_napari_viewer, image_zyx, engine, **image_kwargs):
    viewer = make_napari_viewer()
    image = viewer.add_image(image_zyx, name="CT", **image_kwargs)
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.engine = engine
    return viewer, widget, image


def _add_box(boxes, image, z, y0, x0, y1, x1):
    corners = [(z, y0, x0), (z, y0, x1), (z, y1, x1), (z, y1, x0)]
    verts = np.array([boxes.world_to_data(image.data_to_world(c)) for c in corners])
    boxes.add_rectangles(verts)


def _bbox(mask_yx, margin=2):
    ys, xs = np.nonzero(mask_yx)
    return ys.min() - margin, xs.min() - margin, ys.max() + margin, xs.max() + margin


def _key(layer, key):
    layer.keymap[KeyBinding.from_str(key)](layer)


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(
        lambda: not widget.segment_runner.busy and widget.session3d.propagation_job is None,
        timeout=10000,
    )


def _painted_zs(labels, label):
    return {int(z) for z in np.nonzero((labels.data == label).any(axis=(1, 2)))[0]}


def _segment_liver(qtbot, viewer, widget, image, truth, z=SEED_Z):
    _add_box(viewer.layers["boxes"], image, z, *_bbox(truth[z] == LIVER))
    qtbot.waitUntil(lambda: (widget.labels.data[z] == LIVER).any(), timeout=10000)
    _wait_idle(qtbot, widget)


def _propagate_with_key(qtbot, viewer, widget, image, z, key="P"):
    viewer.dims.set_point(0, image.data_to_world((z, 0, 0))[0])
    assert widget.session3d.current_z() == z
    _key(viewer.layers["clicks"], key)
    assert widget.session3d.propagation_job is not None
    _wait_idle(qtbot, widget)


def test_propagate_paints_the_object_through_the_volume(make_napari_viewer, qtbot, phantom):
    truth = phantom.labels_zyx
    engine = FakeEngine(truth_zyx=truth)
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine, scale=(4, 1, 1))
    _segment_liver(qtbot, viewer, widget, image, truth)
    labels = widget.labels
    progress, painted = [], []
    widget.segment_runner.progress.connect(
        lambda p: progress.append((p.total, not widget.controls.progress_bar.isHidden()))
    )
    labels.events.set_data.connect(lambda e: painted.append(1))
    _propagate_with_key(qtbot, viewer, widget, image, SEED_Z)
    assert _painted_zs(labels, LIVER) == PROPAGATED_ZS
    got, want = labels.data == LIVER, truth == LIVER
    assert not (got & ~want).any()  # only liver voxels
    inner = sorted(PROPAGATED_ZS)
    assert 2 * (got & want)[inner].sum() / (got[inner].sum() + want[inner].sum()) > 0.95
    assert not (labels.data[~want] != 0).any()  # no other organ was touched
    # progress bar over the 11 other slices, shown while it ran; slices arrived one by one
    assert progress and progress[-1][0] == 11 and any(shown for _, shown in progress)
    assert widget.controls.progress_bar.isHidden()
    assert len(painted) >= len(PROPAGATED_ZS) - 1
    # every model call after the first came from the previous slice's mask, off the GUI thread
    zs = [c.cache_key.z for c in engine.predict_calls[1:]]
    assert zs[:3] == [9, 10, 11] and zs[3:6] == [7, 6, 5]
    assert widget.session3d.state.registry.name(LIVER) == "label 1"  # not named yet
    assert widget.session3d.undo_stack.undo_names == [
        f"segment slice {SEED_Z}",
        "propagate label 1",
    ]


def test_cancel_stops_propagation_and_keeps_one_undo_step(make_napari_viewer, qtbot, phantom):
    import threading

    truth = phantom.labels_zyx
    release = threading.Event()
    engine = FakeEngine(truth_zyx=truth)
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    _segment_liver(qtbot, viewer, widget, image, truth)
    engine.block_first, engine._n_predict = release, 0  # the next predict blocks
    try:
        widget.session3d.propagate(start_z=SEED_Z)
        assert not widget.session3d.controls.cancel_button.isHidden()
        assert engine.predict_started.wait(10)
        widget.session3d.controls.cancel_button.click()
    finally:
        release.set()
    assert widget.session3d.propagation_job is None and not widget.segment_runner.busy
    assert widget.session3d.controls.cancel_button.isHidden()
    qtbot.wait(200)
    assert _painted_zs(widget.labels, LIVER) == {SEED_Z}  # the blocked slice was dropped
    assert widget.session3d.undo_stack.undo_names == [f"segment slice {SEED_Z}"]


def test_correct_then_repropagate_keeps_corrected_slices(make_napari_viewer, qtbot, phantom):
    truth = phantom.labels_zyx
    engine = FakeEngine(truth_zyx=truth)
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    labels, boxes = widget.labels, viewer.layers["boxes"]
    _segment_liver(qtbot, viewer, widget, image, truth)
    widget.session3d.propagate(start_z=SEED_Z)
    _wait_idle(qtbot, widget)
    # correct slice 9 with a box over the left two thirds of the liver only (slice 10,
    # predicted from it, still overlaps it by IoU 0.68 > DEFAULT_STOP_OVERLAP)
    y0, x0, y1, x1 = _bbox(truth[9] == LIVER, margin=0)
    cut = x0 + 2 * (x1 - x0) // 3
    _add_box(boxes, image, 9, y0, x0, y1, cut)
    qtbot.waitUntil(lambda: not (labels.data[9, :, cut + 1 :] == LIVER).any(), timeout=10000)
    _wait_idle(qtbot, widget)
    corrected_9 = labels.data[9].copy()
    # and slice 6 with napari's brush: erase a liver pixel, paint one more
    ys, xs = np.nonzero(labels.data[6] == LIVER)
    labels.paint((6, ys[0], xs[0]), 0, refresh=True)
    labels.paint((6, 40, 5), LIVER, refresh=True)
    corrected_6 = labels.data[6].copy()
    qtbot.waitUntil(lambda: widget.session3d.state.corrected_zs(LIVER) == {SEED_Z, 9, 6})
    # re-propagate from the last correction (slice 6, Shift+P): slices 9 and 8 stay as they are
    before = labels.data.copy()
    _propagate_with_key(qtbot, viewer, widget, image, SEED_Z, key="Shift-P")
    np.testing.assert_array_equal(labels.data[9], corrected_9)
    np.testing.assert_array_equal(labels.data[6], corrected_6)
    np.testing.assert_array_equal(labels.data[SEED_Z], before[SEED_Z])
    # the slice after the corrected 9 follows the correction (cut on the right)
    assert (labels.data[10] == LIVER).any()
    assert (labels.data[10] == LIVER).sum() < (before[10] == LIVER).sum()
    # and the model was never asked for a corrected slice during the re-propagation
    n = len(engine.predict_calls)
    widget.session3d.propagate(start_z=6)
    _wait_idle(qtbot, widget)
    assert not {c.cache_key.z for c in engine.predict_calls[n:]} & {6, 8, 9}


def test_lock_prevents_overwriting(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine()  # answers with the box itself
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    labels, boxes, s3 = widget.labels, viewer.layers["boxes"], widget.session3d
    c = s3.controls
    _add_box(boxes, image, 4, 10, 10, 29, 29)
    qtbot.waitUntil(lambda: (labels.data[4] == 1).sum() == 400, timeout=10000)
    _wait_idle(qtbot, widget)
    c.name_combo.setCurrentText("liver")
    c.name_combo.activated.emit(0)
    assert s3.state.registry.name(1) == "liver"
    c.lock_check.setChecked(True)
    assert s3.state.registry[1].locked
    # a locked object cannot be segmented nor propagated
    n = len(engine.predict_calls)
    _add_box(boxes, image, 5, 10, 10, 29, 29)
    assert s3.propagate(start_z=4) is None
    qtbot.wait(100)
    assert len(engine.predict_calls) == n and not (labels.data[5] == 1).any()
    # object 2 may take unlocked objects' voxels, but never the locked object's
    widget.commit_object()
    assert widget.controls.label_spin.value() == 2 and not c.lock_check.isChecked()
    c.overwrite_check.setChecked(True)
    _add_box(boxes, image, 4, 20, 20, 39, 39)
    qtbot.waitUntil(lambda: (labels.data[4] == 2).any(), timeout=10000)
    _wait_idle(qtbot, widget)
    assert (labels.data[4] == 1).sum() == 400 and (labels.data[4] == 2).sum() == 300
    # the brush cannot erase it either
    labels.paint((4, 15, 15), 0, refresh=True)
    qtbot.waitUntil(lambda: (labels.data[4] == 1).sum() == 400)
    # unlocked, the next mask of object 2 takes the overlap
    widget.controls.label_spin.setValue(1)
    assert c.lock_check.isChecked() and c.name_combo.currentText() == "liver"
    c.lock_check.setChecked(False)
    widget.controls.label_spin.setValue(2)
    _add_box(boxes, image, 4, 20, 20, 38, 38)
    qtbot.waitUntil(lambda: (labels.data[4] == 2).sum() == 19 * 19, timeout=10000)
    assert (labels.data[4] == 1).sum() == 400 - 100
    _wait_idle(qtbot, widget)


def test_undo_redo_many_steps_propagation_is_one(make_napari_viewer, qtbot, phantom):
    truth = phantom.labels_zyx
    engine = FakeEngine(truth_zyx=truth)
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    labels, s3 = widget.labels, widget.session3d
    _segment_liver(qtbot, viewer, widget, image, truth)
    after_seed = labels.data.copy()
    s3.propagate(start_z=SEED_Z)
    _wait_idle(qtbot, widget)
    after_propagation = labels.data.copy()
    labels.paint((2, 5, 5), LIVER, refresh=True)  # brush: a third step
    after_brush = labels.data.copy()
    qtbot.waitUntil(lambda: len(s3.undo_stack.undo_names) == 3)
    assert s3.undo_stack.undo_names == [f"segment slice {SEED_Z}", "propagate label 1", "brush"]
    # Ctrl+Z on the labels layer drives the session's stack, not napari's
    _key(labels, "Ctrl+Z")
    np.testing.assert_array_equal(labels.data, after_propagation)
    _key(viewer.layers["clicks"], "Ctrl+Z")  # the whole propagation at once
    np.testing.assert_array_equal(labels.data, after_seed)
    assert s3.state.corrected_zs(LIVER) == {SEED_Z}  # the brush's correction went too
    s3.controls.undo_button.click()
    assert not labels.data.any() and not s3.controls.undo_button.isEnabled()
    _key(labels, "Ctrl+Shift+Z")
    _key(labels, "Ctrl+Shift+Z")
    np.testing.assert_array_equal(labels.data, after_propagation)
    s3.controls.redo_button.click()
    np.testing.assert_array_equal(labels.data, after_brush)
    assert s3.state.corrected_zs(LIVER) == {SEED_Z, 2}
    # napari's own history logged the undos as changes: its undo reverts the last one
    labels.undo()
    np.testing.assert_array_equal(labels.data, after_propagation)


def test_session_is_restored_after_a_crash(make_napari_viewer, qtbot, phantom, tmp_path, never_ask):
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image_zyx.T.copy(), np.diag([1.0, 1.0, 4.0, 1.0])), path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-medsam")
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.engine = FakeEngine()
    assert not never_ask  # nothing saved yet: no question
    s3 = widget.session3d
    _add_box(viewer.layers["boxes"], widget.image, 3, 10, 10, 29, 29)
    qtbot.waitUntil(lambda: (widget.labels.data[3] == 1).any(), timeout=10000)
    _wait_idle(qtbot, widget)
    s3.controls.name_combo.setCurrentText("my tumour")
    s3.controls.name_combo.activated.emit(0)
    s3.controls.lock_check.setChecked(True)
    assert s3.saver is not None and s3.saver.flush(10)
    assert s3.saver.session_dir == tmp_path / "scan.medsam-session"
    saved = widget.labels.data.copy()
    # save with names next to the NIfTI, for Slicer / ITK-SNAP
    written = s3.save_labels(tmp_path / "seg")
    assert written.name == "seg.nii.gz" and written.is_file()
    sidecar = LabelRegistry.load_sidecar(written)
    assert sidecar.name(1) == "my tumour" and sidecar[1].locked
    assert (tmp_path / "seg.label.txt").is_file() and (tmp_path / "seg.ctbl").is_file()
    # "crash": the first app is not closed; a new one opens the scan and restores
    viewer2 = make_napari_viewer()
    viewer2.open(str(path), plugin="napari-medsam")
    _, widget2 = viewer2.window.add_plugin_dock_widget(*WIDGET)
    assert len(never_ask) == 1 and never_ask[0].label_names == {1: "my tumour"}
    np.testing.assert_array_equal(widget2.labels.data, saved)
    restored = widget2.session3d
    assert restored.state.registry[1].locked and restored.state.corrected_zs(1) == {3}
    assert restored.state.get_prompt(1, 3).box_yxyx is not None
    assert restored.controls.name_combo.currentText() == "my tumour"
    assert restored.controls.lock_check.isChecked()


def test_declined_restore_starts_empty(make_napari_viewer, qtbot, phantom, tmp_path, monkeypatch):
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image_zyx.T.copy(), np.eye(4)), path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-medsam")
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.engine = FakeEngine()
    _add_box(viewer.layers["boxes"], widget.image, 3, 10, 10, 29, 29)
    qtbot.waitUntil(lambda: (widget.labels.data[3] == 1).any(), timeout=10000)
    _wait_idle(qtbot, widget)
    assert widget.session3d.saver.flush(10)
    widget.close()  # a clean exit saves too; the session stays for next time
    asked = []
    monkeypatch.setattr(
        dialogs, "ask_restore", lambda parent, info: asked.append(info) and False
    )
    viewer2 = make_napari_viewer()
    viewer2.open(str(path), plugin="napari-medsam")
    _, widget2 = viewer2.window.add_plugin_dock_widget(*WIDGET)
    assert len(asked) == 1 and not widget2.labels.data.any()
    assert widget2.session3d.state.corrected == {}


def test_undo_is_per_object(make_napari_viewer, qtbot, phantom):
    """Ctrl+Z undoes the current object's last step, even when another object changed later."""
    engine = FakeEngine()  # answers with the box itself
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    labels, boxes, s3 = widget.labels, viewer.layers["boxes"], widget.session3d
    _add_box(boxes, image, 4, 10, 10, 19, 19)  # object 1, slice 4
    qtbot.waitUntil(lambda: (labels.data[4] == 1).sum() == 100, timeout=10000)
    _wait_idle(qtbot, widget)
    _add_box(boxes, image, 6, 10, 10, 19, 19)  # object 1, slice 6
    qtbot.waitUntil(lambda: (labels.data[6] == 1).sum() == 100, timeout=10000)
    _wait_idle(qtbot, widget)
    widget.commit_object()
    assert widget.controls.label_spin.value() == 2
    assert not s3.controls.undo_button.isEnabled()  # object 2 has no step yet
    _add_box(boxes, image, 4, 40, 40, 49, 49)  # object 2, slice 4: the latest step overall
    qtbot.waitUntil(lambda: (labels.data[4] == 2).sum() == 100, timeout=10000)
    _wait_idle(qtbot, widget)
    object2 = labels.data == 2
    widget.controls.label_spin.setValue(1)
    assert s3.controls.undo_button.isEnabled()
    assert "segment slice 6" in s3.controls.undo_button.toolTip()
    _key(labels, "Ctrl+Z")  # object 1's slice 6 goes; object 2 stays
    assert not (labels.data[6] == 1).any() and (labels.data[4] == 1).sum() == 100
    np.testing.assert_array_equal(labels.data == 2, object2)
    _key(labels, "Ctrl+Z")
    assert not (labels.data == 1).any() and not s3.controls.undo_button.isEnabled()
    np.testing.assert_array_equal(labels.data == 2, object2)
    _key(labels, "Ctrl+Shift+Z")
    assert (labels.data[4] == 1).sum() == 100 and not (labels.data[6] == 1).any()
    widget.controls.label_spin.setValue(2)
    _key(labels, "Ctrl+Z")  # now object 2's own step
    assert not (labels.data == 2).any() and (labels.data[4] == 1).sum() == 100


def test_unreadable_session_is_set_aside_not_lost(
    make_napari_viewer, qtbot, phantom, tmp_path, never_ask, monkeypatch
):
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image_zyx.T.copy(), np.eye(4)), path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-medsam")
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.engine = FakeEngine()
    _add_box(viewer.layers["boxes"], widget.image, 3, 10, 10, 29, 29)
    qtbot.waitUntil(lambda: (widget.labels.data[3] == 1).any(), timeout=10000)
    _wait_idle(qtbot, widget)
    session_dir = widget.session3d.saver.session_dir
    widget.close()  # a clean exit writes a snapshot
    snapshots = sorted(session_dir.glob("labels-*.npz"))
    assert snapshots
    for snapshot in snapshots:
        snapshot.write_bytes(b"not an npz")
    for journal in session_dir.glob("journal-*.bin"):
        journal.unlink()  # nothing to replay from: the snapshot is needed
    shown = []
    monkeypatch.setattr(files, "show_warning", lambda text: shown.append(("warning", text)))
    monkeypatch.setattr(files, "show_info", lambda text: shown.append(("info", text)))
    viewer2 = make_napari_viewer()
    viewer2.open(str(path), plugin="napari-medsam")
    _, widget2 = viewer2.window.add_plugin_dock_widget(*WIDGET)
    # every snapshot is checked before asking: nothing readable is not offered, only set aside
    assert never_ask == []
    assert not widget2.labels.data.any()
    kept = list(tmp_path.glob("scan.medsam-session.unreadable-*"))
    assert len(kept) == 1 and (kept[0] / snapshots[0].name).read_bytes() == b"not an npz"
    # the user is told, once, that the session could not be read and where its files are
    assert [kind for kind, _ in shown] == ["warning"], shown
    text = shown[0][1]
    assert "cannot be read" in text and str(kept[0]) in text and "new session" in text, text
    # the new session starts cleanly beside it
    widget2.engine = FakeEngine()
    _add_box(viewer2.layers["boxes"], widget2.image, 4, 10, 10, 29, 29)
    qtbot.waitUntil(lambda: (widget2.labels.data[4] == 1).any(), timeout=10000)
    _wait_idle(qtbot, widget2)
    assert widget2.session3d.saver.flush(10)
    assert widget2.session3d.saver.session_dir == session_dir
