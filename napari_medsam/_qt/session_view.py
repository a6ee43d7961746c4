"""The 3D workflow of the MedSAM widget: propagation, corrections, names, locks, undo, autosave.

:class:`Session3D` is composed by :class:`napari_medsam._qt.dock.MedSamWidget`
and keeps, per scan, the Qt-free session objects of :mod:`napari_medsam.session`:
a :class:`SessionState` (names, locks, corrected slices, prompts), an
:class:`UndoStack` and, when the scan is a file, an :class:`Autosaver` writing
``<scan>.medsam-session/`` beside it (or in the user cache).

Undo policy: the session's undo stack is the one the keys drive. Ctrl+Z and
Ctrl+Shift+Z on the clicks, boxes and labels layers are bound to it (replacing
napari's labels-layer undo keys); a whole propagation is one step, napari
brush strokes are steps of their own. A prompt's step also carries the clicks /
boxes added or deleted since the step before (``session_prompts``): undo takes
them off the prompt layers, redo puts them back, without segmenting again.
Every edit, undo and redo included, is written through ``Labels.data_setitem``,
so napari's per-layer history stays a true, linear log of changes: calling
``labels.undo()`` directly reverts the latest change in time, never something stale.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject, QTimer

from napari_medsam._qt import dialogs
from napari_medsam._qt.files import gui_session_files
from napari_medsam._qt.labels_layer import LayerArray, RegistryOnLayer
from napari_medsam._qt.propagation import PropagationActions
from napari_medsam._qt.session_controls import Session3DControls
from napari_medsam._qt.session_prompts import SessionPrompts
from napari_medsam.session import SessionState, UndoStack
from napari_medsam.session.annotation import AnnotationSession
from napari_medsam.session.edits import brush_edit
from napari_medsam.session.files import save_labels, scan_path
from napari_medsam.types import SliceMask


class ObjectNames:
    """Registry edits from the name box and the lock check of the 3D controls."""

    @property
    def label(self) -> int:
        """The current object's label id (the widget's spin box)."""
        return int(self.w.controls.label_spin.value())

    def is_locked(self, label: int) -> bool:
        return self.session.is_locked(label)

    def _ensure_registered(self, label: int) -> None:
        name = self.controls.name_combo.currentText().strip() if label == self.label else ""
        self.session.ensure_registered(label, name)

    def on_label_changed(self, label: int) -> None:
        """Show the name, lock, saved prompts and undo steps of object ``label``."""
        self.controls.show_object(self.state.registry.name(label), self.is_locked(label))
        self.session.select_object(label)  # other objects' logits and pending changes go
        if self.image is not None:  # the prompt layers show the current object's prompts
            self.prompt_layers.draw_saved(self.state, int(label))
        self._show_undo()  # undo / redo follow the current object

    def _on_name_chosen(self, *args) -> None:
        if self.state.registry.set_name(self.label, self.controls.name_combo.currentText()):
            self._changed()

    def _on_lock_toggled(self, locked: bool) -> None:
        self._ensure_registered(self.label)
        self.state.registry.set_locked(self.label, locked)
        self._changed()


def _uid(layer) -> object:
    return None if layer is None else getattr(layer, "unique_id", id(layer))


class Session3D(PropagationActions, ObjectNames, QObject):
    """Propagation, object names and locks, undo / redo and autosave for one widget.

    Parameters
    ----------
    widget : MedSamWidget
        The owner; its runner, engine holder, image and labels layers are used.
    """

    def __init__(self, widget):
        super().__init__(widget)
        self.w = widget
        self.controls = Session3DControls()
        self.session = AnnotationSession(None, on_change=self._changed)
        self.prompt_layers = SessionPrompts(widget)  # prompt changes the next step carries
        self.registry_view = RegistryOnLayer()  # label colours + metadata for the writer
        self.files = gui_session_files()
        self.image = None
        self.labels = None
        self._init_propagation()
        self._own_write = False
        self._layer_paints: list = []
        c = self.controls
        c.propagate_button.clicked.connect(lambda: self.propagate())
        c.repropagate_button.clicked.connect(lambda: self.propagate(again=True))
        c.fill_button.clicked.connect(lambda: self.fill())
        c.cancel_button.clicked.connect(self.cancel)
        c.undo_button.clicked.connect(self.undo)
        c.redo_button.clicked.connect(self.redo)
        c.save_button.clicked.connect(lambda: self.save_labels())
        c.lock_check.toggled.connect(self._on_lock_toggled)
        c.name_combo.activated.connect(self._on_name_chosen)
        c.name_combo.lineEdit().editingFinished.connect(self._on_name_chosen)
        widget.segment_runner.finished.connect(self._on_runner_finished)
        self._show_undo()

    # ------------------------------------------------------------ lifetime
    def attach(self, image, labels) -> None:
        """Follow ``image`` and its ``labels`` layer; a new scan opens (or restores) its session."""
        if _uid(image) == _uid(self.image) and _uid(labels) == _uid(self.labels):
            return
        new_scan = _uid(image) != _uid(self.image)
        self._unbind()
        self.image, self.labels = image, labels
        state = self._open_session() if new_scan else self.state
        # a new labels layer (or scan): a new session on it, its own undo steps and logits
        self.session = AnnotationSession(LayerArray(labels), state, on_change=self._changed)
        if new_scan:
            self._show_restored()
        self.registry_view.show(labels, self.state.registry)
        labels.events.paint.connect(self._on_layer_paint)
        layers = [labels, self.w._clicks(), self.w._boxes()]
        for layer in filter(None, layers):
            layer.bind_key("Control-Z", lambda _layer: self.undo(), overwrite=True)
            layer.bind_key("Control-Shift-Z", lambda _layer: self.redo(), overwrite=True)
        for layer in filter(None, layers[1:]):
            layer.bind_key("P", lambda _layer: self.propagate(), overwrite=True)
            layer.bind_key("Shift-P", lambda _layer: self.propagate(again=True), overwrite=True)
            layer.bind_key("F", lambda _layer: self.fill(), overwrite=True)
        self.on_label_changed(self.label)
        self._show_undo()

    def detach(self) -> None:
        """The widget has no usable image any more."""
        self.end_propagation()
        self._unbind()
        self.files.close()
        self.image = self.labels = None

    def _unbind(self) -> None:
        self._record_layer_paints()
        if self.labels is not None:
            self.labels.events.paint.disconnect(self._on_layer_paint)

    @property
    def state(self) -> SessionState:
        """The session's objects, locks, corrected slices and prompts."""
        return self.session.state

    @property
    def undo_stack(self) -> UndoStack:
        return self.session.undo_stack

    @property
    def saver(self):
        """The session's :class:`~napari_medsam.session.Autosaver` (None before the first change)."""
        return self.files.saver

    def _open_session(self) -> SessionState:
        affine = (self.image.metadata or {}).get("affine_ras")
        shape = tuple(self.labels.data.shape)
        ask = lambda info: dialogs.ask_restore(self.w, info)  # noqa: E731
        state, labels_zyx = self.files.open(scan_path(self.image), shape, affine, ask)
        self._restored = labels_zyx is not None
        if self._restored:
            self.labels.data = labels_zyx.astype(self.labels.data.dtype, copy=False)
        return state

    def _show_restored(self) -> None:
        if self._restored and self.state.active_label:
            self.w.controls.label_spin.setValue(int(self.state.active_label))
        if self._restored:
            self.prompt_layers.draw_saved(self.state, self.label)
        self.files.show_line = self.controls.session_label.setText  # autosave health, too
        self.files.show_status = self.w._update_status
        self.files.show_line(self.files.line)

    def close(self) -> None:
        """Finish: end a running propagation, save what is pending, stop the saver."""
        self.end_propagation()
        self.files.close()

    # ------------------------------------------------------------ prompts
    def before_segment(self, label: int, z: int, prompt, others_negative: bool = False):
        """A prompt asks to segment ``label`` on slice ``z``: the session's request to run,
        or None (with a warning) if the object is locked."""
        if self.is_locked(label):
            show_warning(f"MedSAM: '{self.state.registry.name(label)}' is locked; unlock it first.")
            return None
        self.end_propagation()  # a prompt supersedes a running propagation
        return self.session.segment_request(label, z, prompt, others_negative)

    # ------------------------------------------------------------ painting
    @contextmanager
    def _writing(self):
        self._own_write, before = True, self._own_write
        try:
            yield
        finally:
            self._own_write = before

    def paint_result(self, result: SliceMask, by_user: bool | None = None) -> bool:
        """Paint a job's mask (a user prompt's result, or a propagated slice) as an undo step.

        A user prompt's slice counts as corrected by hand: re-propagation keeps it,
        and its step carries the prompt changes since the last step (undo takes the
        click or box off the prompt layers, redo puts it back).
        Returns False when nothing could be painted (the object is locked).
        """
        if by_user is None:
            by_user = self.w.segment_runner.job_id != self.propagation_job
        name = f"segment slice {result.z}" if by_user else "propagate"
        return self._paint(result.label, lambda: self.session.apply_result(result, by_user, name))

    def clear_slice(self, label: int, z: int) -> None:
        """Remove object ``label`` from slice ``z`` (its last prompt there was deleted)."""
        self._paint(label, lambda: self.session.clear_slice(label, z))

    def _paint(self, label: int, paint) -> bool:
        self._record_layer_paints()  # a brush stroke still queued comes first
        label = int(label)
        locked = self.is_locked(label)
        if locked:  # the session paints nothing (a cleared slice still loses its prompt)
            show_warning(f"MedSAM: '{self.state.registry.name(label)}' is locked; not painted.")
        else:
            self._ensure_registered(label)
            self.session.overwrite_unlocked = self.controls.overwrite_check.isChecked()
        with self._writing():
            painted = paint()
        if self.session.running and not locked:  # the session saves once the run ends
            self._changed()  # the view follows now
        return painted

    def _on_layer_paint(self, event) -> None:
        # napari emits ``paint`` before it writes a single (non-stroke) edit: handle it
        # once control is back in the event loop, when the voxels hold the new values
        if self._own_write or self.labels is None:
            return
        self._layer_paints.append(event.value)
        if len(self._layer_paints) == 1:
            QTimer.singleShot(0, self._record_layer_paints)

    def _record_layer_paints(self) -> None:
        """napari's brush, eraser or fill changed the labels: record it as a correction."""
        items, self._layer_paints = self._layer_paints, []
        if self.labels is None or not items:
            return
        shape = tuple(self.labels.data.shape)
        edit = brush_edit(items, shape, self.state.registry.locked_ids())
        if edit.reverted:  # a lock holds against the brush too
            self.labels.data[np.unravel_index(edit.revert_index, shape)] = edit.revert_old
            self.labels.refresh()
            show_warning("MedSAM: locked objects are not changed by the brush.")
        recorded = self.session.record_edit(edit.index, edit.old, edit.new, self.label)
        if recorded and self.session.running:
            self._changed()  # outside a run, the session's change hook did it

    # ------------------------------------------------------------ undo / redo
    def undo(self) -> None:
        self._undo_redo(undo=True)

    def redo(self) -> None:
        self._undo_redo(undo=False)

    def _undo_redo(self, undo: bool) -> None:
        if self.labels is None:
            return
        self._record_layer_paints()
        if self.propagation_job is not None:
            self.cancel()  # a running propagation is stopped, then undone as a whole
        label = self.label
        with self._writing():
            step = self.session.undo(label) if undo else self.session.redo(label)
        if step is None:
            name = self.state.registry.name(label) if label in self.state.registry else label
            self.w._update_status(f"nothing to {'undo' if undo else 'redo'} for {name}")
            return
        self.prompt_layers.replay(step.extra, undo, self.label)
        self.w._update_status(f"{'undid' if undo else 'redid'} {step.name}")
        self._changed()

    def _show_undo(self) -> None:
        """Undo / redo act on the current object's steps (steps that touched its voxels)."""
        undo_step = self.undo_stack.peek(self.label)
        redo_step = self.undo_stack.peek(self.label, redo=True)
        self.controls.set_undo_state(
            undo_step is not None,
            redo_step is not None,
            undo_step.name if undo_step else None,
            redo_step.name if redo_step else None,
        )

    # ------------------------------------------------------------ saving
    def _changed(self) -> None:
        """Something changed: refresh the undo buttons and schedule an autosave."""
        self._show_undo()
        if self.labels is not None:
            self.registry_view.show(self.labels, self.state.registry)
        if self.propagation_job is not None or self.labels is None:
            return  # a propagation is saved once, when it ends
        self.state.active_label = self.label
        if self.image is not None:
            self.state.window = tuple(float(v) for v in self.image.contrast_limits)
        self.files.autosave(self.labels.data, self.state)

    def save_labels(self, path: str | Path | None = None) -> Path | None:
        """Save the labels as NIfTI on the scan's grid, plus the label-name sidecars."""
        path = path or (dialogs.ask_save_path(self.w) if self.labels is not None else None)
        if not path:
            return None
        layer = self.labels
        meta = {"metadata": layer.metadata, "scale": tuple(layer.scale), "name": layer.name}
        written = save_labels(layer.data, self.state.registry, path, meta)
        self._changed()  # the ids the volume held are registered now
        show_info(f"MedSAM: saved {written.name} and its label names")
        return written
