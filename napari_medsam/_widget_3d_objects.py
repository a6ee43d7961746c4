"""The objects of a 3D session: the current label id, its name and its lock.

:class:`ObjectNames` is mixed into :class:`napari_medsam._widget_3d.Session3D`,
which provides ``w`` (the widget), ``state`` (a
:class:`~napari_medsam.session.SessionState`), ``controls`` (the 3D controls),
``prompt_layers``, ``_changed()`` and ``_show_undo()``. GUI thread only.
"""

from __future__ import annotations


class ObjectNames:
    """Registry edits from the name box and the lock check of the 3D controls."""

    @property
    def label(self) -> int:
        """The current object's label id (the widget's spin box)."""
        return int(self.w.controls.label_spin.value())

    def is_locked(self, label: int) -> bool:
        registry = self.state.registry
        return label in registry and registry[label].locked

    def _ensure_registered(self, label: int) -> None:
        registry = self.state.registry
        if label not in registry:
            name = self.controls.name_combo.currentText().strip() if label == self.label else ""
            registry.add(name or f"label {label}", label)

    def on_label_changed(self, label: int) -> None:
        """Show the name, lock, saved prompts and undo steps of object ``label``."""
        registry = self.state.registry
        if label in registry:
            name, locked = registry[label].name, registry[label].locked
        else:
            name, locked = f"label {label}", False  # until the user names it
        self.controls.show_object(name, locked)
        self.state.active_label = int(label)
        self.prompt_layers.history.clear()  # pending changes belonged to the other object
        if self.image is not None:  # the prompt layers show the current object's prompts
            self.prompt_layers.draw_saved(self.state, int(label))
        self._show_undo()  # undo / redo follow the current object

    def _on_name_chosen(self, *args) -> None:
        name = self.controls.name_combo.currentText().strip()
        label = self.label
        if not name or (label in self.state.registry and self.state.registry.name(label) == name):
            return
        if label in self.state.registry:
            self.state.registry.rename(label, name)
        else:
            self.state.registry.add(name, label)
        self._changed()

    def _on_lock_toggled(self, locked: bool) -> None:
        self._ensure_registered(self.label)
        self.state.registry.set_locked(self.label, locked)
        self._changed()
