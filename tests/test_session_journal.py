"""The autosave's journal: the sparse diff codec, torn records, corrupt snapshots, foreign journals."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from napari_medsam.session.autosave import Autosaver
from napari_medsam.session.replay import SessionCorruptError
from napari_medsam.session.saved import read_session_info, restore, restore_report
from napari_medsam.session.journal import (
    SegmentWriter,
    apply_runs,
    encode_runs,
    read_segment,
    segment_name,
)
from napari_medsam.session.state import SessionState


@pytest.mark.parametrize("seed", range(5))
def test_runs_turn_the_old_volume_into_the_new_one(seed, monkeypatch):
    from napari_medsam.session import journal

    monkeypatch.setattr(journal, "_CHUNK", 97)  # many chunks, spans that do not align
    monkeypatch.setattr(journal, "_APPLY_CHUNK", 50)
    rng = np.random.default_rng(seed)
    old = (rng.integers(0, 3, 5000) * (rng.random(5000) < 0.3)).astype(np.int16)
    new = old.copy()
    for _ in range(6):
        s = int(rng.integers(0, 5000))
        new[s : s + int(rng.integers(0, 900))] = rng.integers(-2, 4)
    new[rng.random(5000) < 0.02] = 7
    for before in (old, None):
        runs = encode_runs(before, new)
        got = np.zeros_like(new) if before is None else before.copy()
        apply_runs(got, runs)
        np.testing.assert_array_equal(got, new)
        assert runs.lengths.sum() == np.count_nonzero(new != (0 if before is None else before))
        joined = (runs.starts[:-1] + runs.lengths[:-1] == runs.starts[1:]) & (
            runs.values[:-1] == runs.values[1:]
        )
        assert not joined.any()  # maximal runs
    assert len(encode_runs(new, new.copy()).starts) == 0


def _session(tmp_path, n_changes, snapshot_at=()):
    """A session of ``n_changes`` box changes, journaled; returns each change's labels."""
    rng = np.random.default_rng(3)
    labels = np.zeros((6, 20, 24), np.uint8)
    history = {}
    saver = Autosaver(tmp_path / "s", snapshot_interval_s=3600)
    try:
        for k in range(1, n_changes + 1):
            z, y, x = rng.integers(6), rng.integers(14), rng.integers(18)
            labels[z, y : y + 6, x : x + 6] = k % 5
            history[k] = labels.copy()
            saver.mark_dirty(labels, SessionState(active_label=k))
            if k in snapshot_at:
                assert saver.flush(timeout=10, snapshot=True)
        assert saver.flush(timeout=10)
    finally:
        saver.close(snapshot=False)  # the files as a crash leaves them
    return tmp_path / "s", history


def _last_segment(session_dir):
    return max(session_dir.glob("journal-*.bin"), key=lambda p: p.name)


def test_a_torn_last_record_is_dropped_and_everything_before_it_restored(tmp_path):
    session_dir, history = _session(tmp_path, 10)
    assert not list(session_dir.glob("labels-*.npz"))  # the journal holds all 10 changes
    segment = _last_segment(session_dir)
    _, records, torn = read_segment(segment)
    assert [r.seq for r in records] == list(range(1, 11)) and not torn
    intact = segment.read_bytes()
    cases = {
        "cut short": intact[:-3],
        "last byte flipped": intact[:-1] + bytes([intact[-1] ^ 0xFF]),
        "garbage after": intact + b"\x00garbage",
    }
    for what, data in cases.items():
        segment.write_bytes(data)
        expected = 10 if what == "garbage after" else 9
        labels, state = restore(session_dir)
        np.testing.assert_array_equal(labels, history[expected], err_msg=what)
        assert state.active_label == expected and read_session_info(session_dir).generation == (
            expected
        )
    segment.write_bytes(intact[: len(intact) // 3])  # a kill in the middle of the first records
    labels, state = restore(session_dir)
    np.testing.assert_array_equal(labels, history[state.active_label])


def test_a_corrupt_snapshot_falls_back_to_the_previous_one_then_fails_clearly(tmp_path, caplog):
    session_dir, history = _session(tmp_path, 12, snapshot_at=(4, 8))
    pointer = json.loads((session_dir / "session.json").read_text())
    assert [b["generation"] for b in pointer["bases"]] == [8, 4]  # newest, fallback
    newest, fallback = session_dir / "labels-00000008.npz", session_dir / "labels-00000004.npz"
    newest.write_bytes(b"not a zip file")
    labels, state = restore(session_dir)  # snapshot 4 + the journal from 5 to 12
    np.testing.assert_array_equal(labels, history[12])
    assert state.active_label == 12
    report = restore_report(session_dir)  # the damage is named, and nothing is called lost
    assert report.complete and "labels-00000008.npz" in " ".join(report.notes)
    fallback.write_bytes(b"")
    before = sorted(p.name for p in session_dir.iterdir())
    # both snapshots damaged: a clear error, or a partial restore that names both damaged files
    with caplog.at_level("WARNING"):
        try:
            restore(session_dir)
        except SessionCorruptError as err:
            assert re.search(r"labels-00000008\.npz.*labels-00000004\.npz", str(err))
        else:
            assert re.search(r"labels-00000008\.npz.*labels-00000004\.npz", caplog.text)
    assert sorted(p.name for p in session_dir.iterdir()) == before  # nothing deleted


def test_journals_of_another_session_or_shape_are_ignored(tmp_path):
    session_dir, history = _session(tmp_path, 5)
    lineage = json.loads((session_dir / "session.json").read_text())["lineage"]
    other, _ = _session(tmp_path / "other", 7)
    foreign = _last_segment(other)  # another autosaver's journal, records 1..7
    shutil.copy(foreign, session_dir / foreign.name)
    shutil.copy(foreign, session_dir / segment_name(lineage, 5))  # renamed as if ours
    wrong_shape = SegmentWriter(
        session_dir / segment_name(lineage, 6),
        {"lineage": lineage, "base": 5, "shape_zyx": [1, 2, 3], "dtype": "|u1"},
    )
    wrong_shape.append(6, 5, encode_runs(None, np.ones(6, np.uint8)), {"active_label": 6}, 0.0)
    wrong_shape.close()
    labels, state = restore(session_dir)
    np.testing.assert_array_equal(labels, history[5])
    assert state.active_label == 5 and read_session_info(session_dir).generation == 5


def test_the_next_autosaver_supersedes_the_old_lineage_and_tidies_up(tmp_path):
    session_dir, history = _session(tmp_path, 3)
    labels, _ = restore(session_dir)
    labels[0] = 9
    saver = Autosaver(session_dir, snapshot_interval_s=3600)
    try:
        assert saver.mark_dirty(labels, SessionState(active_label=4)) == 4
        assert saver.flush(timeout=10)
        np.testing.assert_array_equal(restore(session_dir)[0], labels)
    finally:
        saver.close()
    names = sorted(p.name for p in session_dir.iterdir())
    assert names == ["labels-00000004.npz", "session.json"]


def test_a_version_1_session_still_restores(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    labels = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    np.savez_compressed(d / "labels-00000003.npz", labels_zyx=labels)
    (d / "session.json").write_text(
        json.dumps(
            {
                "format": "napari-medsam-session",
                "version": 1,
                "generation": 3,
                "saved_at": 1.0,
                "labels_file": "labels-00000003.npz",
                "shape_zyx": [2, 2, 2],
                "dtype": "uint8",
                "scan": None,
                "state": SessionState(active_label=7).to_dict(),
            }
        )  # fmt: skip
    )
    info = read_session_info(d)
    assert (info.generation, info.shape_zyx, info.saved_at) == (3, (2, 2, 2), 1.0)
    got, state = restore(d)
    np.testing.assert_array_equal(got, labels)
    assert state.active_label == 7
