"""The "Other objects are negative" option in the dock widget: what reaches the engine.

Through the manifest, with the fake engine on real worker threads.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fakes import FakeEngine

from napari_medsam._qt import dialogs
from napari_medsam.io.phantom import make_phantom

WIDGET = ("napari-medsam", "MedSAM segmentation")
LIVER = 1
VERTEBRA = 6  # reaches into the liver's box on slices 7..9
SEED_Z = 8


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape_zyx=(12, 64, 64), spacing_zyx_mm=(4.0, 1.0, 1.0))


@pytest.fixture(autouse=True)
def never_ask(monkeypatch):
    monkeypatch.setattr(dialogs, "ask_restore", lambda parent, info: True)


class EmbedGate(FakeEngine):
    """A fake engine whose embeddings wait until the test opens the gate."""

    def __init__(self, truth_zyx):
        super().__init__(truth_zyx=truth_zyx)
        self.embedding = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def embed(self, image_yx, cache_key=None):
        self.embedding.set()
        self.gate.wait(20.0)
        super().embed(image_yx, cache_key)


def _open(make_napari_viewer, phantom, others_negative):
    """Viewer with the phantom, every organ but the liver already labelled; label 1 current."""
    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.image_zyx, name="CT", scale=(4, 1, 1))
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    truth = phantom.labels_zyx
    engine = EmbedGate(truth)
    widget.engine = engine
    others = np.where(truth == LIVER, 0, truth)
    widget.labels.data[...] = others
    widget.controls.label_spin.setValue(LIVER)
    assert not widget.controls.others_negative_check.isChecked()  # off by default
    widget.controls.others_negative_check.setChecked(others_negative)
    return viewer, widget, image, engine, others


def _add_box(boxes, image, z, y0, x0, y1, x1):
    corners = [(z, y0, x0), (z, y0, x1), (z, y1, x1), (z, y1, x0)]
    verts = np.array([boxes.world_to_data(image.data_to_world(c)) for c in corners])
    boxes.add_rectangles(verts)


def _liver_box(truth, z, margin=2):
    ys, xs = np.nonzero(truth[z] == LIVER)
    return ys.min() - margin, xs.min() - margin, ys.max() + margin, xs.max() + margin


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(
        lambda: not widget.segment_runner.busy and widget.session3d.propagation_job is None,
        timeout=10000,
    )


def _negatives(prompt):
    return prompt.points_yx[prompt.point_labels == 0].astype(int)


def _in_box(point_yx, box_yxyx):
    y0, x0, y1, x1 = box_yxyx
    return y0 - 0.5 <= point_yx[0] <= y1 + 0.5 and x0 - 0.5 <= point_yx[1] <= x1 + 0.5


@pytest.mark.parametrize("others_negative", [True, False])
def test_box_next_to_another_object_sends_a_negative_click_inside_it(
    make_napari_viewer, qtbot, phantom, others_negative
):
    viewer, widget, image, engine, others = _open(make_napari_viewer, phantom, others_negative)
    truth = phantom.labels_zyx
    engine.gate.clear()  # hold the job after it was submitted ...
    _add_box(viewer.layers["boxes"], image, SEED_Z, *_liver_box(truth, SEED_Z))
    assert engine.embedding.wait(10.0)
    widget.labels.data[SEED_Z][others[SEED_Z] != 0] = 0  # ... and erase the other objects
    engine.gate.set()
    qtbot.waitUntil(lambda: (widget.labels.data[SEED_Z] == LIVER).any(), timeout=10000)
    _wait_idle(qtbot, widget)
    (prompt,) = engine.prompts
    assert prompt.box_yxyx is not None and prompt.point_labels.tolist().count(1) == 0
    negatives = _negatives(prompt)
    if not others_negative:
        assert len(negatives) == 0
        return
    # the labels as they were when the box was drawn: one click, inside the vertebra and the box
    assert len(negatives) == 1
    assert others[SEED_Z][tuple(negatives[0])] == VERTEBRA
    assert _in_box(negatives[0], prompt.box_yxyx)
    # the session keeps the user's own prompt, without the added clicks
    assert len(widget.session3d.state.prompts[LIVER][SEED_Z].points_yx) == 0


@pytest.mark.parametrize("others_negative", [True, False])
def test_propagation_takes_each_slices_negatives_from_the_other_objects_there(
    make_napari_viewer, qtbot, phantom, others_negative
):
    viewer, widget, image, engine, others = _open(make_napari_viewer, phantom, others_negative)
    truth = phantom.labels_zyx
    _add_box(viewer.layers["boxes"], image, SEED_Z, *_liver_box(truth, SEED_Z))
    qtbot.waitUntil(lambda: (widget.labels.data[SEED_Z] == LIVER).any(), timeout=10000)
    _wait_idle(qtbot, widget)
    assert widget.session3d.propagate(SEED_Z) is not None
    _wait_idle(qtbot, widget)
    propagated = [c for c in engine.predict_calls if c.cache_key.z != SEED_Z]
    assert {c.cache_key.z for c in propagated} >= {7, 9}
    with_negatives = 0
    for call in propagated:
        negatives = _negatives(call.prompt)
        z = call.cache_key.z
        for point in negatives:
            assert others[z][tuple(point)] not in (0, LIVER)
            assert _in_box(point, call.prompt.box_yxyx)
        with_negatives += bool(len(negatives))
    if others_negative:
        assert with_negatives >= 2  # the vertebra on slices 7 and 9 at least
    else:
        assert with_negatives == 0
    # the other objects were never painted over
    assert np.array_equal(widget.labels.data[others != 0], others[others != 0])
