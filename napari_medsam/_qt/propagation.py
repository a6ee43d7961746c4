"""Propagate, Re-propagate, Fill and their stop reports for :class:`napari_medsam._qt.session_view.Session3D`.

:class:`PropagationActions` is mixed into ``Session3D``, which provides ``w``
(the widget), ``session`` (the :class:`~napari_medsam.session.annotation.AnnotationSession`),
``controls``, ``labels``, ``image``, ``label``, ``_ensure_registered``,
``_record_layer_paints`` and ``_changed``. What a button runs is the session's
decision (:meth:`AnnotationSession.propagate_request`, :meth:`fill_request`: the policy
``eval --protocol 3d`` measures); this face only reads the controls, submits the
request to the worker and reports where each direction stopped. GUI thread only.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info, show_warning

from napari_medsam.session.requests import request_task
from napari_medsam.tasks.propagate_options import PropagationOptions
from napari_medsam.types import DirectionEnd


class PropagationActions:
    """The propagation buttons and keys of the 3D section, and where each run stopped."""

    def _init_propagation(self) -> None:
        self.propagation_job: int | None = None

    def current_z(self) -> int:
        """The image slice the viewer shows."""
        z = np.round(self.image.world_to_data(self.w.viewer.dims.point)[0])
        return int(np.clip(z, 0, self.image.data.shape[0] - 1))

    def spacing_zyx_mm(self) -> tuple[float, float, float] | None:
        """The image layer's scale (the reader sets it to the voxel size in mm)."""
        scale = tuple(float(v) for v in getattr(self.w.image, "scale", ()))
        return scale if len(scale) == 3 and all(v > 0 for v in scale) else None

    def _can_run(self) -> bool:
        self._record_layer_paints()
        if self.w.image is None or self.labels is None:
            show_warning("MedSAM: choose a 3D image layer first.")
            return False
        advanced = self.controls.advanced
        self.session.policy = advanced.policy()
        self.session.options = PropagationOptions(
            spacing_zyx_mm=self.spacing_zyx_mm(), **advanced.options()
        )
        return True

    def _request(self, ask, *args):
        try:
            return ask(*args)
        except ValueError as exc:  # locked, or the object is not where the run starts
            show_warning(f"MedSAM: {exc}.")
            return None

    def propagate(self, start_z: int | None = None, again: bool = False) -> int | None:
        """Propagate the current object on the worker; returns the job id.

        Propagate (``again=False``): from ``start_z`` (default: the slice shown)
        both ways through the volume, passing through corrected slices (seeded by
        their masks, never overwritten) and clearing past the object's new ends.
        Re-propagate (``again=True``): spread the slices corrected since the last
        run (or, if none, ``start_z`` / the slice corrected last) by the one policy
        of :mod:`napari_medsam.tasks.policy`: fill the gaps to the neighbouring
        corrected slices, propagate beyond the outermost.
        """
        label = self.label
        if not self._can_run():
            return None
        if start_z is None and not (again and self.session.has_start(label)):
            start_z = self.current_z()
        others = self.w.controls.others_negative_check.isChecked()
        request = self._request(self.session.propagate_request, label, start_z, again, others)
        return None if request is None else self._submit(request, label, "propagate")

    def fill(self) -> int | None:
        """Fill between the current object's corrected slices (corrected slices kept)."""
        label = self.label
        if not self._can_run():
            return None
        request = self._request(self.session.fill_request, label)
        return None if request is None else self._submit(request, label, "fill")

    def _submit(self, request, label: int, verb: str) -> int:
        w = self.w
        self.end_propagation()
        self._ensure_registered(label)
        self.session.begin_run(label, verb)
        task = request_task(w.holder, w.image.data, w.current_window(), request, w._volume_key())
        self.propagation_job = w.segment_runner.submit(task)
        self.controls.set_propagating(True)
        return self.propagation_job

    def on_direction_end(self, end: DirectionEnd) -> None:
        """A direction of the running propagation ended: the session keeps it for the report."""
        if self.w.segment_runner.job_id == self.propagation_job:
            self.session.ends.append(end)

    def cancel(self) -> None:
        """Stop the running propagation; the slices painted so far stay (one undo step)."""
        self.w.segment_runner.cancel()
        self.end_propagation()

    def end_propagation(self) -> None:
        """Close the propagation's undo step (finished, cancelled or superseded); report stops."""
        if self.propagation_job is None:
            return
        self.propagation_job = None
        self.session.end_run()
        self.controls.set_propagating(False)
        report = self.session.stop_report()
        self.controls.stop_label.setText(report)
        if report:
            self.w._update_status(report)
            show_info(f"MedSAM: {report}")
        self._changed()

    def _on_runner_finished(self, job_id: int) -> None:
        if self.propagation_job is not None and not self.w.segment_runner.busy:
            self.end_propagation()
