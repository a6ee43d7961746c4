"""The app and ``eval --protocol 3d`` drive the same AnnotationSession: same prompts, same labels.

The protocol runs on a session inline (:func:`interact_object`); the app gets the
same prompts through its layers (a box, Propagate, then each click with the
protocol's correction box, and Re-propagate) and runs the session's requests on its
worker. An engine that misses part of the object without a click makes the protocol
click, so the comparison covers corrections, logits fed back and re-propagation.
Through the manifest, on real worker threads.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle_engines import OracleEngine

from napari_medsam._qt import dialogs
from napari_medsam.evaluation.protocol3d import click_prompt, interact_object
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.session.annotation import AnnotationSession
from napari_medsam.session.requests import run_request
from napari_medsam.tasks.propagate_options import PropagationOptions

WIDGET = ("napari-medsam", "MedSAM segmentation")


class HalfOracle(OracleEngine):
    """The truth, but without a positive click only its part left of column 13."""

    name = "half oracle"

    def _mask(self, image_yx, prompt, cache_key):
        mask = super()._mask(image_yx, prompt, cache_key)
        if not (np.asarray(prompt.point_labels) == 1).any():
            mask = mask.copy()
            mask[:, 13:] = False
        return mask


def _truth():
    labels = np.zeros((12, 28, 28), np.uint8)
    yy, xx = np.mgrid[:28, :28]
    for z in range(2, 10):
        r = 5 + min(z - 2, 9 - z)
        labels[z][(yy - 13) ** 2 + (xx - 13) ** 2 <= r * r] = 1
    return labels


@pytest.fixture(autouse=True)
def never_ask(monkeypatch):
    monkeypatch.setattr(dialogs, "ask_restore", lambda parent, info: False)


def _add_box(boxes, image, z, box_yxyx):
    y0, x0, y1, x1 = (float(v) for v in box_yxyx)
    corners = [(z, y0, x0), (z, y0, x1), (z, y1, x1), (z, y1, x0)]
    boxes.add_rectangles(np.array([boxes.world_to_data(image.data_to_world(c)) for c in corners]))


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(
        lambda: not widget.segment_runner.busy and widget.session3d.propagation_job is None,
        timeout=20000,
    )


def test_the_app_and_the_protocol_paint_identical_labels(make_napari_viewer, qtbot):
    truth = _truth()
    volume = truth.astype(np.float32) + 0.01 * np.arange(28, dtype=np.float32)  # no blank slice
    gt = truth == 1
    z0 = int(np.argmax(gt.sum(axis=(1, 2))))
    box = np.array([6, 6, 20, 20], np.float32)

    viewer = make_napari_viewer()
    image = viewer.add_image(volume, name="CT")
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.engine = HalfOracle(truth)
    lo, hi = (float(v) for v in image.contrast_limits)

    # the protocol, inline, on its own session (the window the app's model sees)
    spacing = (1.0, 1.0, 1.0)  # the image layer's scale, which the app passes on
    options = PropagationOptions(spacing_zyx_mm=spacing)
    session = AnnotationSession(np.zeros(truth.shape, np.uint16), options=options)
    engine = HalfOracle(truth)

    def run(request):
        return run_request(engine, volume, IntensityWindow(lo, hi), request, "protocol")

    record = interact_object(session, run, gt, 1, box, max_clicks=3, spacing_zyx_mm=spacing)
    assert record["clicks"], "the engine must leave errors for the protocol to click"
    assert record["dice_per_interaction"][0] < record["final_dice"]

    # the app: the same prompts through its layers, the session's requests on the worker
    boxes, clicks = viewer.layers["boxes"], viewer.layers["clicks"]
    _add_box(boxes, image, z0, box)
    _wait_idle(qtbot, widget)
    viewer.dims.set_point(0, z0)
    widget.session3d.propagate()
    _wait_idle(qtbot, widget)
    done = []
    for click in record["clicks"]:
        done.append(click)
        z = click["z"]
        pred = np.asarray(widget.labels.data) == 1
        prompt = click_prompt(pred, done, z, z0)
        widget._ignore_layer_events = True  # the box joins the click's prompt, not its own
        try:
            _add_box(boxes, image, z, prompt.box_yxyx)
        finally:
            widget._ignore_layer_events = False
        widget.controls.negative_check.setChecked(not click["positive"])
        clicks.add(clicks.world_to_data(image.data_to_world((z, click["y"], click["x"]))))
        _wait_idle(qtbot, widget)
        widget.session3d.propagate(again=True)
        _wait_idle(qtbot, widget)
    np.testing.assert_array_equal(np.asarray(widget.labels.data), session.labels)
