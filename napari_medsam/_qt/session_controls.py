"""The 3D section of the MedSAM dock widget: object name, lock, propagation, undo, save, and
its "Advanced" fold (stop rule, mask prompt, gaps). Qt only, no logic.

Every advanced control starts at the measured default; :meth:`AdvancedPropagation.options`
turns them into the arguments of :func:`napari_medsam.tasks.propagate.propagate`
and the :class:`~napari_medsam.tasks.policy.RepropagationPolicy`.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_medsam._qt.controls import Fold
from napari_medsam.session import texts
from napari_medsam.session.presets import menu_names
from napari_medsam.tasks.fill import DEFAULT_REFINE, REFINES
from napari_medsam.tasks.policy import DEFAULT_POLICY, GAP_MODES, RepropagationPolicy
from napari_medsam.tasks.propagate_options import MASK_PROMPT_CHOICES, chosen_settings

AUTO = "auto (fitted)"


def _spin() -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(-0.01, 1.0)  # the minimum shows the special value: the fitted rule
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setSpecialValueText(AUTO)
    spin.setValue(spin.minimum())
    return spin


def _chosen(spin: QDoubleSpinBox) -> float | None:
    """The spin's value, or None at its minimum (the fitted rule)."""
    return float(spin.value()) if spin.value() > spin.minimum() else None


class AdvancedPropagation(Fold):
    """A fold (closed at start) with the propagation settings a user rarely needs."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Advanced", QWidget(), parent=parent)
        self.body, self.toggle = self.content, self.button
        self.toggle.setStyleSheet("QToolButton { border: none; }")
        self.stop_score_spin = _spin()
        self.stop_overlap_spin = _spin()
        self.mask_prompt_combo = QComboBox()
        self.mask_prompt_combo.addItems(MASK_PROMPT_CHOICES)
        self.gaps_combo = QComboBox()
        self.gaps_combo.addItems(GAP_MODES)
        self.gaps_combo.setCurrentText(DEFAULT_POLICY.gaps)
        self.refine_combo = QComboBox()
        self.refine_combo.addItems(REFINES)
        self.refine_combo.setCurrentText(DEFAULT_REFINE)
        for name, tip in texts.ADVANCED_PROPAGATION_TOOLTIPS.items():
            getattr(self, name).setToolTip(tip)
        form = QFormLayout(self.body)
        form.setContentsMargins(12, 0, 0, 0)
        form.addRow("Stop score", self.stop_score_spin)
        form.addRow("Stop overlap", self.stop_overlap_spin)
        form.addRow("Mask prompt", self.mask_prompt_combo)
        form.addRow("Between corrections", self.gaps_combo)
        form.addRow("Fill refinement", self.refine_combo)

    def options(self) -> dict:
        """Keyword arguments of ``propagate`` set here (absent: the measured default)."""
        return chosen_settings(
            _chosen(self.stop_score_spin),
            _chosen(self.stop_overlap_spin),
            self.mask_prompt_combo.currentText(),
        )

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
        self.lock_check = QCheckBox("Lock")
        self.overwrite_check = QCheckBox("New masks may replace unlocked objects")
        self.propagate_button = QPushButton("Propagate (P)")
        self.repropagate_button = QPushButton("Re-propagate (Shift+P)")
        self.fill_button = QPushButton("Fill (F)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.save_button = QPushButton("Save labels…")
        self.advanced = AdvancedPropagation()
        self.stop_label = QLabel()
        self.stop_label.setWordWrap(True)
        self.session_label = QLabel()
        self.session_label.setWordWrap(True)
        for name, tip in texts.SESSION_TOOLTIPS.items():
            getattr(self, name).setToolTip(tip)

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
        box.setToolTip(texts.HELP_3D)
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
        undo_tip, redo_tip = texts.undo_tooltips(last, next_redo)
        self.undo_button.setToolTip(undo_tip)
        self.redo_button.setToolTip(redo_tip)
