"""The dock's questions to the user: restore a session, where to save, which checkpoint.

Each is one function, so tests replace it (``monkeypatch.setattr(dialogs, "ask_restore", ...)``)
instead of driving a modal dialog. GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QMessageBox

from napari_medsam.session.resume import restore_question

CHECKPOINT_FILTER = "PyTorch checkpoints (*.pth *.pt *.ckpt *.bin);;All files (*)"


def ask_restore(parent, info, scan_path=None) -> bool:
    """Ask whether to restore a saved session (tests replace this function)."""
    answer = QMessageBox.question(
        parent,
        "Restore MedSAM session?",
        restore_question(info, scan_path),
        QMessageBox.Yes | QMessageBox.No,
        QMessageBox.Yes,
    )
    return answer == QMessageBox.Yes


def ask_save_path(parent) -> str | None:
    """Ask where to save the labels (tests pass a path instead)."""
    path, _ = QFileDialog.getSaveFileName(parent, "Save labels", "", "NIfTI (*.nii.gz *.nii)")
    return path or None


def ask_checkpoint_path(parent=None) -> str | None:
    """Ask for a checkpoint file with a file dialog; None if cancelled."""
    path, _ = QFileDialog.getOpenFileName(
        parent, "Load SAM / LiteMedSAM / Med-SA checkpoint", str(Path.home()), CHECKPOINT_FILTER
    )
    return path or None
