"""Where a scan's session lives: restore it on opening, autosave it on every change.

Used by :class:`napari_medsam._widget_3d.Session3D`; GUI thread only (the
:class:`~napari_medsam.session.Autosaver` writes on its own daemon thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_info, show_warning

from napari_medsam.session import (
    Autosaver,
    LabelRegistry,
    SessionCorruptError,
    SessionInfo,
    SessionState,
    find_session,
    restore,
    session_dir_for,
)

logger = logging.getLogger(__name__)


def set_aside(session_dir) -> Path:
    """Rename an unreadable session folder so a new session never overwrites its files."""
    session_dir = Path(session_dir)
    kept = session_dir.with_name(f"{session_dir.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        session_dir.rename(kept)
    except OSError as exc:
        logger.warning("MedSAM: cannot rename %s: %s", session_dir, exc)
        return session_dir
    return kept


def scan_path(image) -> str | None:
    """The file an image layer was read from (our reader's metadata, else napari's source)."""
    path = (image.metadata or {}).get("source_path")
    if not path:
        path = getattr(getattr(image, "source", None), "path", None)
    return str(path) if path else None


class SessionFiles:
    """The autosaved session of one scan (nothing is saved for images not read from a file)."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.saver: Autosaver | None = None

    def open(self, image, labels, ask: Callable[[SessionInfo], bool]) -> tuple[SessionState, bool]:
        """Start the session of ``image``, restoring a saved one into ``labels`` if ``ask`` agrees.

        Returns
        -------
        state : SessionState
            Restored, or new (label names from a sidecar next to the scan, if any).
        restored : bool
        """
        self.close()
        self.path = path = scan_path(image)
        shape = tuple(labels.data.shape)
        state = None
        info = find_session(path) if path else None
        if info is not None and info.scan_matches and tuple(info.shape_zyx) == shape and ask(info):
            try:
                labels_zyx, state = restore(info)
            except (SessionCorruptError, OSError) as exc:
                kept = set_aside(info.session_dir)
                show_warning(
                    f"MedSAM: the saved session cannot be restored ({exc}); "
                    f"its files are kept in {kept}. Starting a new session."
                )
            else:
                labels.data = labels_zyx.astype(labels.data.dtype, copy=False)
                show_info(f"MedSAM: restored the session saved in {info.session_dir}")
        restored = state is not None
        if state is None:
            registry = (LabelRegistry.load_sidecar(path) if path else None) or LabelRegistry()
            state = SessionState(scan_path=path, registry=registry)
        state.scan_path, state.shape_zyx = path, shape
        return state, restored

    def autosave(self, labels_zyx: np.ndarray, state: SessionState) -> None:
        """Schedule a background save of this snapshot (the saver starts on the first change)."""
        if not self.path:
            return
        try:
            if self.saver is None:
                self.saver = Autosaver(session_dir_for(self.path))
            self.saver.mark_dirty(labels_zyx, state)
        except OSError as exc:
            logger.warning("MedSAM: cannot autosave the session: %s", exc)

    def close(self) -> None:
        """Save what is pending and stop the saver."""
        if self.saver is not None:
            self.saver.close()
            self.saver = None
