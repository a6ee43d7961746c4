"""The first five minutes in the dock (issue 14): preload and ready status, box-first
models, folds, the window size, both voxel frames in the status bar."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fakes import FakeEngine

from napari_medsam._qt import first_use as wf
from napari_medsam._cli.app import build_viewer
from napari_medsam._qt.cursor import voxel_text
from napari_medsam._qt.controls import Fold
from napari_medsam.io.phantom import make_phantom
from napari_medsam.model.protocol import needs_box
from napari_medsam.model.registry import LITEMEDSAM, SAM_VIT_B
from napari_medsam.tasks.engine_holder import PRELOAD_ENV

WIDGET = ("napari-medsam", "MedSAM segmentation")


class BoxOnlyEngine(FakeEngine):
    needs_box = True


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape_zyx=(12, 64, 64), spacing_zyx_mm=(4.0, 1.0, 1.0))


def _open(make_napari_viewer, phantom, engine=None):
    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.image_zyx, name="CT", scale=phantom.spacing_zyx_mm)
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    if engine is not None:
        widget.engine = engine
        wf.select_first_prompt_layer(widget)
    return viewer, widget, image


def test_capability_flag_not_the_name():
    assert LITEMEDSAM.input_spec.needs_box and not SAM_VIT_B.input_spec.needs_box
    assert needs_box(BoxOnlyEngine()) and not needs_box(FakeEngine())

    class SpecOnly:  # an engine that keeps only its InputSpec (e.g. another backend)
        spec = LITEMEDSAM.input_spec

    assert needs_box(SpecOnly())


def test_dock_preloads_and_says_ready(make_napari_viewer, phantom, qtbot, monkeypatch):
    monkeypatch.setenv(PRELOAD_ENV, "1")
    release = threading.Event()
    loads = []

    def slow_loader(checkpoint, device, backend="auto"):
        loads.append((checkpoint, device))
        release.wait(10)
        engine = FakeEngine(truth_zyx=phantom.labels_zyx)
        engine.device = "cpu"
        return engine

    monkeypatch.setattr("napari_medsam.tasks.engine_holder._load_engine", slow_loader)
    viewer, widget, _ = _open(make_napari_viewer, phantom)
    qtbot.waitUntil(lambda: widget.model_runner.busy, timeout=5000)  # started by itself
    assert widget.controls.status_label.text() == "loading LiteMedSAM + clicks…"
    release.set()
    qtbot.waitUntil(lambda: widget.engine is not None and not widget.model_runner.busy, timeout=10000)
    import torch

    n = torch.get_num_threads()
    expected = f"FakeEngine ready (cpu, {n} thread{'' if n == 1 else 's'})"
    qtbot.waitUntil(lambda: widget.controls.status_label.text() == expected, timeout=5000)
    assert loads == [(None, "auto")]  # once, the bundled model


def test_no_preload_when_an_engine_is_given(make_napari_viewer, phantom, qtbot, monkeypatch):
    monkeypatch.setenv(PRELOAD_ENV, "1")
    monkeypatch.setattr(
        "napari_medsam.tasks.engine_holder._load_engine",
        lambda *a: pytest.fail("the bundled model must not load"),
    )
    viewer, widget, _ = _open(make_napari_viewer, phantom, engine=FakeEngine())
    qtbot.wait(200)
    assert not widget.model_runner.busy and widget.engine.name == "FakeEngine"


def _click(clicks, image, zyx):
    clicks.add(clicks.world_to_data(image.data_to_world(zyx)))


def _box(boxes, image, z, y0, x0, y1, x1):
    corners = [(z, y0, x0), (z, y0, x1), (z, y1, x1), (z, y1, x0)]
    boxes.add_rectangles(np.array([boxes.world_to_data(image.data_to_world(c)) for c in corners]))


def test_box_only_model_asks_for_a_box_where_the_click_was(make_napari_viewer, phantom, qtbot):
    engine = BoxOnlyEngine(truth_zyx=phantom.labels_zyx)
    viewer, widget, image = _open(make_napari_viewer, phantom, engine)
    clicks, boxes = viewer.layers["clicks"], viewer.layers["boxes"]
    assert viewer.layers.selection.active is boxes  # the first prompt it can use
    assert widget.controls.help_label.text().startswith("<b>This model needs a box first.")
    z = 6
    ys, xs = np.nonzero(phantom.labels_zyx[z] == 1)
    viewer.layers.selection.active = clicks
    _click(clicks, image, (z, int(np.median(ys)), int(np.median(xs))))
    qtbot.wait(100)
    assert len(clicks.data) == 0  # the useless click is taken off
    assert wf.NEEDS_BOX in widget.controls.message_label.text()
    assert wf.NEEDS_BOX in widget.controls.status_label.text()
    assert viewer.layers.selection.active is boxes and boxes.mode == "add_rectangle"
    assert not engine.calls and not widget.segment_runner.busy  # no job for nothing

    _box(boxes, image, z, ys.min() - 2, xs.min() - 2, ys.max() + 2, xs.max() + 2)
    qtbot.waitUntil(lambda: (widget.labels.data[z] == 1).any(), timeout=10000)
    assert widget.controls.message_label.text() == ""  # the hint goes once a box is there
    qtbot.waitUntil(lambda: not widget.segment_runner.busy, timeout=10000)
    _click(clicks, image, (z, int(np.median(ys)), int(np.median(xs))))  # now a refinement
    qtbot.waitUntil(lambda: len(engine.calls) >= 2 and not widget.segment_runner.busy, timeout=10000)
    assert len(clicks.data) == 1
    assert len(engine.calls[-1].prompt.points_yx) == 1 and engine.calls[-1].prompt.box_yxyx is not None


def test_click_capable_model_starts_with_clicks(make_napari_viewer, phantom, qtbot):
    engine = FakeEngine(truth_zyx=phantom.labels_zyx)
    viewer, widget, image = _open(make_napari_viewer, phantom, engine)
    clicks = viewer.layers["clicks"]
    assert viewer.layers.selection.active is clicks
    assert widget.controls.help_label.text().startswith("<b>Click</b>")
    z = 6
    ys, xs = np.nonzero(phantom.labels_zyx[z] == 1)
    _click(clicks, image, (z, int(np.median(ys)), int(np.median(xs))))
    qtbot.waitUntil(lambda: (widget.labels.data[z] == 1).any(), timeout=10000)
    assert len(clicks.data) == 1 and widget.controls.message_label.text() == ""


def test_folds_start_closed_and_open(make_napari_viewer, phantom, qtbot):
    viewer, widget, _ = _open(make_napari_viewer, phantom, FakeEngine())
    widget.show()
    for fold in (widget.controls.advanced_fold, widget.fold_3d):
        assert isinstance(fold, Fold) and not fold.expanded and fold.content.isHidden()
        seen = []
        fold.toggled.connect(seen.append)
        fold.button.click()
        assert fold.expanded and not fold.content.isHidden() and seen == [True]
        fold.set_expanded(False)
        assert fold.content.isHidden() and seen == [True, False]
    assert widget.controls.device_combo.parent() is not widget.controls  # inside the fold


def test_app_window_fits_the_screen_and_shows_the_scan(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QApplication

    viewer, widget = build_viewer(None, viewer=make_napari_viewer())
    free = QApplication.primaryScreen().availableGeometry()
    left, top, width, height = viewer.window.geometry()
    assert (width, height) == (free.width(), free.height())
    assert widget.maximumWidth() <= 400


def test_status_bar_gets_both_voxel_frames(make_napari_viewer, phantom, tmp_path):
    import nibabel as nib

    data_xyz = np.random.default_rng(0).integers(-1000, 1000, (20, 24, 6)).astype(np.int16)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data_xyz, np.diag([0.8, 0.8, 3.0, 1.0])), path)  # RAS grid
    viewer, widget = build_viewer(path, viewer=make_napari_viewer())
    image = widget.image
    world = image.data_to_world((2, 3, 4))
    text = voxel_text(image, world)
    # display x runs patient right -> left, the file's i runs left -> right (RAS)
    assert text == "voxel zyx [2 3 4] · file ijk [15 20 2]"
    assert voxel_text(image, image.data_to_world((99, 0, 0))) is None  # outside
    viewer.cursor.position = tuple(world)
    napari_status = {"layer_base": "boxes", "source_type": "", "plugin": ""}  # as napari sets it
    viewer.status = {**napari_status, "coordinates": " [6.0 2.4 3.2]: "}
    widget._cursor._on_cursor_position()  # runs after napari's own handler on cursor moves
    assert viewer.status["coordinates"] == f" [6.0 2.4 3.2]:   ·  {text}"


def test_a_scan_opened_as_labels_is_explained(make_napari_viewer, tmp_path):
    """Issue 12 item 8: the dock says what happened and how to get the image."""
    import nibabel as nib

    mask = np.zeros((16, 16, 8), np.uint8)
    mask[4:10, 4:10, 2:6] = 1
    path = tmp_path / "brain.nii.gz"  # a binary volume: the reader takes it for labels
    nib.save(nib.Nifti1Image(mask, np.eye(4)), path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-medsam")
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    assert widget.image is None
    message = widget.controls.message_label.text()
    assert "'brain' was opened as labels" in message and "Convert to Image" in message
    from napari.layers._layer_actions import _convert_to_image

    viewer.layers.selection.active = viewer.layers["brain"]
    _convert_to_image(viewer.layers)  # what the message tells the user to do
    assert widget.image is not None and widget.image.data.shape == (8, 16, 16)


def test_pyqt5_deprecation_goes_to_the_log_not_over_the_scan(monkeypatch, caplog):
    """napari 0.9 pops its PyQt5 deprecation over the canvas when the window shows: the app
    logs it once instead (a new user can do nothing with it at that moment)."""
    import logging

    from napari._qt import qt_main_window

    from napari_medsam._cli import app

    monkeypatch.setattr(qt_main_window, "SHOW_QT_WARNING", True)
    with caplog.at_level(logging.INFO, logger="napari_medsam._cli.app"):
        app._pyqt5_notice_to_log()
    assert qt_main_window.SHOW_QT_WARNING is False
    assert "PyQt5" in caplog.text and "QT_API=pyqt6" in caplog.text
