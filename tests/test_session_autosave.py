"""Session state round trip, atomic autosave, find/restore, and a real crash (SIGKILL) mid-session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from napari_medsam.session.autosave import (
    Autosaver,
    candidate_dirs,
    discard,
    find_session,
    read_session_info,
    restore,
    session_dir_for,
    write_session,
)
from napari_medsam.session.labels import LabelRegistry
from napari_medsam.session.state import SessionState
from napari_medsam.types import SlicePrompt


def _state(scan_path=None):
    reg = LabelRegistry()
    reg.add("liver")
    reg.add("spleen")
    reg.set_locked(1)
    state = SessionState(scan_path=scan_path, shape_zyx=(4, 8, 8), registry=reg, active_label=5)
    state.set_prompt(
        5,
        2,
        SlicePrompt(
            np.array([[1.5, 2.0], [3, 4]], np.float32),
            np.array([1, 0]),
            np.array([0, 0, 5, 6], np.float32),
            np.ones((256, 256), np.float32),
        ),
    )
    state.set_prompt(1, 0, SlicePrompt(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), None))
    state.mark_corrected(5, 2)
    state.mark_corrected(5, 3)
    state.window = (-160.0, 240.0)
    state.model = "LiteMedSAM"
    return state


def test_state_round_trip_through_json():
    state = _state("/x/scan.nii.gz")
    back = SessionState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back.registry == state.registry and back.registry.locked_ids() == {1}
    assert back.corrected_zs(5) == {2, 3} and back.corrected_zs(1) == frozenset()
    p = back.get_prompt(5, 2)
    np.testing.assert_array_equal(p.points_yx, [[1.5, 2.0], [3, 4]])
    np.testing.assert_array_equal(p.point_labels, [1, 0])
    np.testing.assert_array_equal(p.box_yxyx, [0, 0, 5, 6])
    assert p.prev_logits_lowres is None  # logits are not persisted
    assert back.get_prompt(1, 0).box_yxyx is None and back.get_prompt(1, 0).is_empty
    assert (back.window, back.model, back.active_label, back.shape_zyx) == (
        (-160.0, 240.0), "LiteMedSAM", 5, (4, 8, 8),
    )  # fmt: skip
    back.forget_label(5)
    assert back.get_prompt(5, 2) is None and back.corrected_zs(5) == frozenset()
    with pytest.raises(ValueError, match="newer"):
        SessionState.from_dict({"version": 99})


def test_write_find_restore_and_discard(tmp_path):
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"not really a nifti")
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1, 2:4, 2:4] = 5
    d = session_dir_for(scan, cache_root=tmp_path / "cache")
    assert d == tmp_path / "scan.medsam-session"
    write_session(d, 1, labels, _state(str(scan)).to_dict())
    labels[2] = 1
    write_session(d, 2, labels, _state(str(scan)).to_dict())
    assert sorted(p.name for p in d.iterdir()) == ["labels-00000002.npz", "session.json"]
    info = find_session(scan, cache_root=tmp_path / "cache")
    assert info.generation == 2 and info.scan_matches and info.shape_zyx == (4, 8, 8)
    assert info.label_names == {1: "spleen", 5: "liver"}
    got, state = restore(info)
    np.testing.assert_array_equal(got, labels)
    assert got.dtype == np.uint8 and state.corrected_zs(5) == {2, 3}
    os.utime(scan, ns=(0, 0))  # the scan changed since the save
    assert not find_session(scan, cache_root=tmp_path / "cache").scan_matches
    discard(d)
    assert find_session(scan, cache_root=tmp_path / "cache") is None


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root ignores read-only folders"
)
def test_read_only_scan_folder_falls_back_to_cache(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    scan = folder / "scan.nii"
    scan.write_bytes(b"x")
    folder.chmod(0o555)
    try:
        d = session_dir_for(scan, cache_root=tmp_path / "cache")
    finally:
        folder.chmod(0o755)
    assert d == candidate_dirs(scan, tmp_path / "cache")[1] and d.is_dir()


def test_unwritable_scan_folder_falls_back_to_cache(tmp_path, monkeypatch):
    scan = tmp_path / "scan.nii"
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    d = session_dir_for(scan, cache_root=tmp_path / "cache")
    assert d.parent == tmp_path / "cache" and d.name.startswith("scan-") and d.is_dir()


def test_cache_dir_is_found_too(tmp_path):
    scan = tmp_path / "scan.nii"
    cache_dir = candidate_dirs(scan, tmp_path / "cache")[1]
    write_session(cache_dir, 3, np.ones((1, 2, 2), np.int32), SessionState().to_dict())
    info = find_session(scan, cache_root=tmp_path / "cache")
    assert info.session_dir == cache_dir and info.generation == 3


def test_incomplete_session_is_ignored(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "session.json").write_text(
        '{"format": "napari-medsam-session", "labels_file": "labels-1.npz"}'
    )
    assert read_session_info(d) is None
    (d / "session.json").write_text("{truncated")
    assert read_session_info(d) is None


def test_autosaver_saves_in_background_coalesces_and_continues_generations(tmp_path):
    labels = np.zeros((2, 4, 4), np.uint8)
    saver = Autosaver(tmp_path / "s", min_interval_s=0.3)
    try:
        t0 = time.perf_counter()
        for k in range(5):
            labels[0, 0, k % 4] = k + 1
            saver.mark_dirty(labels, SessionState(active_label=k))
        assert time.perf_counter() - t0 < 0.25  # the caller never waits for the disk
        assert saver.flush(timeout=10)
        assert saver.saved_generation == 5 and saver.last_error is None
        got, state = restore(tmp_path / "s")
        np.testing.assert_array_equal(got, labels)
        assert state.active_label == 4
    finally:
        saver.close()
    with pytest.raises(RuntimeError):
        saver.mark_dirty(labels, {})
    again = Autosaver(tmp_path / "s", min_interval_s=0.0)
    try:
        assert again.mark_dirty(labels, SessionState()) == 6
        assert again.flush(timeout=10)
    finally:
        again.close()


def test_autosaver_reports_errors_and_keeps_running(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the session folder should be")
    errors = []
    saver = Autosaver(blocker / "s", min_interval_s=0.0, on_error=errors.append)
    try:
        saver.mark_dirty(np.zeros((1, 2, 2), np.uint8), {})
        saver.flush(timeout=10)
        assert errors and saver.last_error is errors[0] and saver.saved_generation == 0
    finally:
        saver.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from napari_medsam.session.autosave import Autosaver
    from napari_medsam.session.state import SessionState
    from napari_medsam.session.undo import UndoStack

    session_dir = sys.argv[1]
    labels = np.zeros((6, 16, 16), np.uint8)
    state = SessionState(shape_zyx=labels.shape)
    state.registry.add("liver")
    stack = UndoStack()
    saver = Autosaver(session_dir, min_interval_s=0.05)
    for k in range(1000):
        mask = np.zeros((16, 16), bool)
        mask[: k % 16 + 1, : k % 7 + 1] = True
        with stack.group(f"change {k}"):
            stack.paint(labels, k % 6, mask, 5)
        state.active_label = k
        saver.mark_dirty(labels, state)
        print(k, int(labels.sum()), flush=True)
        time.sleep(0.3)  # a user's pace: a change every few tenths of a second
    """
)


def test_restore_after_sigkill_loses_at_most_the_last_change(tmp_path):
    session_dir = tmp_path / "scan.medsam-session"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(session_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sums = {}
    try:
        deadline = time.monotonic() + 60
        while len(sums) < 8 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            k, total = map(int, line.split())
            sums[k] = total
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup runs: a crash
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert len(sums) == 8, proc.stderr.read()
    last = max(sums)
    labels, state = restore(session_dir)
    # the restored session is one of the last two changes, complete and consistent
    assert state.active_label in (last, last - 1)
    assert int(labels.sum()) == sums[state.active_label]
    assert state.registry.name(5) == "liver"
    # a new autosaver in that folder removes a temporary file the kill may have left
    (session_dir / ".labels-00000099.npz.tmp-1-2").write_bytes(b"partial")
    Autosaver(session_dir).close()
    assert not list(session_dir.glob(".*tmp*"))
    assert read_session_info(session_dir).generation == state_generation(session_dir)


def state_generation(session_dir):
    return json.loads((session_dir / "session.json").read_text())["generation"]
