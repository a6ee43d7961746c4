"""Kill the real napari app (SIGKILL) mid-session; reopening the scan restores all but the last change.

``tests/app_crash_driver.py`` runs ``napari-medsam open SCAN``'s code in a child
process and edits the session through the GUI (boxes, a brush stroke, names, a
lock) as fast as the app completes each change: nothing waits for the
autosave. It reports each state it hands to the autosaver (``MARK``) and each
completed change (``CHANGE k``). The test kills it at a random moment shortly
after change ``k`` (no cleanup of any kind runs), then opens the scan as the app
does and accepts the restore offer: the labels, names and locks must be those
after change ``k - 1`` or ``k``, or a state of the change that was under way
(nothing lost). Every completed change must have been handed to the autosaver.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from app_crash_driver import labels_sha1, objects_summary, parse_change, parse_mark

from napari_medsam._qt import dialogs
from napari_medsam._cli.app import build_viewer
from napari_medsam.io.phantom import make_phantom

DRIVER = Path(__file__).with_name("app_crash_driver.py")
LINE_TIMEOUT_S = 120.0  # napari's start on a loaded machine; a change takes ~0.05 s


def _write_scan(path: Path) -> Path:
    phantom = make_phantom(shape_zyx=(12, 64, 64), spacing_zyx_mm=(4.0, 1.0, 1.0))
    image_xyz = phantom.image_zyx.T.copy()
    nib.save(nib.Nifti1Image(image_xyz, np.diag([1.0, 1.0, 4.0, 1.0])), path)
    return path


def _start_driver(scan: Path, log: Path) -> tuple[subprocess.Popen, queue.Queue]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")  # DISPLAY: conftest's Xvfb
    env["NAPARI_CONFIG"] = str(scan.with_name("napari-settings.yaml"))  # not the user's
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(scan)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=scan.parent,
            env=env,
        )
    lines: queue.Queue = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)  # end of output

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def _next_line(lines: queue.Queue, log: Path) -> str:
    try:
        line = lines.get(timeout=LINE_TIMEOUT_S)
    except queue.Empty:
        line = None
    if line is None or line.startswith("ERROR"):
        pytest.fail(f"the app driver stopped: {line!r}\n{log.read_text(errors='replace')[-4000:]}")
    return line


def _parse(line: str) -> tuple:
    """``("MARK", state)``, ``("CHANGE", k, state)`` or ``(word,)``; a state is (sha1, objects)."""
    if line.startswith("MARK "):
        return ("MARK", parse_mark(line))
    if line.startswith("CHANGE "):
        k, _, sha1, objects = parse_change(line)
        return ("CHANGE", k, (sha1, objects))
    return (line.split(" ", 1)[0],)


@pytest.mark.app_crash
@pytest.mark.parametrize("kill_after", [3, 5], ids=["after-brush", "after-box-of-object-2"])
def test_sigkill_of_the_app_loses_at_most_the_last_change(
    make_napari_viewer, tmp_path, monkeypatch, kill_after
):
    scan = _write_scan(tmp_path / "scan.nii.gz")
    log = tmp_path / "driver-stderr.txt"
    proc, lines = _start_driver(scan, log)
    events = []  # in the order the app printed them
    try:
        while ("CHANGE", kill_after) not in [e[:2] for e in events]:
            events.append(_parse(_next_line(lines, log)))
        time.sleep(random.uniform(0.0, 0.08))  # during the next change, its save, or after
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # a crash: no Qt shutdown, no autosaver close
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # what the app printed between our read and the kill happened before the kill
    events += [_parse(line) for line in iter(lines.get, None)]
    proc.stdout.close()
    done = {e[1]: i for i, e in enumerate(events) if e[0] == "CHANGE"}  # k -> event index
    kept = {e[1]: e[2] for e in events if e[0] == "CHANGE"}
    last = max(kept)
    assert len({repr(v) for v in kept.values()}) == len(kept)  # every change is visible
    for k, i in done.items():  # each completed change was handed to the autosaver
        assert [e[1] for e in events[:i] if e[0] == "MARK"][-1] == kept[k], k
    # allowed: change last - 1, change last, or a state handed over after change last - 1
    later = [e[1] for e in events[done[last - 1] :] if e[0] == "MARK"]

    asked = []
    monkeypatch.setattr(
        dialogs, "ask_restore", lambda parent, info: asked.append(info) or True
    )
    viewer, widget = build_viewer(scan, viewer=make_napari_viewer())  # as the app opens it
    assert len(asked) == 1, "reopening the scan must offer to restore"
    s3 = widget.session3d
    got = (labels_sha1(widget.labels.data), objects_summary(s3.state.registry))
    assert got in [kept[last - 1], kept[last], *later], (got, kept)
    which = {repr(kept[last - 1]): f"change {last - 1}", repr(kept[last]): f"change {last}"}
    under_way = len([e for e in events[done[last] :] if e[0] == "MARK"])
    print(
        f"killed after change {last} ({under_way} states of the next one handed over); "
        f"restored {which.get(repr(got), 'the change under way')}"
    )
    names = {obj_id: name for obj_id, name, _ in got[1]}
    assert asked[0].label_names == names and asked[0].scan_matches
    # the widget shows the restored current object with its name and lock
    objects = {obj_id: (name, locked) for obj_id, name, locked in got[1]}
    label = widget.controls.label_spin.value()
    if label in objects:
        assert s3.controls.name_combo.currentText() == objects[label][0]
        assert s3.controls.lock_check.isChecked() == objects[label][1]
