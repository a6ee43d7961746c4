"""The model of a segmentation session, Qt-free: labels registry, painting rule, undo, autosave.

Pure Python / numpy. The widget keeps one of each per scan and stays thin:

- :class:`~napari_medsam.session.labels.LabelRegistry`: id -> name, colour, lock;
  sidecar files next to the NIfTI (JSON, ITK-SNAP, 3D Slicer).
- :func:`~napari_medsam.session.painting.paint_mask`: the one painting rule.
- :class:`~napari_medsam.session.undo.UndoStack`: sparse multi-level undo/redo with groups.
- :class:`~napari_medsam.session.state.SessionState`: prompts, corrections, names, locks.
- :class:`~napari_medsam.session.autosave.Autosaver`, :func:`~napari_medsam.session.saved.find_session`,
  :func:`~napari_medsam.session.saved.restore`.
"""

from napari_medsam.session.autosave import Autosaver
from napari_medsam.session.replay import SessionCorruptError
from napari_medsam.session.saved import SessionInfo, find_session, restore
from napari_medsam.session.store import session_dir_for
from napari_medsam.session.labels import LabelInfo, LabelRegistry
from napari_medsam.session.painting import LockedLabelError, paint_mask
from napari_medsam.session.state import SessionState
from napari_medsam.session.undo import Step, UndoStack

__all__ = [
    "Autosaver",
    "LabelInfo",
    "LabelRegistry",
    "LockedLabelError",
    "SessionCorruptError",
    "SessionInfo",
    "SessionState",
    "Step",
    "UndoStack",
    "find_session",
    "paint_mask",
    "restore",
    "session_dir_for",
]
