"""A crash with damaged autosave snapshots, in the dock: the restore question names them.

The app is "killed" right after its last change reached the disk: the session
folder is put back exactly as it was at that moment (the clean close's final
snapshot and tidy-up never happened). Then snapshots are damaged as a full disk,
a bad copy or a bad sector leave them: cut short, or with a byte changed
inside the compressed labels (only the zip's checksum can tell). Reopening the scan must ask with the
damaged files named, restore every change from an older snapshot and the
journal, and keep the damaged files as they are.
"""

from __future__ import annotations

import json
import zipfile

import nibabel as nib
import numpy as np
import pytest
from session_widgets import asked, phantom  # noqa: F401 (fixtures)
from session_widgets import draw_box as _box
from session_widgets import open_scan as _open



def _crashed_session(make_napari_viewer, qtbot, phantom, tmp_path):
    """Edit with two snapshots and journal after them; the folder as a kill leaves it.

    Returns the scan path, the session folder, the labels at the crash and the
    snapshots the pointer names, newest first.
    """
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image_zyx.T.copy(), np.eye(4)), scan)
    viewer, widget = _open(make_napari_viewer, scan)
    for z, snapshot in ((2, True), (3, True), (4, False), (5, False)):
        _box(qtbot, viewer, widget, z)
        assert widget.session3d.saver.flush(10, snapshot=snapshot)
    folder = widget.session3d.saver.session_dir
    at_crash = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    saved = widget.labels.data.copy()
    widget.close()  # writes a final snapshot and tidies up: undone below, as a kill does
    for path in folder.iterdir():
        path.unlink()
    for name, data in at_crash.items():
        (folder / name).write_bytes(data)
    pointer = json.loads((folder / "session.json").read_text())
    snapshots = [b["labels_file"] for b in pointer["bases"] if b["labels_file"]]
    assert len(snapshots) == 2, pointer["bases"]  # the newest and its fallback
    assert (saved > 0).sum() and all((saved[z] > 0).any() for z in (2, 3, 4, 5))
    return scan, folder, saved, snapshots


def _damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "cut short":
        path.write_bytes(data[: len(data) // 2])
    else:  # one byte changed inside the compressed labels: only the checksum can tell
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("labels_zyx.npy")
        local = data[info.header_offset : info.header_offset + 30]
        start = (info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                 + int.from_bytes(local[28:30], "little"))  # fmt: skip
        at = start + info.compress_size // 2
        path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])


@pytest.mark.parametrize("how", ["cut short", "a byte changed"])
def test_a_damaged_newest_snapshot_is_named_and_every_change_restored(
    make_napari_viewer, qtbot, phantom, tmp_path, asked, how
):
    scan, folder, saved, (newest, older) = _crashed_session(
        make_napari_viewer, qtbot, phantom, tmp_path
    )
    _damage(folder / newest, how)
    damaged = (folder / newest).read_bytes()
    viewer2, widget2 = _open(make_napari_viewer, scan)
    assert len(asked) == 1
    question = asked[0]
    assert newest in question and "damaged" in question, question
    assert older not in question  # the fallback is fine: not named as damaged
    assert question.rstrip().endswith("Restore anyway?")
    np.testing.assert_array_equal(widget2.labels.data, saved)  # nothing lost
    kept = list(tmp_path.glob("scan.medsam-session.damaged-*"))
    assert len(kept) == 1 and (kept[0] / newest).read_bytes() == damaged  # kept as it was


def test_both_snapshots_damaged_are_both_named_and_the_journal_after_them_restored(
    make_napari_viewer, qtbot, phantom, tmp_path, asked
):
    scan, folder, saved, snapshots = _crashed_session(make_napari_viewer, qtbot, phantom, tmp_path)
    for name, how in zip(snapshots, ("cut short", "a byte changed"), strict=True):
        _damage(folder / name, how)
    damaged = {name: (folder / name).read_bytes() for name in snapshots}
    viewer2, widget2 = _open(make_napari_viewer, scan)
    assert len(asked) == 1
    assert all(name in asked[0] for name in snapshots), asked[0]
    # the journal before the older snapshot (generation 1: the box on slice 2) was tidied
    # away when that snapshot was written; the question says so, the rest comes back
    assert "no snapshot can be read (" in asked[0]
    assert "): only the changes after generation 1" in asked[0]
    restored = widget2.labels.data
    assert not restored[2].any()
    np.testing.assert_array_equal(restored[3:], saved[3:])
    kept = list(tmp_path.glob("scan.medsam-session.damaged-*"))
    assert len(kept) == 1
    assert {name: (kept[0] / name).read_bytes() for name in snapshots} == damaged
