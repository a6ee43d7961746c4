"""Reopening a scan: find its saved session, ask, restore, and never lose one (Qt-free).

:func:`resume_session` is the whole decision the app makes when a scan is
opened; the widget only shows the question and the messages. The rules:

- a session folder whose files cannot be read at all is set aside
  (``<folder>.unreadable-<time>``), and the user is told where;
- a session saved for another grid (voxel shape or affine) is set aside;
- otherwise the user is asked, with everything that is unusual in the
  question: a scan with another timestamp or size, a ``session.json`` rebuilt
  from the snapshot and journal, changes that cannot be restored;
- declined: set aside (``.declined-<time>``), never deleted;
- restored with any problem: the restored state is written as a fresh
  session and the old files are kept aside (``.damaged-<time>``), with what was
  lost in the message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_medsam.session.recovery import REBUILT, holds_session_files, set_aside
from napari_medsam.session.state import SessionState
from napari_medsam.session.replay import SessionCorruptError
from napari_medsam.session.saved import SessionInfo, find_session, read_session_info, restore_report
from napari_medsam.session.store import _scan_identity, candidate_dirs, write_session

logger = logging.getLogger(__name__)


@dataclass
class Resumed:
    """What reopening a scan gave.

    Attributes
    ----------
    labels_zyx : np.ndarray or None
        The restored labels (None: start empty).
    state : SessionState or None
        The restored state (None: start a new one).
    infos : list of str
        Messages for the user (restored, set aside where).
    warnings : list of str
        Problems the user must know about (lost changes, unreadable sessions).
    """

    labels_zyx: np.ndarray | None = None
    state: SessionState | None = None
    infos: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "an unknown time"


def restore_question(info: SessionInfo, scan_path: str | Path | None = None) -> str:
    """The text of the "restore?" question, naming everything unusual about the session."""
    names = ", ".join(info.label_names.values()) or "no named objects"
    lines = [f"A session of this scan was saved on {_when(info.saved_at)} ({names})."]
    if not info.scan_matches:
        saved = info.saved_scan or {}
        now = _scan_identity(str(scan_path)) if scan_path else {}
        lines.append(
            "This session was saved for a scan with another timestamp/size "
            f"(then {saved.get('size', '?')} bytes, modified {_ns(saved.get('mtime_ns'))}; "
            f"now {now.get('size', '?')} bytes, modified {_ns(now.get('mtime_ns'))}). "
            "Its voxel grid matches."
        )
    lines += list(info.notes)
    lines.append("Restore anyway?" if (not info.scan_matches or info.notes) else "Restore it?")
    return "\n".join(lines)


def _ns(value) -> str:
    return _when(value / 1e9) if isinstance(value, int) else "?"


def _grid_problem(
    info: SessionInfo, shape_zyx: Sequence[int], affine_ras: np.ndarray | None
) -> str | None:
    if tuple(info.shape_zyx) != tuple(shape_zyx):
        return f"voxel shape {tuple(info.shape_zyx)}, the scan's is {tuple(shape_zyx)}"
    if (
        info.affine_ras is not None
        and affine_ras is not None
        and not np.allclose(info.affine_ras, np.asarray(affine_ras, float), atol=1e-3)
    ):
        return "another affine (the scan was resampled or reoriented)"
    return None


def _aside(session_dir: Path, reason: str, result: Resumed) -> Path | None:
    try:
        return set_aside(session_dir, reason)
    except OSError as exc:  # the files stay where they are; a new session goes to the cache
        result.warnings.append(f"MedSAM: could not set {session_dir} aside ({exc})")
        return None


def resume_session(
    scan_path: str | Path,
    shape_zyx: Sequence[int],
    affine_ras: np.ndarray | None,
    ask: Callable[[SessionInfo], bool],
    cache_root: str | Path | None = None,
) -> Resumed:
    """Offer the saved session of a scan and restore it if ``ask`` agrees.

    Parameters
    ----------
    scan_path : path
    shape_zyx : 3 ints
        Shape of the labels the scan gets.
    affine_ras : (4, 4) array or None
        The scan's affine, to check the saved session's grid.
    ask : callable
        ``ask(info) -> bool`` (the dialog; build its text with :func:`restore_question`).
    cache_root : path, optional
        See :func:`~napari_medsam.session.store.candidate_dirs`.
    """
    result = Resumed()
    for folder in candidate_dirs(scan_path, cache_root):
        if holds_session_files(folder) and read_session_info(folder, scan_path) is None:
            kept = _aside(folder, "unreadable", result)
            result.warnings.append(
                f"MedSAM: the saved session in {folder} cannot be read; its files are kept "
                f"in {kept or folder}. Starting a new session."
            )
    info = find_session(scan_path, cache_root)
    if info is None:
        return result
    problem = _grid_problem(info, shape_zyx, affine_ras)
    if problem is not None:
        kept = _aside(info.session_dir, "other-grid", result)
        result.warnings.append(
            f"MedSAM: the saved session in {info.session_dir} is for another grid ({problem}); "
            f"it is kept in {kept or info.session_dir}. Starting a new session."
        )
        return result
    if not ask(info):
        kept = _aside(info.session_dir, "declined", result)
        result.infos.append(f"MedSAM: the saved session is kept in {kept or info.session_dir}.")
        return result
    try:
        got = restore_report(info)
    except (SessionCorruptError, OSError, ValueError) as exc:
        kept = _aside(info.session_dir, "unreadable", result)
        result.warnings.append(
            f"MedSAM: the saved session cannot be restored ({exc}); its files are kept in "
            f"{kept or info.session_dir}. Starting a new session."
        )
        return result
    result.labels_zyx, result.state = got.labels_zyx, got.state
    notes = tuple(dict.fromkeys(info.notes + got.notes))
    if not (notes or info.recovered):
        result.infos.append(f"MedSAM: restored the session saved in {info.session_dir}")
        return result
    # keep the damaged files as they are, and start a fresh, intact session from what came back
    kept = _aside(info.session_dir, "damaged", result)
    if kept is not None:
        try:
            write_session(info.session_dir, got.generation, got.labels_zyx, got.state.to_dict())
        except OSError as exc:
            result.warnings.append(f"MedSAM: could not save the restored session ({exc})")
    lost = not got.complete or not all(REBUILT in n for n in info.notes if n not in got.notes)
    how = "only in part" if lost else "with every saved change, from damaged files"
    result.warnings.append(
        f"MedSAM: restored the session {how}: {'; '.join(notes)}. "
        f"The damaged files are kept in {kept or info.session_dir}."
    )
    return result
