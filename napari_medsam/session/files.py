"""Where a scan's session lives: restore it on opening, autosave it on every change.

Qt-free. :class:`SessionFiles` holds the autosaved session of one scan: it asks
whether to restore a saved session (:func:`~napari_medsam.session.resume.resume_session`),
starts the :class:`~napari_medsam.session.Autosaver` on the first change, and turns
the saver's :class:`~napari_medsam.session.autosave.SaveHealth` into one status
line, one warning on failure and one notice on recovery. What it says goes
through callables (``warn``, ``inform``, ``show_line``, ``show_status``): the app
hands it napari's notifications and its dock labels
(:mod:`napari_medsam._qt.files` carries the saver thread's health to the GUI thread).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_medsam.session.autosave import Autosaver, SaveHealth
from napari_medsam.session.labels import LAYER_METADATA_KEY, LabelRegistry
from napari_medsam.session.resume import resume_session
from napari_medsam.session.saved import SessionInfo
from napari_medsam.session.state import SessionState
from napari_medsam.session.store import session_dir_for

logger = logging.getLogger(__name__)


def scan_path(image) -> str | None:
    """The file an image (layer) was read from: our reader's metadata, else its source path.

    ``image`` is anything with a ``metadata`` dict and, optionally, ``source.path``
    (a napari Image layer); no napari import is needed to read them.
    """
    path = (image.metadata or {}).get("source_path")
    if not path:
        path = getattr(getattr(image, "source", None), "path", None)
    return str(path) if path else None


def _quiet(text: str) -> None:
    logger.info("%s", text)


class SessionFiles:
    """The autosaved session of one scan (nothing is saved for images not read from a file).

    Parameters
    ----------
    warn, inform : callable, optional
        Show a warning / a notice to the user (default: the log).

    Attributes
    ----------
    show_line, show_status : callable
        Show the one-line session status, and refresh the main status line.
    on_saver_health : callable
        Handed to the saver, which calls it from its own thread with each
        :class:`SaveHealth`; a GUI replaces it with a relay to its own thread that
        ends in :meth:`saver_health`.
    """

    def __init__(
        self, warn: Callable[[str], None] = _quiet, inform: Callable[[str], None] = _quiet
    ) -> None:
        self.warn, self.inform = warn, inform
        self.path: str | None = None
        self.saver: Autosaver | None = None
        self.show_line: Callable[[str], None] = lambda text: None
        self.show_status: Callable[[str], None] = lambda text: None
        self.on_saver_health: Callable[[SaveHealth], None] = self.saver_health
        self.status_warning = ""  # kept on the status line while the autosave fails
        self.line = "Session: not saved (no scan file)."
        self._warned = False

    def open(
        self,
        path: str | None,
        shape_zyx: tuple[int, ...],
        affine_ras=None,
        ask: Callable[[SessionInfo], bool] = lambda info: False,
    ) -> tuple[SessionState, np.ndarray | None]:
        """Start the session of the scan at ``path``, restoring a saved one if ``ask`` agrees.

        Parameters
        ----------
        path : str or None
            The scan file; None for an image not read from a file (nothing is saved).
        shape_zyx : tuple of int
            (Z, Y, X) of the scan and its labels.
        affine_ras : array-like, optional
            (4, 4) voxel-to-RAS affine of the scan, kept in the session.
        ask : callable
            Whether to restore the saved session it is given.

        Returns
        -------
        state : SessionState
            Restored, or new (label names from a sidecar next to the scan, if any).
        labels_zyx : np.ndarray or None
            (Z, Y, X) restored labels; None when nothing was restored.
        """
        self.close()
        self.path = path
        state, labels_zyx = None, None
        if path:
            resumed = resume_session(path, tuple(shape_zyx), affine_ras, ask)
            for text in resumed.warnings:
                self.warn(text)
            for text in resumed.infos:
                self.inform(text)
            if resumed.state is not None:
                state, labels_zyx = resumed.state, resumed.labels_zyx
        if state is None:
            registry = (LabelRegistry.load_sidecar(path) if path else None) or LabelRegistry()
            state = SessionState(scan_path=path, registry=registry)
        state.scan_path, state.shape_zyx = path, tuple(shape_zyx)
        if affine_ras is not None:
            state.affine_ras = tuple(float(v) for v in np.asarray(affine_ras, float).reshape(-1))
        self._warned = False
        where = "autosaves beside the scan" if path else "not saved (no scan file)"
        self._set_line(f"Session: {where}. Hover here for help.")
        return state, labels_zyx

    def _set_line(self, text: str) -> None:
        self.line = text
        self.show_line(text)

    def saver_health(self, health: SaveHealth) -> None:
        """The saver's health changed: show it, unless it is a closed scan's saver's."""
        if self.saver is not None and health.session_dir == self.saver.session_dir:
            self.show_health(health)

    def show_health(self, health: SaveHealth) -> None:
        """Show an autosave failure (line + one warning) or its recovery (line + one notice)."""
        self._set_line(health.line)
        if not health.ok and not self._warned:
            self._warned = True
            self.status_warning = f"autosave FAILED: {health.reason}"
            self.show_status("")
            self.warn(f"MedSAM: the session is not being autosaved: {health.reason}")
        elif health.ok and self._warned:
            self._warned = False
            self.status_warning = ""
            self.show_status("autosave works again")
            self.inform(f"MedSAM: autosave works again ({health.session_dir})")

    def autosave(self, labels_zyx: np.ndarray, state: SessionState) -> None:
        """Schedule a background save of this snapshot (the saver starts on the first change)."""
        if not self.path:
            return
        try:
            if self.saver is None:
                self.saver = Autosaver(session_dir_for(self.path), on_health=self.on_saver_health)
                if self.saver.set_aside_to is not None:
                    self.warn(
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


def save_labels(labels_zyx: np.ndarray, registry: LabelRegistry, path, layer_meta: dict) -> Path:
    """Write labels as NIfTI on the scan's grid and ``registry``'s sidecars next to it.

    Parameters
    ----------
    labels_zyx : np.ndarray
        (Z, Y, X) integer labels.
    registry : LabelRegistry
        Ids in the volume it lacks are registered (TotalSegmentator names) first.
    path : str or Path
        A path without ``.nii`` / ``.nii.gz`` gets ``.nii.gz``.
    layer_meta : dict
        ``metadata`` (the scan's grid, as the reader put it), ``scale`` and ``name`` of
        the labels (layer); the sidecars are written by the npe2 writer, as for
        napari's own *File > Save*.

    Returns
    -------
    Path
        The NIfTI written.
    """
    from napari_medsam.io.napari_writer import write_labels

    path = str(path)
    if not path.lower().endswith((".nii", ".nii.gz")):
        path += ".nii.gz"
    registry.sync_with(labels_zyx)
    metadata = {**layer_meta.get("metadata", {}), LAYER_METADATA_KEY: registry.to_dict()}
    meta = {**layer_meta, "metadata": metadata}
    return Path(write_labels(path, np.asarray(labels_zyx), meta)[0])
