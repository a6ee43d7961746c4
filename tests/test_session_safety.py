"""Issue 12, items 2, 3, 5, 6: a saved session is never lost, and its problems are never silent.

Each test builds a real autosaved session (snapshot + journal), damages it the
way the issue's probe did, and checks what the app's Qt-free core does: the
session is offered (or set aside with a message), nothing readable is deleted,
and what cannot be restored is said.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from napari_medsam.session.autosave import Autosaver
from napari_medsam.session.saved import find_session, restore_report
from napari_medsam.session.journal import SegmentWriter
from napari_medsam.session.resume import resume_session
from napari_medsam.session.state import SessionState
from napari_medsam.session.store import session_dir_for

SHAPE = (6, 16, 16)


def _digests(folder: Path) -> dict[str, str]:
    """name -> sha1 of every session file under ``folder`` (any depth)."""
    return {
        p.name: hashlib.sha1(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and (p.suffix in (".npz", ".bin") or p.name == "session.json")
    }


def _state(scan, k):
    state = SessionState(scan_path=str(scan), shape_zyx=SHAPE, active_label=1)
    state.registry.add("liver")  # the TotalSegmentator id, 5
    state.registry.rename(5, f"liver {k}")
    return state


def _session(tmp_path, changes_after_snapshot=4):
    """A scan with an autosaved session: 4 changes, a snapshot, then more changes in the journal.

    Returns (scan path, session folder, the latest labels).
    """
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"stands for a scan")
    folder = session_dir_for(scan, cache_root=tmp_path / "cache")
    labels = np.zeros(SHAPE, np.uint8)
    saver = Autosaver(folder, snapshot_interval_s=3600)
    for k in range(1, 5 + changes_after_snapshot):
        labels[k % SHAPE[0], k : k + 3, 2:9] = 1 + k % 3
        saver.mark_dirty(labels, _state(scan, k))
        if k == 4:
            assert saver.flush(10, snapshot=True)
    assert saver.flush(10)
    saver.close(snapshot=False)  # the last changes live only in the journal
    assert list(folder.glob("labels-*.npz"))
    assert bool(list(folder.glob("journal-*.bin"))) == bool(changes_after_snapshot)
    return scan, folder, labels.copy()


def _keep_editing(folder, labels, scan):
    """What the app does next: autosave edits in the same folder, with snapshots."""
    saver = Autosaver(folder, snapshot_interval_s=0.0)
    try:
        for k in range(3):
            labels = labels.copy()
            labels[0, 0, k] = 3
            saver.mark_dirty(labels, _state(scan, 100 + k))
        assert saver.flush(10, snapshot=True)
    finally:
        saver.close()
    return saver


POINTER_DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "garbage": lambda p: p.write_bytes(os.urandom(300)),
    "empty": lambda p: p.write_bytes(b""),
    "deleted": lambda p: p.unlink(),
}


@pytest.mark.parametrize("damage", list(POINTER_DAMAGE))
def test_damaged_session_json_is_recovered_offered_and_never_deleted(tmp_path, damage):
    """Item 2: a truncated / garbage / empty / deleted session.json."""
    scan, folder, latest = _session(tmp_path)
    POINTER_DAMAGE[damage](folder / "session.json")
    before = _digests(folder)
    info = find_session(scan, cache_root=tmp_path / "cache")
    assert info is not None, "the session must still be offered"
    assert info.recovered and any("session.json" in n for n in info.notes)
    asked = []
    got = resume_session(scan, SHAPE, None, lambda i: asked.append(i) or True, tmp_path / "cache")
    assert len(asked) == 1
    np.testing.assert_array_equal(got.labels_zyx, latest)  # every saved change came back
    assert got.state.registry.name(5) == "liver 8"
    assert any("session.json" in w for w in got.warnings)  # the user is told
    # ... that nothing was lost: a rebuilt session.json is a repair, not a partial restore
    assert any("with every saved change" in w for w in got.warnings), got.warnings
    assert not any("only in part" in w for w in got.warnings)
    kept = list(tmp_path.glob("scan.medsam-session.damaged-*"))
    assert len(kept) == 1 and _digests(kept[0]) == before  # the old files, untouched
    np.testing.assert_array_equal(restore_report(folder).labels_zyx, latest)  # fresh, intact
    _keep_editing(folder, got.labels_zyx, scan)
    assert _digests(kept[0]) == before  # still there after the next snapshots


@pytest.mark.parametrize("damage", list(POINTER_DAMAGE))
def test_autosaver_sets_aside_what_it_would_otherwise_delete(tmp_path, damage):
    """Item 2, the deletion itself: the next edits must not remove the readable snapshot."""
    scan, folder, _ = _session(tmp_path)
    POINTER_DAMAGE[damage](folder / "session.json")
    before = _digests(folder)
    saver = _keep_editing(folder, np.zeros(SHAPE, np.uint8), scan)
    assert saver.set_aside_to is not None
    assert _digests(saver.set_aside_to) == before


def test_deleted_snapshot_keeps_the_journal_and_says_what_is_lost(tmp_path):
    """Item 2, "the snapshot deleted": the journal after it is offered, the loss is named."""
    scan, folder, latest = _session(tmp_path)
    for snapshot in folder.glob("labels-*.npz"):
        snapshot.unlink()
    before = _digests(folder)
    info = find_session(scan, cache_root=tmp_path / "cache")
    assert info is not None and any("no snapshot" in n for n in info.notes)
    got = resume_session(scan, SHAPE, None, lambda i: True, tmp_path / "cache")
    assert got.labels_zyx is not None and got.labels_zyx.any()
    assert any("no snapshot" in w and "only in part" in w for w in got.warnings), got.warnings
    assert not any("older snapshot" in w for w in got.warnings)  # there was none
    kept = list(tmp_path.glob("scan.medsam-session.damaged-*"))
    assert len(kept) == 1 and _digests(kept[0]) == before


def test_unreadable_session_is_set_aside_with_a_message(tmp_path):
    """Nothing at all can be read: set aside, said, and the new session starts beside it."""
    scan, folder, _ = _session(tmp_path)
    for path in folder.iterdir():
        path.write_bytes(b"\0" * 10)
    before = _digests(folder)
    got = resume_session(scan, SHAPE, None, lambda i: pytest.fail("nothing to offer"),
                         tmp_path / "cache")  # fmt: skip
    assert got.state is None and len(got.warnings) == 1 and "cannot be read" in got.warnings[0]
    kept = list(tmp_path.glob("scan.medsam-session.unreadable-*"))
    assert len(kept) == 1 and _digests(kept[0]) == before
    assert not folder.exists()


@pytest.mark.parametrize("change", ["touch", "copy"])
def test_changed_scan_is_asked_not_discarded(tmp_path, change):
    """Item 3: a `touch` or a copy of the scan changes its mtime/size."""
    scan, folder, latest = _session(tmp_path)
    if change == "touch":
        os.utime(scan, ns=(10**18, 10**18))
    else:
        scan.write_bytes(scan.read_bytes() + b" (a copy, re-encoded)")
    before = _digests(folder)
    questions = []
    got = resume_session(scan, SHAPE, None, lambda i: questions.append(i) or False,
                         tmp_path / "cache")  # fmt: skip
    assert len(questions) == 1 and not questions[0].scan_matches
    from napari_medsam.session.resume import restore_question

    text = restore_question(questions[0], scan)
    assert "another timestamp/size" in text and "Restore anyway?" in text
    assert got.state is None and any("kept in" in m for m in got.infos)
    kept = list(tmp_path.glob("scan.medsam-session.declined-*"))
    assert len(kept) == 1 and _digests(kept[0]) == before  # declined: set aside, not deleted
    # and saying yes restores it
    kept[0].rename(folder)
    got = resume_session(scan, SHAPE, None, lambda i: True, tmp_path / "cache")
    np.testing.assert_array_equal(got.labels_zyx, latest)


def test_session_of_another_grid_is_not_restored_but_kept(tmp_path):
    scan, folder, _ = _session(tmp_path)
    before = _digests(folder)
    got = resume_session(scan, (6, 16, 17), None, lambda i: pytest.fail("must not ask"),
                         tmp_path / "cache")  # fmt: skip
    assert got.state is None and "another grid" in got.warnings[0]
    kept = list(tmp_path.glob("scan.medsam-session.other-grid-*"))
    assert len(kept) == 1 and _digests(kept[0]) == before


def test_session_of_another_affine_is_not_restored(tmp_path):
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"x")
    folder = session_dir_for(scan, cache_root=tmp_path / "cache")
    state = SessionState(scan_path=str(scan), shape_zyx=SHAPE,
                         affine_ras=tuple(np.eye(4).reshape(-1)))  # fmt: skip
    saver = Autosaver(folder)
    saver.mark_dirty(np.ones(SHAPE, np.uint8), state)
    saver.close()
    mirrored = np.diag([-1.0, 1, 1, 1])
    got = resume_session(scan, SHAPE, mirrored, lambda i: pytest.fail("must not ask"),
                         tmp_path / "cache")  # fmt: skip
    assert got.state is None and "another affine" in got.warnings[0]
    got = resume_session(scan, SHAPE, np.eye(4), lambda i: True, tmp_path / "cache")
    assert got.state is None  # the first call set it aside; nothing is lost though
    assert list(tmp_path.glob("scan.medsam-session.other-grid-*"))


def _flip_byte_in_record(journal: Path, record_index: int) -> None:
    """Corrupt one byte inside the payload of change record ``record_index`` (0-based)."""
    data = bytearray(journal.read_bytes())
    starts = [i for i in range(len(data)) if data[i : i + 4] == b"MSJR"]
    at = starts[record_index] + 20
    data[at] ^= 0xFF
    journal.write_bytes(bytes(data))


def test_journal_damaged_in_the_middle_reports_what_was_dropped_and_is_kept(tmp_path):
    """Item 6: restore up to the break, say which changes were dropped, keep the journal."""
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"x")
    folder = session_dir_for(scan, cache_root=tmp_path / "cache")
    labels, history = np.zeros(SHAPE, np.uint8), {}
    saver = Autosaver(folder, snapshot_interval_s=3600)
    for k in range(1, 11):
        labels[k % 6, k, :] = k
        history[k] = labels.copy()
        saver.mark_dirty(labels, _state(scan, k))
    assert saver.flush(10)
    saver.close(snapshot=False)
    (journal,) = folder.glob("journal-*.bin")
    _flip_byte_in_record(journal, 5)  # change 6 of 10
    damaged = journal.read_bytes()
    got = restore_report(folder)
    np.testing.assert_array_equal(got.labels_zyx, history[5])
    text = " ".join(got.notes)
    assert "damaged" in text and "generations 7..10" in text and "5 saved change(s) are lost" in text
    resumed = resume_session(scan, SHAPE, None, lambda i: True, tmp_path / "cache")
    assert any("damaged" in w and "kept in" in w for w in resumed.warnings)
    assert any("only in part" in w and "5 saved change(s) are lost" in w for w in resumed.warnings)
    _keep_editing(folder, resumed.labels_zyx, scan)  # the next snapshots
    (kept,) = tmp_path.glob("scan.medsam-session.damaged-*")
    assert (kept / journal.name).read_bytes() == damaged  # kept aside, byte for byte


def test_torn_last_record_is_not_reported_as_damage(tmp_path):
    """A kill mid-append tears only the last record: that is expected, not a partial restore."""
    folder = tmp_path / "s"
    labels = np.zeros(SHAPE, np.uint8)
    saver = Autosaver(folder, snapshot_interval_s=3600)
    for k in range(1, 4):
        labels[0, 0, k] = k
        saver.mark_dirty(labels, {"active_label": k})
    assert saver.flush(10)
    saver.close(snapshot=False)
    (journal,) = folder.glob("journal-*.bin")
    journal.write_bytes(journal.read_bytes()[:-7])
    got = restore_report(folder)
    assert got.generation == 2 and got.notes == ()


class _FullDisk:
    """Makes journal appends fail with ENOSPC while ``on`` is set."""

    def __init__(self, monkeypatch):
        self.on = False
        real = SegmentWriter.append

        def append(writer, *args):
            if self.on:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(writer.path))
            return real(writer, *args)

        monkeypatch.setattr(SegmentWriter, "append", append)


def test_autosave_failure_and_recovery_are_reported(tmp_path, monkeypatch):
    """Item 5: a full disk changes the health (with the reason) once, and its recovery once."""
    disk = _FullDisk(monkeypatch)
    seen = []
    saver = Autosaver(tmp_path / "s", snapshot_interval_s=3600, on_health=seen.append)
    labels = np.zeros(SHAPE, np.uint8)
    try:
        saver.mark_dirty(labels, {})
        assert saver.flush(10) and saver.health.ok and seen == []
        disk.on = True
        for k in range(3):
            labels[0, 0, k] = 1
            saver.mark_dirty(labels, {})
        assert saver.flush(10)
        assert not saver.health.ok and "No space left on device" in saver.health.reason
        assert len(seen) == 1 and not seen[0].ok  # once, not once per failed change
        assert "NOT autosaved" in seen[0].line and "No space left" in seen[0].line
        disk.on = False
        labels[0, 1, 0] = 2
        saver.mark_dirty(labels, {})
        assert saver.flush(10)
        assert saver.health.ok and len(seen) == 2 and seen[1].ok  # recovery announced
    finally:
        saver.close()
    np.testing.assert_array_equal(restore_report(tmp_path / "s").labels_zyx, labels)


def test_read_only_session_folder_is_a_reported_failure(tmp_path, monkeypatch):
    """Item 5 with a folder that cannot be written (simulated: tests may run as root)."""
    seen = []
    saver = Autosaver(tmp_path / "s", on_health=seen.append)
    real_init = SegmentWriter.__init__

    def read_only(writer, path, header):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(SegmentWriter, "__init__", read_only)
    try:
        saver.mark_dirty(np.ones(SHAPE, np.uint8), {})
        assert saver.flush(10)
        assert not saver.health.ok and "Permission denied" in saver.health.reason
        assert [h.ok for h in seen] == [False]
    finally:
        monkeypatch.setattr(SegmentWriter, "__init__", real_init)
        saver.close()


def test_snapshot_without_recovery_metadata_still_recovers(tmp_path):
    """Snapshots written before the metadata was added (labels only) are still used."""
    scan, folder, latest = _session(tmp_path, changes_after_snapshot=0)
    (snapshot,) = folder.glob("labels-*.npz")
    with np.load(snapshot) as npz:
        labels = np.array(npz["labels_zyx"])
    with open(snapshot, "wb") as f:
        np.savez_compressed(f, labels_zyx=labels)  # the old format
    (folder / "session.json").unlink()
    info = find_session(scan, cache_root=tmp_path / "cache")
    assert info is not None and info.recovered and info.generation == 4
    np.testing.assert_array_equal(restore_report(info).labels_zyx, latest)


def test_cleanup_never_removes_the_only_readable_copy(tmp_path, monkeypatch):
    """Build: a snapshot that reaches the disk damaged must not let cleanup drop the journal."""
    real = np.savez_compressed

    def damaging_disk(f, **arrays):
        real(f, **arrays)
        f.seek(60)
        f.write(b"\xff" * 64)  # inside the first member's data: its CRC fails on read-back

    folder = tmp_path / "s"
    saver = Autosaver(folder, snapshot_interval_s=3600)
    labels = np.zeros(SHAPE, np.uint8)
    try:
        for k in range(3):
            labels[1, k, 2:9] = 1 + k
            saver.mark_dirty(labels, {})
        assert saver.flush(10)
        monkeypatch.setattr(np, "savez_compressed", damaging_disk)
        assert saver.flush(10, snapshot=True)
    finally:
        saver.close(snapshot=False)
    assert list(folder.glob("journal-*.bin")), "the journal was the only readable copy"
    np.testing.assert_array_equal(restore_report(folder).labels_zyx, labels)
