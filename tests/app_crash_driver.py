"""Drive the real napari app through a session of user edits, for the crash test (not a test).

Run as ``python tests/app_crash_driver.py SCAN``. It starts the app exactly as
``napari-medsam open SCAN`` does (:func:`napari_medsam._cli.app.run_app`: a
viewer, the scan read by our reader, the MedSAM widget docked), with the fake
engine of ``tests/fakes.py`` so that a box is segmented at once. Then, with the
Qt event loop running, it makes the edits of :data:`CHANGES` through the GUI
objects a user acts on: a box drawn on the boxes layer (segmented on the
worker, painted), a brush stroke on the labels layer, the object's name typed
in, its lock ticked, Enter for the next object.

Protocol on stdout, one line per event, flushed:

``MARK <labels sha1> <objects json>``
    the app hands this state to its autosaver (printed just before, so that
    every state that can reach the disk is known to the test).
``CHANGE k <what> <labels sha1> <objects json>``
    change ``k`` (1-based) is complete in the app: the labels and objects are what
    the test must find again if the app dies now or after the next change.
``DONE``
    all changes made; the app keeps running until it is killed.

The next change starts as soon as the app has completed the previous one (a
fast user: nothing waits for the autosave), so the test may kill the process
while a change is being saved, or while the next one is under way.
The driver waits on conditions (polled from the event loop), never on fixed sleeps.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback

import numpy as np

POLL_MS = 10
STEP_TIMEOUT_S = 60.0
LIFETIME_S = 300.0  # an orphaned driver quits by itself

# (what, z) of each change, in order; z is the slice a box or brush stroke is on
CHANGES = [
    ("box-object-1", 3),
    ("name-object-1", None),
    ("brush-object-1", 5),
    ("lock-object-1", None),
    ("next-object-box-2", 7),
    ("name-object-2", None),
]
NAMES = {1: "liver", 2: "spleen"}


def labels_sha1(labels_zyx) -> str:
    """Hash of a labels volume's values and shape (dtype-independent)."""
    data = np.ascontiguousarray(np.asarray(labels_zyx), dtype="<i8")
    return hashlib.sha1(repr(data.shape).encode() + data.tobytes()).hexdigest()


def objects_summary(registry) -> list[list]:
    """``[[id, name, locked], ...]`` of a :class:`LabelRegistry`, sorted by id."""
    return [[int(i.id), str(i.name), bool(i.locked)] for i in sorted(registry, key=lambda i: i.id)]


def parse_change(line: str) -> tuple[int, str, str, list]:
    """``(k, what, sha1, objects)`` of a ``CHANGE`` line."""
    _, k, what, sha1, objects = line.split(" ", 4)
    return int(k), what, sha1, json.loads(objects)


def parse_mark(line: str) -> tuple[str, list]:
    """``(sha1, objects)`` of a ``MARK`` line."""
    _, sha1, objects = line.split(" ", 2)
    return sha1, json.loads(objects)


def _say(*words) -> None:
    print(*words, flush=True)


def _fail(message: str) -> None:
    _say("ERROR", message)
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(3)


class Driver:
    """Makes :data:`CHANGES` one after the other from the Qt event loop."""

    def __init__(self, viewer, widget):
        from fakes import FakeEngine
        from qtpy.QtCore import QTimer

        self.viewer, self.w = viewer, widget
        self.s3 = widget.session3d
        self.k = 0
        widget.engine = FakeEngine()  # answers with the box itself, at once
        self.watch_autosave()
        QTimer.singleShot(int(LIFETIME_S * 1000), lambda: os._exit(4))
        QTimer.singleShot(0, self.next_change)

    # ---------------------------------------------------------------- plumbing
    def wait_until(self, ready, then, what: str) -> None:
        """Call ``then()`` from the event loop once ``ready()`` holds."""
        from qtpy.QtCore import QTimer

        deadline = time.monotonic() + STEP_TIMEOUT_S

        def poll():
            try:
                if ready():
                    then()
                elif time.monotonic() > deadline:
                    _fail(f"timed out waiting for {what}")
                else:
                    QTimer.singleShot(POLL_MS, poll)
            except Exception:
                _fail(traceback.format_exc())

        QTimer.singleShot(POLL_MS, poll)

    def state(self) -> tuple[str, list]:
        return labels_sha1(self.w.labels.data), objects_summary(self.s3.state.registry)

    def watch_autosave(self) -> None:
        """Print ``MARK`` with every state the app hands to its autosaver."""
        files = self.s3.files
        autosave = files.autosave

        def announced(labels_zyx, state):
            objects = json.dumps(objects_summary(state.registry), separators=(",", ":"))
            _say("MARK", labels_sha1(labels_zyx), objects)
            return autosave(labels_zyx, state)

        files.autosave = announced

    def idle(self) -> bool:
        return not self.w.segment_runner.busy and self.s3.propagation_job is None

    # ---------------------------------------------------------------- changes
    def next_change(self) -> None:
        if self.k == len(CHANGES):
            _say("DONE")
            return
        what, z = CHANGES[self.k]
        self.k += 1
        try:
            ready = getattr(self, what.replace("-", "_"))(z)
        except Exception:
            _fail(traceback.format_exc())
        self.wait_until(lambda: ready() and self.idle(), self.report_change, what)

    def report_change(self) -> None:
        sha1, objects = self.state()
        what = CHANGES[self.k - 1][0]
        _say("CHANGE", self.k, what, sha1, json.dumps(objects, separators=(",", ":")))
        self.next_change()  # at once: the user does not wait for the autosave

    def show_slice(self, z: int) -> None:
        image = self.w.image
        self.viewer.dims.set_point(0, image.data_to_world((z, 0, 0))[0])

    def draw_box(self, z: int, y0: int, x0: int, y1: int, x1: int) -> None:
        """A rectangle on the boxes layer, on slice ``z`` of the image, as the user draws it."""
        image, boxes = self.w.image, self.viewer.layers["boxes"]
        self.show_slice(z)
        self.viewer.layers.selection.active = boxes
        corners = [(z, y0, x0), (z, y0, x1), (z, y1, x1), (z, y1, x0)]
        boxes.add_rectangles(
            np.array([boxes.world_to_data(image.data_to_world(c)) for c in corners])
        )

    def box_object_1(self, z):
        self.draw_box(z, 10, 10, 29, 29)
        return lambda: (self.w.labels.data[z] == 1).any()

    def name_object(self, label):
        edit = self.s3.controls.name_combo.lineEdit()
        edit.setText(NAMES[label])
        edit.editingFinished.emit()  # Enter in the name box
        return lambda: self.s3.state.registry.name(label) == NAMES[label]

    def name_object_1(self, z):
        return self.name_object(1)

    def name_object_2(self, z):
        return self.name_object(2)

    def brush_object_1(self, z):
        """One brush stroke (press, moves, release) on slice ``z`` with the current label."""
        labels, n_steps = self.w.labels, len(self.s3.undo_stack.undo_names)
        self.show_slice(z)
        self.viewer.layers.selection.active = labels
        labels.mode = "paint"
        labels.selected_label = self.s3.label
        with labels.block_history():  # what napari's ``draw`` mouse callback does
            for x in range(12, 40, 4):
                labels.paint((z, 30, x), labels.selected_label, refresh=False)
        labels.refresh()
        return lambda: len(self.s3.undo_stack.undo_names) == n_steps + 1

    def lock_object_1(self, z):
        self.s3.controls.lock_check.setChecked(True)
        return lambda: self.s3.state.registry[1].locked

    def next_object_box_2(self, z):
        self.w.commit_object()  # Enter on the boxes layer: the next object
        assert self.s3.label == 2, self.s3.label
        self.draw_box(z, 20, 20, 44, 40)
        return lambda: (self.w.labels.data[z] == 2).any()


def _die_with_parent() -> None:
    """Be killed if the test process dies first (no orphaned app)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def main(argv: list[str]) -> int:
    from napari_medsam._cli.app import run_app

    _die_with_parent()
    drivers = []  # keeps the driver alive while the event loop runs
    return run_app(argv[0], on_ready=lambda viewer, widget: drivers.append(Driver(viewer, widget)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
