"""The controls of the MedSAM dock widget, and the foldable section they use (Qt only;
no behaviour beyond display)."""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_medsam.prompts.zoom import ZOOM_IN_BY_DEFAULT
from napari_medsam.prompts import intensity
from napari_medsam.session import texts
from napari_medsam.session.texts import HELP_TEXT, HELP_TEXT_BOX_FIRST
from napari_medsam.tasks.engine_holder import device_choices
from napari_medsam.types import Progress


class Fold(QWidget):
    """A titled section that opens and closes.

    Parameters
    ----------
    title : str
        Text of the toggle (e.g. ``"3D: propagate, names, undo, save"``).
    content : QWidget
        Shown while open; reparented into the fold.
    expanded : bool
        Open at start (default closed).
    tooltip : str, optional
        Tooltip of the title.

    Signals
    -------
    toggled(bool)
        The new state, after the user (or :meth:`set_expanded`) changed it.
    """

    toggled = Signal(bool)

    def __init__(
        self,
        title: str,
        content: QWidget,
        expanded: bool = False,
        tooltip: str = "",
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setChecked(expanded)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.button.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        if tooltip:
            self.button.setToolTip(tooltip)
        self.content = content
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.button)
        layout.addWidget(content)
        self._show(expanded)
        self.button.toggled.connect(self._on_button_toggled)

    @property
    def expanded(self) -> bool:
        """Whether the content is shown."""
        return self.button.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        """Open or close the section."""
        self.button.setChecked(bool(expanded))  # emits toggled when it changes

    def _on_button_toggled(self, expanded: bool) -> None:
        self._show(expanded)
        self.toggled.emit(expanded)

    def _show(self, expanded: bool) -> None:
        self.button.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.content.setVisible(expanded)


class Controls(QWidget):
    """Pickers, buttons, progress bar and status line of the widget."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image_of = lambda: None  # the image layer the window presets apply to
        self._preset_limits: tuple[float, float] | None = None
        self.image_combo = QComboBox()
        self.window_combo = QComboBox()
        self.window_combo.addItems(intensity.window_choices())
        self.device_combo = QComboBox()
        self.device_combo.addItems(device_choices())
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(["auto", "torch", "openvino"])
        self.model_label = QLabel("LiteMedSAM + clicks (bundled)")
        self.model_label.setWordWrap(True)
        self.load_button = QPushButton("Load checkpoint…")
        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, 65535)
        self.label_spin.setValue(1)
        self.negative_check = QCheckBox("Negative clicks (N)")
        self.others_negative_check = QCheckBox("Other objects are negative")
        self.zoom_check = QCheckBox("Zoom in on small objects")
        self.zoom_check.setChecked(ZOOM_IN_BY_DEFAULT)
        self.commit_button = QPushButton("Commit object (Enter)")
        self.embed_button = QPushButton("Embed nearby slices")
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet("color: #ff8c00;")
        self.message_label.setVisible(False)
        for name, tip in texts.CONTROLS_TOOLTIPS.items():
            getattr(self, name).setToolTip(tip)
        self.help_label = QLabel(HELP_TEXT_BOX_FIRST)
        self.help_label.setWordWrap(True)
        for label in (self.status_label, self.help_label):  # wrapped text gets all its lines:
            # with the default policy the dock kept the height of one line and cut the help off
            label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.MinimumExpanding)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Window", self.window_combo)
        form.addRow("Model", self.model_label)
        form.addRow("Label id", self.label_spin)
        # Advanced: device, other checkpoints, negatives from other objects, embeddings
        advanced = QWidget()
        advanced_form = QFormLayout(advanced)
        advanced_form.setContentsMargins(0, 0, 0, 0)
        advanced_form.addRow("Device", self.device_combo)
        advanced_form.addRow("Encoder", self.backend_combo)
        advanced_form.addRow("", self.load_button)
        advanced_form.addRow(self.others_negative_check)
        advanced_form.addRow(self.embed_button)
        self.advanced_fold = Fold(
            "Advanced: device, model, negatives", advanced,
            tooltip=texts.ADVANCED_TOOLTIP,
        )  # fmt: skip
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.message_label)
        layout.addLayout(form)
        layout.addWidget(self.negative_check)
        layout.addWidget(self.zoom_check)
        layout.addWidget(self.commit_button)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.help_label)
        layout.addWidget(self.advanced_fold)

    def set_message(self, text: str) -> None:
        """Show (or with "" hide) a message about the chosen image."""
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))

    def show_help(self, box_first: bool) -> None:
        """Help for a box-only model (box first) or a click-capable one (clicks first)."""
        self.help_label.setText(HELP_TEXT_BOX_FIRST if box_first else HELP_TEXT)

    def set_model_name(self, name: str, checkpoint: str | None) -> None:
        self.model_label.setText(texts.model_text(name, checkpoint))

    def on_window_preset_changed(self, preset: str) -> None:
        """A preset was chosen: the image layer's contrast limits become its window."""
        image = self.image_of()
        ok = image is not None and preset
        window = intensity.window_for_choice(preset, image.data) if ok else None
        if window is not None:
            self._preset_limits = (float(window.lo), float(window.hi))
            image.contrast_limits = self._preset_limits

    def on_contrast_limits_changed(self, event=None) -> None:
        """The user moved the sliders away from the preset: say what the model sees."""
        image = self.image_of()
        if image is None:
            return
        limits = tuple(float(v) for v in image.contrast_limits)
        combo = self.window_combo
        if combo.currentText() != intensity.CURRENT_DISPLAY and limits != self._preset_limits:
            combo.blockSignals(True)
            combo.setCurrentText(intensity.CURRENT_DISPLAY)
            combo.blockSignals(False)

    def select_default_window(self, image) -> None:
        """Soft tissue for CT-like intensities, MR percentiles otherwise."""
        preset = intensity.default_window_choice(image.data)
        if self.window_combo.currentText() == preset:
            self.window_combo.currentTextChanged.emit(preset)
        else:
            self.window_combo.setCurrentText(preset)

    def show_click_mode(self, negative: bool) -> None:
        self.negative_check.setStyleSheet("color: red;" if negative else "")

    def show_progress(self, progress: Progress) -> None:
        """Busy indicator when ``total`` is 0; a bar for multi-slice work."""
        if progress.total == 0:
            self.progress_bar.setRange(0, 0)
        elif progress.total > 2:
            self.progress_bar.setRange(0, progress.total)
            self.progress_bar.setValue(progress.done)
        else:
            return  # a single slice is quick: no bar
        self.progress_bar.setVisible(True)

    def hide_progress(self) -> None:
        self.progress_bar.setVisible(False)
        self.progress_bar.setRange(0, 1)
