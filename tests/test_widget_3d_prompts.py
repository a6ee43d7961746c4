"""Prompts and labels in the 3D session: undo/redo of prompts, restored prompts, colours, saving.

Through the manifest, with the fake engine on real worker threads.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from fakes import FakeEngine
from napari.utils.colormaps import DirectLabelColormap, label_colormap
from napari.utils.key_bindings import KeyBinding

from napari_medsam._qt import dialogs
from napari_medsam._qt import prompt_layers as wl
from napari_medsam.io.phantom import make_phantom
from napari_medsam.session import LabelRegistry
from napari_medsam.session.labels import LAYER_METADATA_KEY, sidecar_paths
from napari_medsam.session.presets import default_color

WIDGET = ("napari-medsam", "MedSAM segmentation")
GRID = {"scale": (4.0, 0.5, 0.5), "translate": (10.0, -3.0, 7.0)}  # prompts go through world


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape_zyx=(12, 64, 64), spacing_zyx_mm=(4.0, 1.0, 1.0))


@pytest.fixture(autouse=True)
def never_ask(monkeypatch):
    """No modal dialog in tests: restore whenever asked."""
    monkeypatch.setattr(dialogs, "ask_restore", lambda parent, info: True)


def _open(make_napari_viewer, image_zyx, engine=None, **image_kwargs):
    viewer = make_napari_viewer()
    image = viewer.add_image(image_zyx, name="CT", **image_kwargs)
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.engine = engine or FakeEngine()
    return viewer, widget, image


def _open_file(make_napari_viewer, path):
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-medsam")
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    return viewer, widget


def _click(viewer, image, zyx, negative=False):
    viewer.layers["clicks"].feature_defaults["positive"] = not negative
    clicks = viewer.layers["clicks"]
    clicks.add(clicks.world_to_data(image.data_to_world(zyx)))


def _add_box(viewer, image, z, y0, x0, y1, x1):
    boxes = viewer.layers["boxes"]
    corners = [(z, y0, x0), (z, y0, x1), (z, y1, x1), (z, y1, x0)]
    boxes.add_rectangles(np.array([boxes.world_to_data(image.data_to_world(c)) for c in corners]))


def _key(layer, key):
    layer.keymap[KeyBinding.from_str(key)](layer)


def _settle(qtbot, widget, n_steps):
    """Wait until the session holds ``n_steps`` undo steps and no job runs."""
    s3 = widget.session3d
    qtbot.waitUntil(lambda: len(s3.undo_stack.undo_names) == n_steps, timeout=10000)
    qtbot.waitUntil(lambda: not widget.segment_runner.busy, timeout=10000)


def _clicks_zyx(viewer, image):
    clicks = viewer.layers["clicks"]
    zyx = wl.to_image_zyx(clicks, clicks.data, image) if len(clicks.data) else np.zeros((0, 3))
    return np.round(zyx).astype(int).tolist(), list(clicks.features["positive"])


def _disk(shape_yx, y, x):
    yy, xx = np.mgrid[: shape_yx[0], : shape_yx[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= 9


def test_undo_and_redo_take_clicks_off_and_put_them_back(make_napari_viewer, qtbot, phantom):
    engine = FakeEngine()  # disks around the positive clicks
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine, **GRID)
    labels, s3 = widget.labels, widget.session3d
    _click(viewer, image, (4, 20, 20))
    _settle(qtbot, widget, 1)
    after_one = labels.data.copy()
    _click(viewer, image, (4, 40, 44))
    _settle(qtbot, widget, 2)
    after_two = labels.data.copy()
    np.testing.assert_array_equal(
        after_two[4] == 1, _disk((64, 64), 20, 20) | _disk((64, 64), 40, 44)
    )
    _click(viewer, image, (4, 30, 30), negative=True)  # same mask: still a step of its own
    _settle(qtbot, widget, 3)
    assert s3.undo_stack.undo_names == ["segment slice 4"] * 3
    assert (1, 4) in widget._logits
    n_calls = len(engine.predict_calls)

    _key(labels, "Ctrl+Z")
    assert _clicks_zyx(viewer, image) == ([[4, 20, 20], [4, 40, 44]], [True, True])
    np.testing.assert_array_equal(labels.data, after_two)
    _key(viewer.layers["clicks"], "Ctrl+Z")
    assert _clicks_zyx(viewer, image) == ([[4, 20, 20]], [True])
    np.testing.assert_array_equal(labels.data, after_one)
    np.testing.assert_allclose(s3.state.get_prompt(1, 4).points_yx, [[20, 20]])
    assert (1, 4) not in widget._logits  # the next click must not feed back the undone mask
    s3.controls.undo_button.click()
    assert _clicks_zyx(viewer, image) == ([], [])
    assert not labels.data.any() and s3.state.get_prompt(1, 4) is None

    for _ in range(3):
        _key(labels, "Ctrl+Shift+Z")
    assert _clicks_zyx(viewer, image) == (
        [[4, 20, 20], [4, 40, 44], [4, 30, 30]],
        [True, True, False],
    )
    np.testing.assert_array_equal(labels.data, after_two)
    np.testing.assert_array_equal(s3.state.get_prompt(1, 4).point_labels, [1, 1, 0])
    qtbot.wait(100)
    assert len(engine.predict_calls) == n_calls and not widget.segment_runner.busy  # no job ran

    # the next click segments from every click shown, without the logits of before the undo
    _click(viewer, image, (4, 10, 50))
    _settle(qtbot, widget, 4)
    prompt = engine.prompts[-1]
    np.testing.assert_allclose(prompt.points_yx, [[20, 20], [40, 44], [30, 30], [10, 50]])
    assert prompt.prev_logits_lowres is None
    assert not s3.undo_stack.can_redo()


def test_undo_of_a_deleted_prompt_puts_it_back(make_napari_viewer, qtbot, phantom):
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, **GRID)
    labels, s3, clicks = widget.labels, widget.session3d, viewer.layers["clicks"]
    _click(viewer, image, (6, 20, 20))
    _settle(qtbot, widget, 1)
    _add_box(viewer, image, 6, 30, 30, 39, 49)
    _settle(qtbot, widget, 2)
    with_box = labels.data.copy()
    assert (with_box[6] == 1).sum() == 10 * 20  # the fake engine answers with the box
    boxes = viewer.layers["boxes"]
    boxes.selected_data = {0}
    boxes.remove_selected()  # re-segments from the click left
    _settle(qtbot, widget, 3)
    np.testing.assert_array_equal(labels.data[6] == 1, _disk((64, 64), 20, 20))
    clicks.selected_data = {0}
    clicks.remove_selected()  # no prompt left: the object leaves the slice
    _settle(qtbot, widget, 4)
    assert s3.undo_stack.undo_names[-2:] == ["segment slice 6", "clear slice 6"]
    assert not labels.data.any() and 6 not in s3.state.corrected_zs(1)
    assert s3.state.get_prompt(1, 6) is None

    s3.undo()  # the click is back, with its mask and its mark as a corrected slice
    assert _clicks_zyx(viewer, image) == ([[6, 20, 20]], [True])
    np.testing.assert_array_equal(labels.data[6] == 1, _disk((64, 64), 20, 20))
    assert 6 in s3.state.corrected_zs(1) and s3.state.get_prompt(1, 6) is not None
    s3.undo()  # and the box
    assert len(boxes.data) == 1
    assert wl.box_zyx(boxes, 0, image)[0] == 6
    np.testing.assert_allclose(wl.box_zyx(boxes, 0, image)[1], [30, 30, 39, 49], atol=1e-6)
    np.testing.assert_array_equal(labels.data, with_box)
    np.testing.assert_allclose(s3.state.get_prompt(1, 6).box_yxyx, [30, 30, 39, 49])
    s3.redo()
    s3.redo()
    assert len(boxes.data) == 0 and len(clicks.data) == 0 and not labels.data.any()
    assert s3.state.get_prompt(1, 6) is None and 6 not in s3.state.corrected_zs(1)


def test_undo_is_per_object_and_the_layers_show_the_current_objects_prompts(
    make_napari_viewer, qtbot, phantom
):
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx)
    labels, s3, clicks = widget.labels, widget.session3d, viewer.layers["clicks"]
    _click(viewer, image, (3, 20, 20))
    _settle(qtbot, widget, 1)
    widget.commit_object()  # Enter: prompts cleared, object 2 next
    assert widget.controls.label_spin.value() == 2 and len(clicks.data) == 0
    _click(viewer, image, (5, 40, 40))
    _settle(qtbot, widget, 2)
    s3.undo()  # object 2's step only: undo is per object
    assert len(clicks.data) == 0 and s3.state.get_prompt(2, 5) is None
    assert (labels.data[3] == 1).any() and not (labels.data == 2).any()
    s3.undo()  # nothing left for object 2: object 1 is untouched
    assert (labels.data[3] == 1).any() and s3.state.get_prompt(1, 3) is not None
    widget.controls.label_spin.setValue(1)  # the layers show object 1's saved click
    assert _clicks_zyx(viewer, image) == ([[3, 20, 20]], [True])
    s3.undo()  # object 1's step: its click goes with its mask
    assert not labels.data.any() and len(clicks.data) == 0
    assert s3.state.get_prompt(1, 3) is None
    widget.controls.label_spin.setValue(2)
    s3.redo()  # object 2's own step: its click comes back, object 1 stays undone
    assert _clicks_zyx(viewer, image) == ([[5, 40, 40]], [True])
    assert (labels.data[5] == 2).any() and not (labels.data == 1).any()


def _scan(tmp_path, phantom):
    path = tmp_path / "scan.nii.gz"
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    nib.save(nib.Nifti1Image(phantom.image_zyx.T.copy(), affine), path)
    return path


def test_a_restored_session_redraws_its_prompts(make_napari_viewer, qtbot, phantom, tmp_path):
    path = _scan(tmp_path, phantom)
    viewer, widget = _open_file(make_napari_viewer, path)
    widget.engine = FakeEngine()
    image = widget.image
    _add_box(viewer, image, 3, 10, 12, 29, 33)
    _settle(qtbot, widget, 1)
    _click(viewer, image, (3, 20, 20), negative=True)
    _settle(qtbot, widget, 2)
    _click(viewer, image, (7, 40, 41))
    _settle(qtbot, widget, 3)
    widget.commit_object()
    widget.controls.label_spin.setValue(1)  # object 1 is the active one when saved
    saved = widget.session3d.state.prompts[1]
    widget.session3d._changed()
    assert widget.session3d.saver.flush(10)

    viewer2, widget2 = _open_file(make_napari_viewer, path)
    image2, s3 = widget2.image, widget2.session3d
    assert s3.state.prompts[1].keys() == {3, 7}
    assert _clicks_zyx(viewer2, image2) == ([[3, 20, 20], [7, 40, 41]], [False, True])
    boxes = viewer2.layers["boxes"]
    assert len(boxes.data) == 1
    z, box = wl.box_zyx(boxes, 0, image2)
    assert z == 3
    np.testing.assert_allclose(box, [10, 12, 29, 33], atol=1e-5)
    # what the layers would send now is what was saved
    for z in (3, 7):
        prompt = wl.build_slice_prompt(viewer2.layers["clicks"], boxes, image2, z)
        np.testing.assert_allclose(prompt.points_yx, saved[z].points_yx, atol=1e-5)
        np.testing.assert_array_equal(prompt.point_labels, saved[z].point_labels)
    qtbot.wait(100)
    assert not widget2.segment_runner.busy and not widget2.latency.pending  # nothing segmented
    assert s3.undo_stack.undo_names == []


def test_registry_colours_the_labels_layer(make_napari_viewer, qtbot, phantom, tmp_path):
    path = _scan(tmp_path, phantom)
    custom = LabelRegistry()
    custom.add("tumour", 2, color=(10, 20, 250))
    custom.save_sidecars(tmp_path / "scan.nii.gz")  # names next to the scan: loaded on open
    viewer, widget = _open_file(make_napari_viewer, path)
    widget.engine = FakeEngine()
    labels, s3 = widget.labels, widget.session3d
    cmap = labels.colormap
    assert isinstance(cmap, DirectLabelColormap)
    np.testing.assert_allclose(cmap.map(2), (10 / 255, 20 / 255, 250 / 255, 1.0))
    napari_default = label_colormap(49, 0.5, background_value=0)
    np.testing.assert_allclose(cmap.map(7), napari_default.map(7))  # unregistered: as before
    np.testing.assert_allclose(cmap.map(0), (0, 0, 0, 0))
    # a new object is registered with its id's preset colour, and shows in it
    _add_box(viewer, widget.image, 3, 10, 10, 29, 29)
    _settle(qtbot, widget, 1)
    spleen = (*(c / 255 for c in default_color(1)), 1.0)  # TotalSegmentator's id 1
    np.testing.assert_allclose(labels.colormap.map(1), spleen)
    assert not np.allclose(spleen, napari_default.map(1))
    rgba = labels.colormap.map(np.asarray(labels.data[3]))
    np.testing.assert_allclose(rgba[15, 15], spleen)
    np.testing.assert_allclose(rgba[0, 0], (0, 0, 0, 0))
    # later registry edits (here a colour) reach the layer on the next change
    s3.state.registry.set_color(1, (255, 0, 0))
    s3.state.registry.set_visible(2, False)
    s3._changed()
    np.testing.assert_allclose(labels.colormap.map(1), (1, 0, 0, 1))
    assert labels.colormap.map(2)[3] == 0  # hidden
    np.testing.assert_allclose(labels.colormap.map(7), napari_default.map(7))


def test_napari_save_writes_the_label_names(make_napari_viewer, qtbot, phantom, tmp_path):
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx)
    labels, s3 = widget.labels, widget.session3d
    _add_box(viewer, image, 4, 10, 10, 29, 29)
    _settle(qtbot, widget, 1)
    s3.controls.name_combo.setCurrentText("my tumour")
    s3.controls.name_combo.activated.emit(0)
    assert labels.metadata[LAYER_METADATA_KEY] == s3.state.registry.to_dict()
    assert labels.metadata[LAYER_METADATA_KEY]["labels"][0]["name"] == "my tumour"
    at_zyx = tuple(np.array([v]) for v in (5, 50, 50))
    labels.data_setitem(at_zyx, np.array([3]))  # an unnamed id, painted as the brush would
    viewer.layers.selection.clear()
    viewer.layers.selection.add(labels)
    out = tmp_path / "seg.nii.gz"
    written = viewer.layers.save(str(out), selected=True, plugin="napari-medsam")
    assert [str(p) for p in written] == [str(out)]
    paths = sidecar_paths(out)
    assert all(p.is_file() for p in paths.values())
    names = {d["id"]: d["name"] for d in json.loads(paths["json"].read_text())["labels"]}
    assert names == {1: "my tumour", 3: "kidney_left"}  # id 3 by its preset name
    assert '"my tumour"' in paths["itksnap"].read_text()
    # the layer's own save goes through the same writer
    out2 = tmp_path / "again.nii"
    labels.save(str(out2), plugin="napari-medsam")
    assert LabelRegistry.load_sidecar(out2).name(1) == "my tumour"


def test_state_replays_the_corrected_marks_of_a_step():
    from napari_medsam.session import SessionState

    state = SessionState()
    state.mark_corrected(2, 9)
    extra = {"corrected": [(1, 3)], "uncorrected": [(2, 9)]}
    state.mark_corrected(1, 3)
    state.unmark_corrected(2, 9)
    state.replay_corrections(extra, undo=True)
    assert state.corrected_zs(1) == set() and state.corrected_zs(2) == {9}
    state.replay_corrections(extra, undo=False)
    assert state.corrected_zs(1) == {3} and state.corrected_zs(2) == set()
