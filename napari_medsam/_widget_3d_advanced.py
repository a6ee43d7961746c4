"""The "Advanced" fold of the 3D section: stop rule, mask prompt, gaps (Qt only, no logic).

Every control starts at the measured default; :meth:`AdvancedPropagation.options`
turns them into the arguments of :func:`napari_medsam.tasks.propagate.propagate`
and the :class:`~napari_medsam.session.policy.RepropagationPolicy`.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_medsam.session.policy import DEFAULT_POLICY, GAP_MODES, RepropagationPolicy
from napari_medsam.tasks.fill import DEFAULT_REFINE, REFINES

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
        return RepropagationPolicy(self.gaps_combo.currentText(), DEFAULT_POLICY.clear_past_end)

    def fill_refine(self) -> str:
        return self.refine_combo.currentText()
