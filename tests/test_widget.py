"""The dock widget with a fake engine, on real worker threads, added through the manifest."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fakes import FakeEngine
from napari.utils.events import Event
from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks
from napari.utils.notifications import NotificationSeverity, notification_manager

from napari_medsam.io.phantom import make_phantom

WIDGET = ("napari-medsam", "MedSAM segmentation")
LIVER = 1


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape_zyx=(12, 64, 64), spacing_zyx_mm=(4.0, 1.0, 1.0))


def _open(make_napari_viewer, image_zyx, engine=None, **image_kwargs):
    viewer = make_napari_viewer()
    image = viewer.add_image(image_zyx, name="CT", **image_kwargs)
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    if engine is not None:
        widget.engine = engine
    return viewer, widget, image


def _layers(viewer, widget):
    return viewer.layers["clicks"], viewer.layers["boxes"], widget.labels


def _add_box(boxes, image, z, y0, x0, y1, x1):
    """Draw a rectangle on slice z given in image voxels, through world coordinates."""
    corners = [(z, y0, x0), (z, y0, x1), (z, y1, x1), (z, y1, x0)]
    verts = np.array([boxes.world_to_data(image.data_to_world(c)) for c in corners])
    boxes.add_rectangles(verts)


def _add_click(clicks, image, zyx):
    clicks.add(clicks.world_to_data(image.data_to_world(zyx)))


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.segment_runner.busy, timeout=10000)


def _notifications_since(n0, severity):
    return [r for r in notification_manager.records[n0:] if r.severity == severity]


def _bbox(mask_yx, margin=2):
    ys, xs = np.nonzero(mask_yx)
    return ys.min() - margin, xs.min() - margin, ys.max() + margin, xs.max() + margin


def test_widget_sets_up_layers_on_the_image_grid(make_napari_viewer, phantom):
    viewer, widget, image = _open(
        make_napari_viewer,
        phantom.image_zyx,
        scale=(4.0, 1.0, 1.0),
        translate=(-10.0, 5.0, 0.0),
        metadata={"affine_ras": np.eye(4)},
    )
    clicks, boxes, labels = _layers(viewer, widget)
    assert labels.name == "CT labels" and labels.data.shape == image.data.shape
    for layer in (clicks, boxes, labels):
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
    assert "affine_ras" in labels.metadata
    assert clicks.mode == "add" and boxes.mode == "add_rectangle"
    # soft tissue is the default for CT, and it is what the display shows
    assert widget.controls.window_combo.currentText() == "soft tissue"
    np.testing.assert_allclose(image.contrast_limits, (-160, 240))


def test_box_paints_that_organ_on_that_slice(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine(truth_zyx=phantom.labels_zyx)
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine, scale=(4, 1, 1))
    _, boxes, labels = _layers(viewer, widget)
    z = 8
    truth = phantom.labels_zyx[z] == LIVER
    _add_box(boxes, image, z, *_bbox(truth))
    qtbot.waitUntil(lambda: (labels.data[z] == 1).any(), timeout=10000)
    np.testing.assert_array_equal(labels.data[z] == 1, truth)
    assert labels.data.sum() == truth.sum()  # only that slice
    call = engine.predict_calls[0]
    assert call.thread != threading.main_thread().name  # inference ran on a worker
    assert call.cache_key.z == z and engine.prompts[0].box_yxyx is not None
    # the next interaction on the slice feeds the previous low-res logits back
    _add_click(viewer.layers["clicks"], image, (z, *np.argwhere(truth)[0]))
    qtbot.waitUntil(lambda: len(engine.predict_calls) == 2, timeout=10000)
    assert engine.prompts[1].prev_logits_lowres is not None
    assert engine.prompts[1].box_yxyx is not None and len(engine.prompts[1].points_yx) == 1
    _wait_idle(qtbot, widget)
    # one undo step per paint
    labels.undo()
    labels.undo()
    assert labels.data.sum() == 0


def test_click_reaches_engine_in_slice_pixel_frame(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine()
    scale, translate = (3.0, 0.7, 1.3), (-20.0, 4.0, 11.0)
    viewer, widget, image = _open(
        make_napari_viewer, phantom.image_zyx, engine, scale=scale, translate=translate
    )
    clicks, _, labels = _layers(viewer, widget)
    _add_click(clicks, image, (5, 20, 33))
    qtbot.waitUntil(lambda: len(engine.predict_calls) == 1, timeout=10000)
    prompt = engine.prompts[0]
    np.testing.assert_allclose(prompt.points_yx, [[20, 33]])
    np.testing.assert_array_equal(prompt.point_labels, [1])
    assert prompt.box_yxyx is None and engine.predict_calls[0].cache_key.z == 5
    assert engine.predict_calls[0].image_shape == (64, 64)
    qtbot.waitUntil(lambda: labels.data[5, 20, 33] == 1, timeout=10000)
    # "Negative clicks" on: the next click is negative (red) and both reach the engine
    widget.controls.negative_check.setChecked(True)
    _add_click(clicks, image, (5, 40, 10))
    qtbot.waitUntil(lambda: len(engine.predict_calls) == 2, timeout=10000)
    np.testing.assert_allclose(engine.prompts[1].points_yx, [[20, 33], [40, 10]])
    np.testing.assert_array_equal(engine.prompts[1].point_labels, [1, 0])
    assert list(clicks.features["positive"]) == [True, False]
    np.testing.assert_allclose(clicks.face_color[1], [1, 0, 0, 1])
    # a click on another slice is its own prompt
    widget.controls.negative_check.setChecked(False)
    _add_click(clicks, image, (2, 10, 10))
    qtbot.waitUntil(lambda: len(engine.predict_calls) == 3, timeout=10000)
    np.testing.assert_allclose(engine.prompts[2].points_yx, [[10, 10]])
    assert engine.predict_calls[2].cache_key.z == 2
    _wait_idle(qtbot, widget)


def _mouse(kind, layer, world, modifiers):
    return Event(
        type_name=kind,
        is_dragging=False,
        modifiers=modifiers,
        position=world,
        pos=np.array([0.0, 0.0]),
        view_direction=None,
        up_direction=None,
        dims_displayed=[1, 2],
    )


def test_shift_click_with_the_mouse_is_negative(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine()
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine, scale=(4, 1, 1))
    clicks = viewer.layers["clicks"]
    world = image.data_to_world((6, 30, 30))
    for modifiers in (["Shift"], []):
        mouse_press_callbacks(clicks, _mouse("mouse_press", clicks, world, modifiers))
        mouse_release_callbacks(clicks, _mouse("mouse_release", clicks, world, modifiers))
    qtbot.waitUntil(lambda: len(engine.predict_calls) == 2, timeout=10000)
    assert list(clicks.features["positive"]) == [False, True]
    np.testing.assert_array_equal(engine.prompts[-1].point_labels, [0, 1])
    _wait_idle(qtbot, widget)


def test_click_outside_the_volume_warns_and_is_ignored(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine()
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    clicks = viewer.layers["clicks"]
    n0 = len(notification_manager.records)
    _add_click(clicks, image, (5, 80, 10))
    warnings = _notifications_since(n0, NotificationSeverity.WARNING)
    assert warnings and "outside the volume" in warnings[0].message
    assert len(clicks.data) == 0 and not widget.segment_runner.busy
    qtbot.wait(100)
    assert engine.calls == []


def test_superseded_job_never_paints(make_napari_viewer, qtbot, phantom):
    release = threading.Event()
    engine = FakeEngine(block_first=release)
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    _, boxes, labels = _layers(viewer, widget)
    try:
        _add_box(boxes, image, 3, 10, 10, 20, 20)
        assert engine.predict_started.wait(10)
        _add_box(boxes, image, 7, 30, 30, 40, 40)
        qtbot.waitUntil(lambda: (labels.data[7] == 1).any(), timeout=10000)
    finally:
        release.set()
    # the first job's mask still arrives from its thread, and is dropped
    qtbot.waitUntil(lambda: widget.segment_runner.dropped >= 1, timeout=10000)
    assert not (labels.data[3] != 0).any()
    assert (labels.data[7] == 1).sum() == 11 * 11


def test_painting_one_object_never_erases_another(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine()  # answers with the box itself
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    clicks, boxes, labels = _layers(viewer, widget)
    _add_box(boxes, image, 4, 10, 10, 29, 29)
    qtbot.waitUntil(lambda: (labels.data[4] == 1).sum() == 400, timeout=10000)
    widget.commit_object()
    assert widget.controls.label_spin.value() == 2
    assert len(clicks.data) == 0 and len(boxes.data) == 0
    # object 2 overlaps object 1: it takes only free voxels
    _add_box(boxes, image, 4, 20, 20, 39, 39)
    qtbot.waitUntil(lambda: (labels.data[4] == 2).any(), timeout=10000)
    _wait_idle(qtbot, widget)
    assert (labels.data[4] == 1).sum() == 400
    assert (labels.data[4] == 2).sum() == 400 - 100
    # a smaller box for object 2: its old voxels go, object 1 stays
    _add_box(boxes, image, 4, 30, 30, 39, 39)
    qtbot.waitUntil(lambda: (labels.data[4] == 2).sum() == 100, timeout=10000)
    assert (labels.data[4] == 1).sum() == 400
    labels.undo()
    assert (labels.data[4] == 2).sum() == 300 and (labels.data[4] == 1).sum() == 400


def test_engine_errors_become_notifications(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine(error=RuntimeError("CUDA out of memory (fake)"))
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    _, boxes, labels = _layers(viewer, widget)
    n0 = len(notification_manager.records)
    with qtbot.waitSignal(widget.segment_runner.failed, timeout=10000):
        _add_box(boxes, image, 4, 10, 10, 29, 29)
    errors = _notifications_since(n0, NotificationSeverity.ERROR)
    assert len(errors) == 1 and "CUDA out of memory (fake)" in errors[0].message
    assert labels.data.sum() == 0 and "error" in widget.controls.status_label.text()


def test_model_sees_the_current_contrast_limits(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine()
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    widget.controls.window_combo.setCurrentText("lung")
    np.testing.assert_allclose(image.contrast_limits, (-1350, 150))
    image.contrast_limits = (-50.0, 150.0)  # the user drags the sliders
    assert widget.controls.window_combo.currentText() == "current display"
    _add_click(viewer.layers["clicks"], image, (5, 30, 30))
    qtbot.waitUntil(lambda: len(engine.predict_calls) == 1, timeout=10000)
    key = engine.predict_calls[0].cache_key
    assert (key.lo, key.hi) == (-50.0, 150.0)
    _wait_idle(qtbot, widget)


@pytest.mark.parametrize("shape", [(64, 64), (2, 6, 32, 32)], ids=["2D", "4D"])
def test_non_3d_image_gives_a_clear_message(make_napari_viewer, qtbot, shape):
    engine = FakeEngine()
    viewer, widget, _ = _open(make_napari_viewer, np.zeros(shape, np.int16), engine)
    message = widget.controls.message_label
    assert not message.isHidden()
    assert f"{len(shape)}D" in message.text() and "3D volume" in message.text()
    assert widget.image is None and "clicks" not in viewer.layers
    assert widget.segment(0) is None and engine.calls == []
    # adding a 3D volume makes it usable
    viewer.add_image(np.zeros((4, 16, 16), np.int16), name="vol")
    widget.controls.image_combo.setCurrentText("vol")
    assert widget.image == viewer.layers["vol"]  # napari hands plugins proxies: == not is
    assert message.isHidden(), message.text()


def test_embed_nearby_slices_shows_progress(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine()
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    seen = []
    widget.segment_runner.progress.connect(
        lambda p: seen.append((p.done, p.total, not widget.controls.progress_bar.isHidden()))
    )
    with qtbot.waitSignal(widget.segment_runner.finished, timeout=10000):
        widget.embed_nearby()
    assert seen[-1][:2] == (12, 12) and seen[0][1] == 12  # 12-slice phantom: all of it
    assert sorted(c.cache_key.z for c in engine.calls) == list(range(12))
    assert "embedding 12/12" in widget.controls.status_label.text()
    assert widget.controls.progress_bar.isHidden()


def test_ground_truth_called_image_labels_is_never_painted(make_napari_viewer, qtbot, phantom):
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image_zyx, name="CT")
    truth = viewer.add_labels(phantom.labels_zyx.copy(), name="CT labels")
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.engine = FakeEngine()
    assert widget.labels != truth and widget.labels.data.sum() == 0
    _add_box(viewer.layers["boxes"], widget.image, 8, 0, 0, 63, 63)
    qtbot.waitUntil(lambda: (widget.labels.data[8] == 1).all(), timeout=10000)
    np.testing.assert_array_equal(truth.data, phantom.labels_zyx)


def test_keys_toggle_negative_and_commit(make_napari_viewer, qtbot, phantom):
    from napari.utils.key_bindings import KeyBinding

    engine = FakeEngine()
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    clicks, boxes, labels = _layers(viewer, widget)
    for layer in (clicks, boxes):
        layer.keymap[KeyBinding.from_str("n")](layer)
        assert widget.controls.negative_check.isChecked()
        layer.keymap[KeyBinding.from_str("n")](layer)
        assert not widget.controls.negative_check.isChecked()
    _add_click(clicks, image, (3, 30, 30))
    qtbot.waitUntil(lambda: labels.data[3, 30, 30] == 1, timeout=10000)
    _wait_idle(qtbot, widget)
    clicks.keymap[KeyBinding.from_str("Enter")](clicks)
    assert widget.controls.label_spin.value() == 2 and len(clicks.data) == 0


def test_deleting_a_click_segments_again_from_the_rest(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine()  # disks of radius 3 around positive clicks
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    clicks, _, labels = _layers(viewer, widget)
    _add_click(clicks, image, (5, 20, 20))
    qtbot.waitUntil(lambda: labels.data[5, 20, 20] == 1, timeout=10000)
    _wait_idle(qtbot, widget)
    _add_click(clicks, image, (5, 40, 40))
    qtbot.waitUntil(lambda: labels.data[5, 40, 40] == 1, timeout=10000)
    _wait_idle(qtbot, widget)
    clicks.selected_data = {0}
    clicks.remove_selected()
    qtbot.waitUntil(lambda: labels.data[5, 20, 20] == 0, timeout=10000)
    assert labels.data[5, 40, 40] == 1
    last = engine.prompts[-1]
    np.testing.assert_allclose(last.points_yx, [[40, 40]])
    assert last.prev_logits_lowres is None  # they remembered the deleted click
    _wait_idle(qtbot, widget)
    clicks.selected_data = {0}
    clicks.remove_selected()  # no prompt left on the slice: the object leaves it
    assert not (labels.data[5] == 1).any()
