"""Shared setup of the dock's session tests: a small phantom scan, the dock on it, a box.

Imported by ``test_widget_partial_restore.py`` and ``test_widget_session_safety.py``
(their fixtures ``phantom`` and ``asked`` come from here).
"""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeEngine

from napari_medsam._qt import dialogs
from napari_medsam.io.phantom import make_phantom

WIDGET = ("napari-medsam", "MedSAM segmentation")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape_zyx=(8, 48, 48), spacing_zyx_mm=(4.0, 1.0, 1.0))


@pytest.fixture
def asked(monkeypatch):
    """The restore questions the dock asked (each answered yes)."""
    questions = []

    def ask(parent, info, scan_path=None):
        from napari_medsam.session.resume import restore_question

        questions.append(restore_question(info, scan_path))
        return True

    monkeypatch.setattr(dialogs, "ask_restore", ask)
    return questions


def open_scan(make_napari_viewer, path):
    """A viewer with the scan at ``path`` opened and the dock on it (fake engine)."""
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-medsam")
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.engine = FakeEngine()
    return viewer, widget


def draw_box(qtbot, viewer, widget, z, y0=10, x0=10, y1=25, x1=25):
    """Draw a box on slice ``z`` and wait until its result is painted."""
    image, boxes = widget.image, viewer.layers["boxes"]
    corners = [(z, y0, x0), (z, y0, x1), (z, y1, x1), (z, y1, x0)]
    boxes.add_rectangles(np.array([boxes.world_to_data(image.data_to_world(c)) for c in corners]))
    qtbot.waitUntil(lambda: (widget.labels.data[z] > 0).any(), timeout=10000)
    qtbot.waitUntil(lambda: not widget.segment_runner.busy, timeout=10000)
