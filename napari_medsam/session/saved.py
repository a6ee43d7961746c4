"""Finding and restoring a saved session: what a session folder holds, and loading it.

The folder's layout and how it is written are in :mod:`napari_medsam.session.store`;
this module reads it: :func:`find_session` (the newest session of a scan, beside it or
in the user cache), :class:`SessionInfo` (what the restore question shows),
:func:`restore_report` / :func:`restore`, and :func:`discard` (set aside, never deleted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_medsam.session.recovery import REBUILT, holds_session_files, set_aside
from napari_medsam.session.replay import SessionCorruptError, replay
from napari_medsam.session.state import SessionState
from napari_medsam.session.store import (
    POINTER,
    _scan_identity,
    candidate_dirs,
    read_pointer_or_recover,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionInfo:
    """A saved session found for a scan.

    Attributes
    ----------
    session_dir : Path
    generation : int
        The last change that can be restored (snapshot plus journal).
    saved_at : float
        POSIX time of that change's save.
    shape_zyx : tuple of int
    scan_matches : bool
        False when the scan's size or modification time differ from when the
        session was saved (the file changed, or is a copy: ask before restoring).
    label_names : dict
        id -> name of the saved labels, for the "restore?" question.
    notes : tuple of str
        What is wrong with the saved files and what a restore would lose (empty
        when the session is intact).
    recovered : bool
        ``session.json`` was unreadable or missing and was rebuilt from the files.
    saved_scan : dict or None
        ``{"path", "size", "mtime_ns"}`` of the scan when the session was saved.
    affine_ras : np.ndarray or None
        (4, 4) affine of the scan the session was saved for, when recorded.
    """

    session_dir: Path
    generation: int
    saved_at: float
    shape_zyx: tuple[int, ...]
    scan_matches: bool
    label_names: dict[int, str]
    notes: tuple[str, ...] = ()
    recovered: bool = False
    saved_scan: dict | None = None
    affine_ras: np.ndarray | None = field(default=None, compare=False)
    pointer: dict | None = field(default=None, repr=False, compare=False)


def read_session_info(
    session_dir: str | Path, scan_path: str | Path | None = None
) -> SessionInfo | None:
    """Describe the session saved in a folder (reads the journal, not the volumes).

    A missing or unreadable ``session.json`` is rebuilt from the folder's
    snapshots and journal (``recovered``, with ``notes``).

    Returns None when the folder holds nothing that can be restored (see
    :func:`~napari_medsam.session.recovery.holds_session_files` for whether it
    holds files at all).
    """
    session_dir = Path(session_dir)
    pointer, notes = read_pointer_or_recover(session_dir)
    if pointer is None:
        if notes:
            logger.warning("session %s: %s", session_dir, "; ".join(notes))
        return None
    try:
        latest = replay(session_dir, pointer, load_labels=False)
    except SessionCorruptError as exc:
        logger.warning("%s", exc)
        return None
    saved_scan = pointer.get("scan") or {}
    now_scan = _scan_identity(str(scan_path)) if scan_path else None
    matches = now_scan is None or all(
        saved_scan.get(k) == now_scan.get(k) for k in ("size", "mtime_ns")
    )
    labels = latest.state.get("labels") or {}
    names = {int(d["id"]): str(d["name"]) for d in labels.get("labels", [])}
    affine = latest.state.get("affine_ras")
    return SessionInfo(
        session_dir,
        latest.generation,
        latest.saved_at,
        pointer["shape_zyx"],
        bool(matches),
        names,
        tuple(notes) + latest.notes,
        bool(pointer.get("recovered")),
        saved_scan or None,
        None if affine is None else np.asarray(affine, float).reshape(4, 4),
        pointer,
    )


def find_session(scan_path: str | Path, cache_root: str | Path | None = None) -> SessionInfo | None:
    """The most recent saved session of a scan (beside it or in the cache), or None."""
    found = [read_session_info(d, scan_path) for d in candidate_dirs(scan_path, cache_root)]
    found = [f for f in found if f is not None]
    return max(found, key=lambda f: f.saved_at) if found else None


@dataclass(frozen=True)
class Restored:
    """A restored session.

    Attributes
    ----------
    labels_zyx : np.ndarray
        (Z, Y, X) labels after the last change restored.
    state : SessionState
    generation : int
    notes : tuple of str
        What went wrong on the way (empty: the files were intact).
    complete : bool
        Every saved change came back, whatever ``notes`` say was repaired.
    """

    labels_zyx: np.ndarray
    state: SessionState
    generation: int
    notes: tuple[str, ...]
    complete: bool = True


def restore_report(session: SessionInfo | str | Path) -> Restored:
    """Load a saved session and say what, if anything, could not be restored.

    Parameters
    ----------
    session : SessionInfo or path
        From :func:`find_session`, or a session folder.

    Raises
    ------
    SessionCorruptError
        No snapshot of the session can be read (the message names the files).
    FileNotFoundError
        The folder holds no session.
    """
    session_dir = session.session_dir if isinstance(session, SessionInfo) else Path(session)
    pointer = session.pointer if isinstance(session, SessionInfo) else None
    notes: list[str] = []
    if pointer is None:
        pointer, notes = read_pointer_or_recover(session_dir)
    elif pointer.get("recovered") and isinstance(session, SessionInfo):
        notes = [n for n in session.notes if POINTER in n][:1]
    if pointer is None:
        raise FileNotFoundError(f"no readable {POINTER} in {session_dir}")
    latest = replay(session_dir, pointer, load_labels=True)
    state = SessionState.from_dict(latest.state)
    notes = tuple(notes) + latest.notes
    repairs_only = all(REBUILT in note for note in notes[: len(notes) - len(latest.notes)])
    complete = latest.complete and repairs_only
    return Restored(latest.labels_zyx, state, latest.generation, notes, complete)


def restore(session: SessionInfo | str | Path) -> tuple[np.ndarray, SessionState]:
    """Load a saved session: its newest readable snapshot plus every complete journal record.

    Returns
    -------
    labels_zyx : np.ndarray
        (Z, Y, X) labels after the last change saved.
    state : SessionState
        The session state after that change.

    See :func:`restore_report` (which also says what could not be restored) for
    the parameters and errors.
    """
    got = restore_report(session)
    return got.labels_zyx, got.state


def discard(session_dir: str | Path) -> Path | None:
    """Set a saved session aside (the user declined it): renamed, never deleted.

    Returns
    -------
    Path or None
        The folder's new name; None when there was nothing to set aside.
    """
    session_dir = Path(session_dir)
    if not holds_session_files(session_dir):
        return None
    return set_aside(session_dir, "discarded")
