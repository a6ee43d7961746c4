"""Prefetch: after a click's result, the neighbouring slices are embedded on their own worker."""

from __future__ import annotations

import threading

import pytest
from fakes import FakeEngine

from napari_medsam._qt.prefetch import PREFETCH_DZ
from napari_medsam.io.phantom import make_phantom

WIDGET = ("napari-medsam", "MedSAM segmentation")


class GatedEngine(FakeEngine):
    """FakeEngine whose embedding of slice ``gate_z`` waits for ``gate`` (up to 10 s)."""

    def __init__(self, truth_zyx, gate_z):
        super().__init__(truth_zyx=truth_zyx)
        self.gate_z, self.gate, self.at_gate = gate_z, threading.Event(), threading.Event()

    def embed(self, image_yx, cache_key=None):
        if cache_key is not None and cache_key.z == self.gate_z:
            self.at_gate.set()
            self.gate.wait(10.0)
        super().embed(image_yx, cache_key)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape_zyx=(12, 64, 64), spacing_zyx_mm=(4.0, 1.0, 1.0))


def _click(viewer, image, zyx):
    clicks = viewer.layers["clicks"]
    clicks.add(clicks.world_to_data(image.data_to_world(zyx)))


def _embeds(engine):
    return [c for c in engine.calls if c.method == "embed" and c.cache_key is not None]


def test_neighbours_are_embedded_after_a_click_and_a_new_prompt_cancels(
    make_napari_viewer, phantom, qtbot
):
    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.image_zyx, name="CT", scale=(4.0, 1.0, 1.0))
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    engine = GatedEngine(phantom.labels_zyx, gate_z=2)
    widget.engine = engine
    z = 6
    _click(viewer, image, (z, 32, 20))
    qtbot.waitUntil(lambda: widget.last_latency_ms is not None, timeout=10000)
    assert widget.prefetch.pending()  # scheduled once the click was painted
    qtbot.waitUntil(lambda: not widget.prefetch.pending(), timeout=10000)
    prefetched = [c for c in _embeds(engine) if c.cache_key.z != z]
    assert [c.cache_key.z for c in prefetched] == [z + dz for dz in PREFETCH_DZ]
    assert all(c.thread != threading.main_thread().name for c in prefetched)

    # a prefetch stuck on slice 2; a new click cancels it: slices 0 and 3 are never embedded
    n_before = len(_embeds(engine))
    widget.prefetch.run(1)  # would embed 2, 0, 3
    assert engine.at_gate.wait(10.0)
    _click(viewer, image, (z, 30, 22))
    engine.gate.set()
    qtbot.waitUntil(lambda: not widget.segment_runner.busy, timeout=10000)
    qtbot.waitUntil(lambda: not widget.prefetch.pending(), timeout=10000)
    later = {c.cache_key.z for c in _embeds(engine)[n_before:]}
    assert 2 in later and not later & {0, 3}
