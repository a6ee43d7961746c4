"""Where a scan's session lives: restore it on opening, autosave it on every change.

Used by :class:`napari_medsam._qt.session_view.Session3D`; GUI thread only (the
:class:`~napari_medsam.session.Autosaver` writes on its own daemon thread).
The decisions are Qt-free (:func:`napari_medsam.session.resume.resume_session`,
:attr:`Autosaver.health`); this face shows the questions, lines and notifications.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject, Signal, Slot

from napari_medsam.session import (
    Autosaver,
    LabelRegistry,
    SessionInfo,
    SessionState,
    session_dir_for,
)
from napari_medsam.session.autosave import SaveHealth
from napari_medsam.session.resume import resume_session

logger = logging.getLogger(__name__)


def scan_path(image) -> str | None:
    """The file an image layer was read from (our reader's metadata, else napari's source)."""
    path = (image.metadata or {}).get("source_path")
    if not path:
        path = getattr(getattr(image, "source", None), "path", None)
    return str(path) if path else None


class _HealthRelay(QObject):
    """Carries the saver thread's health changes to the GUI thread (queued signal)."""

    changed = Signal(object)

    def __init__(self, files: SessionFiles) -> None:
        super().__init__()
        self._files = files
        self.changed.connect(self._on_changed)

    @Slot(object)
    def _on_changed(self, health: SaveHealth) -> None:
        saver = self._files.saver
        if saver is not None and health.session_dir == saver.session_dir:  # not a closed scan's
            self._files.show_health(health)


class SessionFiles:
    """The autosaved session of one scan (nothing is saved for images not read from a file).

    ``show_line`` (set by the widget) shows the one-line session status in the dock.
    """

    def __init__(self) -> None:
        self.path: str | None = None
        self.saver: Autosaver | None = None
        self.show_line: Callable[[str], None] = lambda text: None
        self.show_status: Callable[[str], None] = lambda text: None  # the widget's status line
        self.status_warning = ""  # kept on the status line while the autosave fails
        self.line = "Session: not saved (no scan file)."
        self._relay = _HealthRelay(self)
        self._warned = False

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
        affine = (image.metadata or {}).get("affine_ras")
        state = None
        if path:
            resumed = resume_session(path, shape, affine, ask)
            for text in resumed.warnings:
                show_warning(text)
            for text in resumed.infos:
                show_info(text)
            if resumed.state is not None:
                labels.data = resumed.labels_zyx.astype(labels.data.dtype, copy=False)
                state = resumed.state
        restored = state is not None
        if state is None:
            registry = (LabelRegistry.load_sidecar(path) if path else None) or LabelRegistry()
            state = SessionState(scan_path=path, registry=registry)
        state.scan_path, state.shape_zyx = path, shape
        if affine is not None:
            state.affine_ras = tuple(float(v) for v in np.asarray(affine, float).reshape(-1))
        self._warned = False
        where = "autosaves beside the scan" if path else "not saved (no scan file)"
        self._set_line(f"Session: {where}. Hover here for help.")
        return state, restored

    def _set_line(self, text: str) -> None:
        self.line = text
        self.show_line(text)

    def show_health(self, health: SaveHealth) -> None:
        """Show an autosave failure (line + one notification) or its recovery (GUI thread)."""
        self._set_line(health.line)
        if not health.ok and not self._warned:
            self._warned = True
            self.status_warning = f"autosave FAILED: {health.reason}"
            self.show_status("")
            show_warning(f"MedSAM: the session is not being autosaved: {health.reason}")
        elif health.ok and self._warned:
            self._warned = False
            self.status_warning = ""
            self.show_status("autosave works again")
            show_info(f"MedSAM: autosave works again ({health.session_dir})")

    def autosave(self, labels_zyx: np.ndarray, state: SessionState) -> None:
        """Schedule a background save of this snapshot (the saver starts on the first change)."""
        if not self.path:
            return
        try:
            if self.saver is None:
                on_health = self._relay.changed.emit  # from the saver thread, queued to the GUI
                self.saver = Autosaver(session_dir_for(self.path), on_health=on_health)
                if self.saver.set_aside_to is not None:
                    show_warning(
                        "MedSAM: a damaged saved session was found and kept in "
                        f"{self.saver.set_aside_to}"
                    )
                self._set_line(self.saver.health.line)
            self.saver.mark_dirty(labels_zyx, state)
        except (OSError, RuntimeError) as exc:
            logger.warning("MedSAM: cannot autosave the session: %s", exc)
            self.show_health(SaveHealth(False, f"cannot start: {exc}", Path(self.path)))

    def close(self) -> None:
        """Save what is pending and stop the saver."""
        if self.saver is not None:
            self.saver.close()
            self.saver = None
