"""The MedSAM dock widget: turns layer events into jobs, paints results.

Thin by design: prompt geometry lives in ``prompt_layers``, painting in
``labels_layer``, the controls in ``controls``, threading in ``workers`` and the work in
``tasks``. Layers change only here, on the GUI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

import napari
import numpy as np
from napari.utils.events import Event
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_medsam._qt import first_use as wf
from napari_medsam._qt import images as wi
from napari_medsam._qt import labels_layer as ll
from napari_medsam._qt import prompt_layers as wl
from napari_medsam._qt.controls import Controls, Fold
from napari_medsam._qt.cursor import CursorStatus
from napari_medsam._qt.dialogs import ask_checkpoint_path
from napari_medsam._qt.prefetch import Prefetcher, embed_nearby_task
from napari_medsam._qt.session_prompts import read_rows
from napari_medsam._qt.session_view import Session3D
from napari_medsam._qt.workers import JobRunner
from napari_medsam.model.protocol import Engine
from napari_medsam.prompts.voxels import inside_volume
from napari_medsam.tasks.engine_holder import EngineHolder, ready_text
from napari_medsam.session import texts
from napari_medsam.session.requests import request_task
from napari_medsam.tasks.jobs import EngineLoaded, load_job
from napari_medsam.tasks.ledger import LatencyClock
from napari_medsam.types import DirectionEnd, Progress, SliceMask

logger = logging.getLogger(__name__)

MAX_DOCK_WIDTH = 400  # px: the dock never squeezes the canvas below ~60% of a 1920 screen


class MedSamWidget(QWidget):
    """Dock widget for click and box segmentation of a 3D image layer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari injects it).
    engine : Engine, optional
        Engine to use instead of loading the bundled LiteMedSAM on first use.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, engine: Engine | None = None):
        super().__init__()
        self.viewer = napari_viewer
        self.holder = EngineHolder(engine)
        self.segment_runner = JobRunner("segment", self)
        self.model_runner = JobRunner("model", self)
        self.prefetch = Prefetcher(self)  # neighbours embedded while the user pauses
        self.image = None  # the napari Image layer being segmented
        self.labels = None
        self.latency = LatencyClock()  # click to paint, of the current prompt's job
        self._ignore_layer_events = False
        self._removed_zs: set[int] = set()

        self.controls = Controls(self)
        self.session3d = Session3D(self)  # propagation, names, locks, undo, autosave
        self.fold_3d = Fold("3D: propagate, names, undo, save", self.session3d.controls)
        self.setMaximumWidth(MAX_DOCK_WIDTH)  # the scan keeps the width, the text wraps
        layout = QVBoxLayout(self)
        layout.addWidget(self.controls)
        layout.addWidget(self.fold_3d)
        layout.addStretch(1)
        self._connect()
        self._refresh_image_choices()
        self._update_status()
        self._cursor = CursorStatus(self)  # voxel zyx and file ijk in the status bar
        wf.schedule_preload(self)  # the model loads while the user looks at the scan

    # ------------------------------------------------------------------ wiring
    def _connect(self) -> None:
        c = self.controls
        c.image_combo.currentIndexChanged.connect(self._on_image_choice_changed)
        c.image_of = lambda: self.image
        c.window_combo.currentTextChanged.connect(c.on_window_preset_changed)
        c.device_combo.currentTextChanged.connect(self._on_device_changed)
        c.backend_combo.currentTextChanged.connect(self._on_backend_changed)
        c.negative_check.toggled.connect(self._on_negative_toggled)
        c.zoom_check.toggled.connect(self.holder.set_zoom)
        c.commit_button.clicked.connect(self.commit_object)
        c.embed_button.clicked.connect(self.embed_nearby)
        c.load_button.clicked.connect(self._on_load_clicked)
        c.label_spin.valueChanged.connect(self.session3d.on_label_changed)
        for runner in (self.segment_runner, self.model_runner):
            runner.progress.connect(self._on_progress)
            runner.finished.connect(self._on_job_finished)
        self.segment_runner.failed.connect(self._on_segment_failed)
        self.model_runner.failed.connect(self._on_load_failed)
        self.segment_runner.result.connect(self._on_slice_mask)
        self.model_runner.result.connect(self._on_engine_loaded)
        events = self.viewer.layers.events
        events.inserted.connect(self._refresh_image_choices)
        events.removed.connect(self._on_layer_removed)

    # ---------------------------------------------------------------- engine
    @property
    def engine(self) -> Engine | None:
        """The engine in use (None until the bundled model was loaded)."""
        return self.holder.engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self.holder.set_engine(engine)
        self._logits.clear()
        self.controls.set_model_name(engine.name, self.holder.checkpoint)  # as a load does
        self._update_status()

    def load_checkpoint(self, path: str | Path | None) -> int:
        """Load a checkpoint on the worker (returns the job id); on failure the model stays."""
        checkpoint = None if path is None else str(path)
        what = Path(checkpoint).name if checkpoint else "the default model (LiteMedSAM + clicks)"
        device = self.controls.device_combo.currentText()
        return self.model_runner.submit(load_job(self.holder, checkpoint, device, what))

    def _on_load_clicked(self) -> None:
        path = ask_checkpoint_path(self)
        if path is not None:
            self.load_checkpoint(path)

    # ---------------------------------------------------------- image choice
    def _refresh_image_choices(self, event: Event | None = None) -> None:
        combo = self.controls.image_combo
        names = wi.image_layer_names(self.viewer)
        current = self.image.name if self.image is not None else combo.currentText()
        choice = wi.default_image_name(self.viewer, names, current)
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        if choice is not None:
            combo.setCurrentIndex(names.index(choice))
        combo.blockSignals(False)
        if self.image is None or choice != self.image.name:
            self._on_image_choice_changed()

    def _on_layer_removed(self, event: Event) -> None:
        if self.image is not None and event.value == self.image:
            self.image = None
            self.labels = None
        elif self.labels is not None and event.value == self.labels:
            self.labels = None
        self._refresh_image_choices()

    def _on_image_choice_changed(self, index: int | None = None) -> None:
        self.prefetch.cancel()
        self.segment_runner.cancel()
        name = self.controls.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        self.image, self.labels = None, None
        self._logits.clear()
        reason = wi.unsupported_reason(layer, self.viewer)
        self.controls.set_message(reason or "")
        if reason is not None:
            self.session3d.detach()
            return  # nothing is set up, so no prompt can start a job
        self.image = layer
        self._setup_layers()
        self.controls.select_default_window(self.image)
        layer.events.contrast_limits.connect(self.controls.on_contrast_limits_changed)

    def _setup_layers(self) -> None:
        image = self.image
        with self.session3d.prompt_layers.quiet():
            self.labels = ll.ensure_labels_layer(self.viewer, image)
            boxes = wl.ensure_boxes_layer(self.viewer, image)
            clicks = wl.ensure_clicks_layer(self.viewer, image)
        negative = self.controls.negative_check
        for layer in (clicks, boxes):
            layer.events.data.connect(self._on_prompt_data)  # connect() ignores repeats
            layer.bind_key(
                "n", lambda _: negative.setChecked(not negative.isChecked()), overwrite=True
            )
            layer.bind_key("Enter", lambda _: self.commit_object(), overwrite=True)
        if self._on_clicks_press not in clicks.mouse_drag_callbacks:
            clicks.mouse_drag_callbacks.insert(0, self._on_clicks_press)
        self._on_negative_toggled(self.controls.negative_check.isChecked())
        boxes.mode = "add_rectangle"
        clicks.mode = "add"
        wf.select_first_prompt_layer(self)  # boxes for a box-only model, else clicks
        self.session3d.attach(image, self.labels)

    def _clicks(self):
        return wl.find_layer(self.viewer, wl.CLICKS_NAME, wl.Points)

    def _boxes(self):
        return wl.find_layer(self.viewer, wl.BOXES_NAME, wl.Shapes)

    # --------------------------------------------------------------- window
    def current_window(self):
        """The model's window: exactly the image layer's current contrast limits."""
        from napari_medsam.prompts.intensity import IntensityWindow

        lo, hi = (float(v) for v in self.image.contrast_limits)
        return IntensityWindow(lo, hi)

    @property
    def last_latency_ms(self) -> float | None:
        """Click-to-paint time of the latest prompt's result, in ms (None before one)."""
        return self.latency.last_ms

    @property
    def _logits(self) -> dict[tuple[int, int], np.ndarray]:
        """``(label, z) -> low-res logits`` of the session, fed back to the next prompt."""
        return self.session3d.session.logits

    def _volume_key(self) -> tuple:
        return (getattr(self.image, "unique_id", id(self.image)), id(self.image.data))

    # -------------------------------------------------------------- prompts
    def _on_negative_toggled(self, negative: bool) -> None:
        clicks = self._clicks()
        if clicks is not None:
            clicks.feature_defaults["positive"] = not negative
        self.controls.show_click_mode(negative)

    def _on_clicks_press(self, layer, event):
        # Shift held while clicking flips the sign of this one click
        negative = self.controls.negative_check.isChecked() != ("Shift" in event.modifiers)
        layer.feature_defaults["positive"] = not negative

    def _on_prompt_data(self, event: Event) -> None:
        if self._ignore_layer_events or self.image is None:
            return
        action, layer = getattr(event, "action", None), event.source
        if action == "removing":  # the data is still there: note the slices
            self._removed_zs = wl.prompt_slices(layer, event.data_indices, self.image)
            rows = read_rows(layer, event.data_indices)
            self.session3d.session.prompt_history.note_removed(rows)
        elif action == "removed":
            for z in sorted(self._removed_zs):
                self._resegment_after_removal(z)
            self._removed_zs = set()
        if action != "added":
            return
        if isinstance(layer, wl.Points):
            zyx = wl.to_image_zyx(layer, layer.data[-1], self.image)[0]
            if not inside_volume(zyx, self.image.data.shape):
                show_warning("MedSAM: that click is outside the volume; ignored.")
                self._remove_last(layer)
                return
            z = int(np.round(zyx[0]))
            if wf.click_needs_box(self, z):  # it would give nothing: say what to do
                self._remove_last(layer)
                wf.ask_for_box(self)
                return
        else:
            found = wl.box_zyx(layer, len(layer.data) - 1, self.image)
            if found is None:
                show_warning("MedSAM: that box is outside the volume; ignored.")
                self._remove_last(layer)
                return
            z = found[0]
            wf.clear_box_hint(self)
        self.session3d.session.prompt_history.note_added(read_rows(layer, [len(layer.data) - 1]))
        self.segment(z)

    def _resegment_after_removal(self, z: int) -> None:
        """A click or box on slice ``z`` was deleted: segment again from what is left."""
        label = self.controls.label_spin.value()
        self._logits.pop((label, z), None)  # they remember the deleted prompt
        if self.segment(z) is None and self.labels is not None:
            # no prompt left on the slice: the object has no voxels there any more
            self.segment_runner.cancel()
            self.session3d.clear_slice(label, z)

    def _remove_last(self, layer) -> None:
        with self.session3d.prompt_layers.quiet():
            layer.selected_data = {len(layer.data) - 1}
            layer.remove_selected()

    # -------------------------------------------------------------- jobs
    def segment(self, z: int) -> int | None:
        """Segment the current object on slice ``z`` from its prompts; the job id or None."""
        if self.image is None:
            show_warning("MedSAM: choose a 3D image layer first.")
            return None
        if self.labels is None or self.labels not in self.viewer.layers:
            self._setup_layers()
        label = self.controls.label_spin.value()
        prompt = wl.build_slice_prompt(self._clicks(), self._boxes(), self.image, z)
        if prompt.is_empty:
            return None
        others = self.controls.others_negative_check.isChecked()
        request = self.session3d.before_segment(label, z, prompt, others)  # logits fed back
        if request is None:
            return None  # the object is locked
        window, key = self.current_window(), self._volume_key()
        task = request_task(self.holder, self.image.data, window, request, key)
        self.prefetch.cancel()  # the prompt goes first
        job_id = self.segment_runner.submit(task)
        self.latency.start(job_id, with_load=self.engine is None)
        return job_id

    def embed_nearby(self) -> int | None:
        """Precompute embeddings of ~20 slices around the current one (progress bar)."""
        task = embed_nearby_task(self)
        if task is None:
            return None
        self.session3d.end_propagation()
        return self.segment_runner.submit(task)

    def _on_slice_mask(self, result: SliceMask | DirectionEnd) -> None:
        if self.labels is None:
            return  # the runner emits the current job's items only; no layer: nothing to paint
        if isinstance(result, DirectionEnd):  # where a propagation direction stopped, and why
            self.session3d.on_direction_end(result)
            return
        if not self.session3d.paint_result(result):
            return  # painted: the session keeps its logits for the next prompt there
        latency, with_load = self.latency.stop(self.segment_runner.job_id) or (None, False)
        if latency is not None:  # a prompt's result (not a propagated slice)
            self.prefetch.schedule(result.z)
        pixels = int(result.mask_yx.sum())
        text = texts.slice_result_text(result.z, pixels, result.score, latency, with_load)
        self._update_status(text)

    def _on_engine_loaded(self, loaded: EngineLoaded) -> None:
        self._logits.clear()
        self.controls.set_model_name(loaded.engine.name, loaded.checkpoint)
        if loaded.announce:
            show_info(f"MedSAM: loaded {loaded.engine.name}")
        if self.image is not None:
            wf.select_first_prompt_layer(self)  # the new model may take clicks, or not
        self._update_status(ready_text(loaded.engine))

    def _on_progress(self, progress: Progress) -> None:
        self.controls.show_progress(progress)
        self._update_status(progress.message)

    def _on_segment_failed(self, job_id: int, exc: object) -> None:
        self.controls.hide_progress()
        show_error(f"MedSAM: segmentation failed: {exc}")
        self._update_status("error")

    def _on_load_failed(self, job_id: int, exc: object) -> None:
        self.controls.hide_progress()
        kept = "the current model" if self.engine is None else self.engine.name
        show_error(f"MedSAM: could not load the checkpoint: {exc}. Keeping {kept}.")
        self._update_status("checkpoint not loaded")

    def _on_job_finished(self, job_id: int) -> None:
        self.latency.forget(job_id)  # ended without painting (failed, locked, empty)
        if not (self.segment_runner.busy or self.model_runner.busy):
            self.controls.hide_progress()
        if self.engine is not None:
            self.controls.set_model_name(self.engine.name, self.holder.checkpoint)

    def _update_status(self, message: str = "") -> None:
        files = getattr(getattr(self, "session3d", None), "files", None)
        warning = getattr(files, "status_warning", "")  # a failing autosave stays in view
        self.controls.status_label.setText(self.holder.status(message, warning))

    # ------------------------------------------------------------ objects
    def _on_device_changed(self, device: str) -> None:
        if self.holder.choose_device(device):
            self.load_checkpoint(self.holder.checkpoint)

    def _on_backend_changed(self, backend: str) -> None:
        if self.holder.choose_backend(backend):
            self.load_checkpoint(self.holder.checkpoint)

    def commit_object(self) -> None:
        """Finish the current object: clear the prompts, move to the next free label id."""
        self.segment_runner.cancel()
        with self.session3d.prompt_layers.quiet():
            clicks, boxes = self._clicks(), self._boxes()
            if clicks is not None:
                clicks.data = np.zeros((0, 3))
            if boxes is not None and len(boxes.data):
                boxes.data = []
        self._logits.clear()
        self.session3d.session.prompt_history.clear()  # the cleared prompts are no step's
        if self.labels is not None:  # the next free id
            self.controls.label_spin.setValue(self.session3d.session.commit_object())
        self._update_status(f"next object: label {self.controls.label_spin.value()}")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.prefetch.cancel()
        self.segment_runner.cancel()
        self.model_runner.cancel()
        self.session3d.close()
        self._cursor.disconnect()
        super().closeEvent(event)
