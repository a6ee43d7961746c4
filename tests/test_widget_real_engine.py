"""The widget with the real bundled LiteMedSAM on CPU, loaded lazily on the worker."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from napari_medsam.io.phantom import make_phantom

LIVER = 1
logger = logging.getLogger(__name__)


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.mark.slow
def test_box_then_click_with_real_litemedsam(make_napari_viewer, qtbot):
    phantom = make_phantom(shape_zyx=(12, 64, 64), spacing_zyx_mm=(4.0, 1.5, 1.5), seed=1)
    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.image_zyx, name="CT", scale=phantom.spacing_zyx_mm)
    _, widget = viewer.window.add_plugin_dock_widget("napari-medsam", "MedSAM segmentation")
    assert widget.engine is None  # nothing loaded until the first prompt
    labels, boxes, clicks = widget.labels, viewer.layers["boxes"], viewer.layers["clicks"]
    areas = (phantom.labels_zyx == LIVER).sum(axis=(1, 2))
    z = int(np.argmax(areas))
    truth = phantom.labels_zyx[z] == LIVER
    ys, xs = np.nonzero(truth)
    corners = [(z, ys.min() - 2, xs.min() - 2), (z, ys.max() + 2, xs.max() + 2)]
    (z0, y0, x0), (_, y1, x1) = (boxes.world_to_data(image.data_to_world(c)) for c in corners)
    progress_seen = []
    widget.segment_runner.progress.connect(
        lambda p: progress_seen.append(not widget.controls.progress_bar.isHidden())
    )
    boxes.add_rectangles(np.array([[z0, y0, x0], [z0, y0, x1], [z0, y1, x1], [z0, y1, x0]]))
    qtbot.waitUntil(lambda: (labels.data[z] == 1).any(), timeout=60000)
    assert widget.engine.name.startswith("LiteMedSAM")
    assert progress_seen and progress_seen[0]  # the lazy load showed the progress bar
    dice_box = _dice(labels.data[z] == 1, truth)
    assert dice_box > 0.7, dice_box
    assert (labels.data[np.arange(12) != z] == 0).all()
    qtbot.waitUntil(lambda: not widget.segment_runner.busy, timeout=10000)

    # a click inside the liver refines the same object (embedding cached)
    inside = np.argwhere(truth)[len(np.argwhere(truth)) // 2]
    before = widget.last_latency_ms
    clicks.add(clicks.world_to_data(image.data_to_world((z, *inside))))
    qtbot.waitUntil(lambda: widget.last_latency_ms != before, timeout=30000)
    dice_click = _dice(labels.data[z] == 1, truth)
    logger.info(
        "box Dice %.3f (first, with model load %.0f ms), box+click Dice %.3f, click-to-painted %.0f ms",
        dice_box,
        before,
        dice_click,
        widget.last_latency_ms,
    )
    assert dice_click > 0.7, dice_click
    assert widget.last_latency_ms < 5000
    assert f"{widget.engine.name} on cpu" in widget.controls.status_label.text()
