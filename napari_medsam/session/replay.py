"""Replaying a saved session: the newest readable base plus its journal, and what was lost.

Used by :mod:`.store`. A *base* is a snapshot (or an all-zero volume at the
start of a lineage) with the session state at its generation; the journal
segments of the pointer's lineage hold the changes after it. Every problem on
the way (an unreadable snapshot, a damaged journal, a missing change) becomes
a sentence in :attr:`Replayed.notes`, so that a partial restore says what it
lost. A torn last record (the change being written when the app was killed)
is expected and costs only that change; it is not a note.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_medsam.session.journal import apply_runs, parse_segment_name, read_segment_report

logger = logging.getLogger(__name__)


class SessionCorruptError(ValueError):
    """A saved session exists but none of its snapshots can be read."""


@dataclass(frozen=True)
class Replayed:
    """The latest state of a session that could be rebuilt.

    Attributes
    ----------
    generation : int
        The last change replayed.
    saved_at : float
        POSIX time of that change's save.
    state : dict
        ``SessionState.to_dict()`` after it.
    labels_zyx : np.ndarray or None
        (Z, Y, X) labels after it (None when only the journal was followed).
    notes : tuple of str
        What went wrong, one sentence each (a fall back to an older snapshot included).
    complete : bool
        Every saved change came back (false when ``notes`` name something lost).
    """

    generation: int
    saved_at: float
    state: dict
    labels_zyx: np.ndarray | None
    notes: tuple[str, ...] = ()
    complete: bool = True


def segments(session_dir: Path, pointer: dict) -> list[tuple[int, Path]]:
    """``(base generation, path)`` of the pointer lineage's journal segments, in order."""
    found = []
    for path in session_dir.glob(f"journal-{pointer['lineage']}-*.bin"):
        parsed = parse_segment_name(path.name)
        if parsed and parsed[0] == pointer["lineage"]:
            found.append((parsed[1], path))
    return sorted(found)


def load_base(session_dir: Path, base: dict, pointer: dict) -> np.ndarray:
    """The (Z, Y, X) labels of a base (zeros for a lineage's start).

    Raises
    ------
    OSError, ValueError
        The snapshot is missing, or damaged (the message says how).
    """
    shape, dtype = pointer["shape_zyx"], pointer["dtype"]
    if base["labels_file"] is None:
        return np.zeros(shape, dtype)
    path = _snapshot_path(session_dir, base)
    try:
        with np.load(path, allow_pickle=False) as npz:
            labels_zyx = np.array(npz["labels_zyx"])
    except (KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"damaged ({exc})") from exc
    _check_layout(labels_zyx.shape, labels_zyx.dtype, pointer)
    return labels_zyx


def check_base(session_dir: Path, base: dict, pointer: dict) -> None:
    """Check that :func:`load_base` can read a base, without keeping its labels.

    Reads the snapshot's zip checksums (every byte, decompressed on the fly)
    and the array's header, so a damaged snapshot is named before the user is
    asked, not only once the restore fails over to an older one.

    Raises
    ------
    OSError, ValueError
        As :func:`load_base`.
    """
    if base["labels_file"] is None:
        return
    path = _snapshot_path(session_dir, base)
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise ValueError(f"damaged (the checksum of {bad} in it fails)")
            with zf.open("labels_zyx.npy") as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)  # fmt: skip
                shape, _, dtype = read(f)
    except (KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"damaged ({exc})") from exc
    _check_layout(shape, dtype, pointer)


def _snapshot_path(session_dir: Path, base: dict) -> Path:
    path = session_dir / base["labels_file"]
    if not path.is_file():
        raise FileNotFoundError("missing")
    if not zipfile.is_zipfile(path):
        raise ValueError("damaged (not a .npz file)")
    return path


def _check_layout(shape, dtype, pointer: dict) -> None:
    if tuple(shape) != tuple(pointer["shape_zyx"]) or np.dtype(dtype) != pointer["dtype"]:
        raise ValueError(
            f"holds {tuple(shape)} {np.dtype(dtype)}, not {pointer['shape_zyx']} {pointer['dtype']}"
        )


def _records(session_dir: Path, pointer: dict, generation: int, notes: list[str]):
    """``(segment path, record)`` of the pointer lineage's journal, from ``generation`` on."""
    found = segments(session_dir, pointer) if pointer["lineage"] else []
    for i, (_, path) in enumerate(found):
        if i + 1 < len(found) and found[i + 1][0] <= generation:
            continue  # every record of this segment is in the base already
        got = read_segment_report(path)
        header = got.header
        if (
            header is None
            or header.get("lineage") != pointer["lineage"]
            or (tuple(header.get("shape_zyx") or ()), header.get("dtype"))
            != (pointer["shape_zyx"], pointer["dtype"].str)
        ):
            logger.warning("ignoring the journal %s: not of this session", path)
            notes.append(f"the journal {path.name} has an unreadable header: its changes are lost")
            continue
        yield from ((path, rec) for rec in got.records)
        if got.damaged_at is not None:
            after = (
                f"{len(got.dropped_seqs)} later change(s) in it could not be replayed "
                f"(generations {min(got.dropped_seqs)}..{max(got.dropped_seqs)})"
                if got.dropped_seqs
                else "the change there could not be replayed"
            )
            last = got.records[-1].seq if got.records else header.get("base")
            notes.append(f"the journal {path.name} is damaged at byte {got.damaged_at} "
                         f"(after generation {last}): {after}")  # fmt: skip
            return  # later segments cannot apply on a state that misses these changes
        if got.torn:
            logger.info("dropped the incomplete last record of %s", path)


def _last_seq(session_dir: Path, pointer: dict) -> int | None:
    """The newest generation any readable journal record of the lineage names."""
    seqs = []
    for _, path in segments(session_dir, pointer) if pointer["lineage"] else []:
        got = read_segment_report(path)
        seqs += [rec.seq for rec in got.records] + list(got.dropped_seqs)
    return max(seqs, default=None)


def replay_journal(session_dir, pointer, base, labels_zyx) -> Replayed:
    """Apply the journal records after ``base`` to ``labels_zyx`` (None: only follow them)."""
    generation, saved_at, state = base["generation"], base["saved_at"], base["state"]
    flat = None if labels_zyx is None else labels_zyx.reshape(-1)
    notes: list[str] = []
    for path, rec in _records(session_dir, pointer, generation, notes):
        if rec.seq <= generation:
            continue
        try:
            if rec.prev != generation:
                raise ValueError(f"the change after generation {generation} is missing")
            if flat is not None:
                apply_runs(flat, rec.runs(pointer["dtype"]))  # checks before writing
        except ValueError as exc:
            logger.warning("journal %s: stopped after generation %d: %s", path, generation, exc)
            notes.append(f"the journal {path.name} stops making sense after generation "
                         f"{generation} ({exc}): later changes were not replayed")  # fmt: skip
            break
        generation, saved_at = rec.seq, rec.time
        state = rec.state if rec.state is not None else state
    if state is None:
        raise ValueError("its journal holds no change")
    return Replayed(generation, saved_at, state, labels_zyx, tuple(notes), complete=not notes)


def replay(session_dir: Path, pointer: dict, load_labels: bool) -> Replayed:
    """The latest state of a session: the newest readable base plus its journal.

    Raises
    ------
    SessionCorruptError
        No base can be read (the message names each file and why).
    """
    problems = []
    bases = list(pointer["bases"])
    found = segments(session_dir, pointer) if pointer.get("lineage") else []
    if found and all(b["labels_file"] is not None for b in bases):
        # last resort when every snapshot is gone: the journal's changes on an empty volume
        state = next((b["state"] for b in bases if b.get("state") is not None), None)
        bases.append({"generation": found[0][0], "labels_file": None, "state": state,
                      "saved_at": 0.0, "partial": True})  # fmt: skip
    for base in bases:
        name = base["labels_file"] or "the journal"
        try:
            if load_labels:
                labels_zyx = load_base(session_dir, base, pointer)
            else:
                check_base(session_dir, base, pointer)
                labels_zyx = None
            replayed = replay_journal(session_dir, pointer, base, labels_zyx)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            problems.append(f"{name}: {exc}")
            continue
        notes, complete = list(replayed.notes), replayed.complete
        why = f" ({'; '.join(problems)})" if problems else ""
        if base.get("partial"):
            complete = False
            notes.insert(0, f"no snapshot can be read{why}: only the changes after generation "
                         f"{base['generation']} (from the journal, on an empty volume) came back")  # fmt: skip
        elif problems:
            notes.insert(0, f"restored from an older snapshot{why}")
        if problems:
            logger.warning("session %s: %s", session_dir, notes[0])
        newest = _last_seq(session_dir, pointer) if notes else None
        if newest is not None and newest > replayed.generation:
            complete = False
            notes.append(f"restored generation {replayed.generation} of {newest}: "
                         f"{newest - replayed.generation} saved change(s) are lost")  # fmt: skip
        return Replayed(replayed.generation, replayed.saved_at, replayed.state,
                        replayed.labels_zyx, tuple(notes), complete)  # fmt: skip
    raise SessionCorruptError(
        f"The autosaved session in {session_dir} cannot be read ({'; '.join(problems)}). "
        "Its files are left as they are."
    )
