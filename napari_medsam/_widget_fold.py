"""A foldable section for the dock: a title with a disclosure arrow over its content.

Reusable by any part of the dock (the 3D section, advanced options, propagation
stop controls): ``Fold("Advanced", content_widget)`` starts closed; clicking the
title opens it. Qt only, no behaviour beyond showing and hiding.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QSizePolicy, QToolButton, QVBoxLayout, QWidget


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
