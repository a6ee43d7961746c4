"""Issue 12 in the dock: autosave failures are shown (item 5), a damaged or changed session is
offered, restored, and its old files kept (items 2, 3). Through the manifest, real threads."""

from __future__ import annotations

import errno
import os

import nibabel as nib
import numpy as np
import pytest
from session_widgets import asked, phantom  # noqa: F401 (fixtures)
from session_widgets import draw_box as _box
from session_widgets import open_scan as _open

from napari_medsam._qt import files
from napari_medsam.session.journal import SegmentWriter


@pytest.fixture
def messages(monkeypatch):
    """Every napari notification the session face raises: ("warning" | "info", text)."""
    seen = []
    monkeypatch.setattr(files, "show_warning", lambda t: seen.append(("warning", t)))
    monkeypatch.setattr(files, "show_info", lambda t: seen.append(("info", t)))
    return seen


def _scan(tmp_path, phantom):
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image_zyx.T.copy(), np.eye(4)), path)
    return path


def test_autosave_failure_is_shown_once_and_recovery_announced(
    make_napari_viewer, qtbot, phantom, tmp_path, messages, asked, monkeypatch
):
    viewer, widget = _open(make_napari_viewer, _scan(tmp_path, phantom))
    line = widget.session3d.controls.session_label
    _box(qtbot, viewer, widget, 2)
    assert widget.session3d.saver.flush(10)
    assert "NOT autosaved" not in line.text()
    full = {"on": True}
    real = SegmentWriter.append

    def append(writer, *args):
        if full["on"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(writer.path))
        return real(writer, *args)

    monkeypatch.setattr(SegmentWriter, "append", append)
    for z in (3, 4, 5):
        _box(qtbot, viewer, widget, z)
        widget.session3d.saver.flush(10)
    qtbot.waitUntil(lambda: "NOT autosaved" in line.text(), timeout=10000)
    assert "No space left on device" in line.text()
    assert "autosave FAILED" in widget.controls.status_label.text()
    warnings = [t for kind, t in messages if kind == "warning"]
    assert len(warnings) == 1 and "not being autosaved" in warnings[0]  # once, not per change
    full["on"] = False
    _box(qtbot, viewer, widget, 6)
    qtbot.waitUntil(lambda: "NOT autosaved" not in line.text(), timeout=10000)
    assert "autosave FAILED" not in widget.controls.status_label.text()
    assert any(kind == "info" and "works again" in t for kind, t in messages)


def test_damaged_session_json_is_offered_and_restored_in_the_app(
    make_napari_viewer, qtbot, phantom, tmp_path, messages, asked
):
    path = _scan(tmp_path, phantom)
    viewer, widget = _open(make_napari_viewer, path)
    _box(qtbot, viewer, widget, 3)
    saved = widget.labels.data.copy()
    folder = widget.session3d.saver.session_dir
    widget.close()
    (folder / "session.json").write_text('{"format": "napari-medsam-session", "vers')  # truncated
    viewer2, widget2 = _open(make_napari_viewer, path)
    assert len(asked) == 1 and "session.json" in asked[0]
    np.testing.assert_array_equal(widget2.labels.data, saved)
    assert any(kind == "warning" and "kept in" in t for kind, t in messages)
    assert list(tmp_path.glob("scan.medsam-session.damaged-*"))


def test_touched_scan_asks_instead_of_discarding(
    make_napari_viewer, qtbot, phantom, tmp_path, messages, asked
):
    path = _scan(tmp_path, phantom)
    viewer, widget = _open(make_napari_viewer, path)
    _box(qtbot, viewer, widget, 3)
    saved = widget.labels.data.copy()
    widget.close()
    os.utime(path, ns=(10**18, 10**18))  # `touch`: same voxels, another timestamp
    viewer2, widget2 = _open(make_napari_viewer, path)
    assert len(asked) == 1 and "another timestamp/size" in asked[0]
    np.testing.assert_array_equal(widget2.labels.data, saved)
