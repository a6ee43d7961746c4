"""The 3D section of the MedSAM dock widget: object name, lock, propagation, undo, save, and
its "Advanced" fold (stop rule, mask prompt, gaps). Qt only, no logic.

Every advanced control starts at the measured default; :meth:`AdvancedPropagation.options`
turns them into the arguments of :func:`napari_medsam.tasks.propagate.propagate`
and the :class:`~napari_medsam.tasks.policy.RepropagationPolicy`.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_medsam.tasks.policy import DEFAULT_POLICY, GAP_MODES, RepropagationPolicy
from napari_medsam.session.presets import menu_names
from napari_medsam.tasks.fill import DEFAULT_REFINE, REFINES

HELP_3D = (
    "<b>Propagate</b> (key <b>P</b> on the clicks/boxes layer) segments the current object "
    "on the slices above and below the one shown, from its mask there. Correct any slice "
    "with clicks, a box or napari's brush, then <b>Re-propagate</b> (<b>Shift+P</b>) from "
    "that slice: the slices between it and the next corrected slices are filled, beyond them "
    "it propagates; hand-corrected slices are kept. <b>Fill</b> (<b>F</b>) fills every gap "
    "between the object's corrected slices (interpolation refined by the model). <b>Ctrl+Z</b> / <b>Ctrl+Shift+Z</b>: "
    "undo / redo of the current object's steps (a whole propagation is one step; undoing a "
    "click's or box's result takes it off the layer too). The session autosaves next to the scan."
)


AUTO = "auto (fitted)"
ENGINE_DEFAULT = "model's default"
MASK_PROMPT_CHOICES = (ENGINE_DEFAULT, "none", "logits", "binary")


def _spin(tooltip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(-0.01, 1.0)  # the minimum shows the special value: the fitted rule
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setSpecialValueText(AUTO)
    spin.setValue(spin.minimum())
    spin.setToolTip(tooltip)
    return spin


class AdvancedPropagation(QWidget):
    """A fold (closed at start) with the propagation settings a user rarely needs."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setText("Advanced")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.RightArrow)
        self.toggle.setStyleSheet("QToolButton { border: none; }")
        self.body = QWidget()
        self.stop_score_spin = _spin(
            "Stop a direction where the model's predicted IoU falls below this. "
            "Auto: the measured rule (fitted to the object's first slice)."
        )
        self.stop_overlap_spin = _spin(
            "Stop where the mask overlaps the previous slice's (IoU) less than this. "
            "Auto: fitted to the slice spacing and the object's size (thick slices allow less)."
        )
        self.mask_prompt_combo = QComboBox()
        self.mask_prompt_combo.addItems(MASK_PROMPT_CHOICES)
        self.mask_prompt_combo.setToolTip(
            "How the previous slice's mask prompts the next slice besides its box: none (box "
            "only), the model's logits, or the binary mask as SAM's dense prompt"
        )
        self.gaps_combo = QComboBox()
        self.gaps_combo.addItems(GAP_MODES)
        self.gaps_combo.setCurrentText(DEFAULT_POLICY.gaps)
        self.gaps_combo.setToolTip(
            "Re-propagate between corrected slices: fill (interpolate, then refine with the "
            "model), propagate from the corrected slice, or keep what is there"
        )
        self.refine_combo = QComboBox()
        self.refine_combo.addItems(REFINES)
        self.refine_combo.setCurrentText(DEFAULT_REFINE)
        self.refine_combo.setToolTip(
            "Fill between slices: keep the interpolated masks (none), or let the model "
            "refine each from its box (box) or box and mask (box+mask)"
        )
        form = QFormLayout(self.body)
        form.setContentsMargins(12, 0, 0, 0)
        form.addRow("Stop score", self.stop_score_spin)
        form.addRow("Stop overlap", self.stop_overlap_spin)
        form.addRow("Mask prompt", self.mask_prompt_combo)
        form.addRow("Between corrections", self.gaps_combo)
        form.addRow("Fill refinement", self.refine_combo)
        self.body.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self.toggle.toggled.connect(self._on_toggle_toggled)

    def _on_toggle_toggled(self, open_: bool) -> None:
        self.body.setVisible(open_)
        self.toggle.setArrowType(Qt.DownArrow if open_ else Qt.RightArrow)

    def options(self) -> dict:
        """Keyword arguments of ``propagate`` set here (absent: the measured default)."""
        out: dict = {}
        for key, spin in (("stop_score", self.stop_score_spin), ("stop_overlap", self.stop_overlap_spin)):
            if spin.value() > spin.minimum():
                out[key] = float(spin.value())
        mode = self.mask_prompt_combo.currentText()
        if mode != ENGINE_DEFAULT:
            out["mask_prompt"] = mode
        return out

    def policy(self) -> RepropagationPolicy:
        return RepropagationPolicy(
            self.gaps_combo.currentText(), DEFAULT_POLICY.clear_past_end, self.fill_refine()
        )

    def fill_refine(self) -> str:
        return self.refine_combo.currentText()


class Session3DControls(QWidget):
    """Name / lock of the current object, propagation buttons, undo / redo, save."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.name_combo = QComboBox()
        self.name_combo.setEditable(True)
        self.name_combo.addItems(menu_names())
        self.name_combo.setToolTip(
            "Name of the current object: a TotalSegmentator class or any text (Enter)"
        )
        self.lock_check = QCheckBox("Lock")
        self.lock_check.setToolTip("A locked object's voxels are never overwritten")
        self.overwrite_check = QCheckBox("New masks may replace unlocked objects")
        self.overwrite_check.setToolTip(
            "Off: a new mask only takes background voxels. On: it also takes voxels of "
            "other objects that are not locked."
        )
        self.propagate_button = QPushButton("Propagate (P)")
        self.propagate_button.setToolTip(
            "Segment the current object through the volume from the slice shown"
        )
        self.repropagate_button = QPushButton("Re-propagate (Shift+P)")
        self.repropagate_button.setToolTip(
            "Propagate again from the last corrected slice; corrected slices are kept"
        )
        self.fill_button = QPushButton("Fill (F)")
        self.fill_button.setToolTip(
            "Fill the slices between the current object's corrected slices: shape "
            "interpolation, refined by the model; corrected slices are kept"
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.save_button = QPushButton("Save labels…")
        self.save_button.setToolTip(
            "NIfTI on the scan's grid, with label names for 3D Slicer / ITK-SNAP"
        )
        self.advanced = AdvancedPropagation()
        self.stop_label = QLabel()
        self.stop_label.setWordWrap(True)
        self.stop_label.setToolTip("Where the last propagation stopped in each direction, and why")
        self.session_label = QLabel()
        self.session_label.setToolTip(HELP_3D)
        self.session_label.setWordWrap(True)

        name_row = QHBoxLayout()
        name_row.addWidget(self.name_combo, 1)
        name_row.addWidget(self.lock_check)
        form = QFormLayout()
        form.addRow("Object name", name_row)
        propagate_row = QHBoxLayout()
        propagate_row.addWidget(self.propagate_button)
        propagate_row.addWidget(self.repropagate_button)
        propagate_row.addWidget(self.fill_button)
        propagate_row.addWidget(self.cancel_button)
        edit_row = QHBoxLayout()
        edit_row.addWidget(self.undo_button)
        edit_row.addWidget(self.redo_button)
        edit_row.addWidget(self.save_button)

        box = QGroupBox("3D")
        inner = QVBoxLayout(box)
        inner.addLayout(form)
        inner.addWidget(self.overwrite_check)
        inner.addLayout(propagate_row)
        inner.addWidget(self.stop_label)
        inner.addWidget(self.advanced)
        inner.addLayout(edit_row)
        inner.addWidget(self.session_label)
        box.setToolTip(HELP_3D)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)

    def show_object(self, name: str, locked: bool) -> None:
        """Display the current object's name and lock without emitting signals."""
        for widget in (self.name_combo, self.lock_check):
            widget.blockSignals(True)
        self.name_combo.setCurrentText(name)
        self.lock_check.setChecked(locked)
        for widget in (self.name_combo, self.lock_check):
            widget.blockSignals(False)

    def set_propagating(self, running: bool) -> None:
        self.cancel_button.setVisible(running)
        self.propagate_button.setEnabled(not running)
        self.repropagate_button.setEnabled(not running)
        self.fill_button.setEnabled(not running)

    def set_undo_state(
        self, can_undo: bool, can_redo: bool, last: str | None, next_redo: str | None = None
    ) -> None:
        self.undo_button.setEnabled(can_undo)
        self.redo_button.setEnabled(can_redo)
        self.undo_button.setToolTip(
            f"Undo {last} (Ctrl+Z)" if last else "Nothing to undo for this object"
        )
        self.redo_button.setToolTip(
            f"Redo {next_redo} (Ctrl+Shift+Z)" if next_redo else "Nothing to redo for this object"
        )
