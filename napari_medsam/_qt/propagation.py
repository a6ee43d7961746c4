"""Propagate, Re-propagate, Fill and their stop reports for :class:`napari_medsam._qt.session_view.Session3D`.

:class:`PropagationActions` is mixed into ``Session3D``, which provides ``w``
(the widget), ``state``, ``controls``, ``labels``, ``image``, ``undo_stack``,
``label``, ``is_locked``, ``_ensure_registered``, ``_record_layer_paints`` and
``_changed``. The work itself is Qt-free: :func:`napari_medsam.tasks.propagate.propagate`
(Propagate), :func:`napari_medsam.tasks.repropagate.repropagate` (Re-propagate,
the policy of :mod:`napari_medsam.session.policy`, the one ``eval --protocol 3d``
measures) and :func:`napari_medsam.tasks.repropagate.fill_object` (Fill).
GUI thread only.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info, show_warning

from napari_medsam.tasks.jobs import fill_job, propagate_job, repropagate_job
from napari_medsam.tasks.propagate import DEFAULT_MIN_AREA
from napari_medsam.tasks.propagate_options import PropagationOptions
from napari_medsam.types import DirectionEnd


class PropagationActions:
    """The propagation buttons and keys of the 3D section, and where each run stopped."""

    def _init_propagation(self) -> None:
        self.propagation_job: int | None = None
        self._changed_zs: dict[int, set[int]] = {}  # label -> corrected since the last run
        self._ends: list[DirectionEnd] = []
        self._scores: dict[tuple[int, int], float] = {}  # (label, z) -> a prompt's predicted IoU

    def note_corrected(self, label: int, z: int, score: float | None = None) -> None:
        """Slice ``z`` of ``label`` was corrected (by a prompt whose result had ``score``,
        or by hand: None): the next Re-propagate spreads it."""
        self._changed_zs.setdefault(int(label), set()).add(int(z))
        if score is None:
            self._scores.pop((int(label), int(z)), None)
        else:
            self._scores[(int(label), int(z))] = float(score)

    def _seed_scores(self, label: int) -> dict[int, float]:
        return {z: s for (lab, z), s in self._scores.items() if lab == label}

    def current_z(self) -> int:
        """The image slice the viewer shows."""
        z = np.round(self.image.world_to_data(self.w.viewer.dims.point)[0])
        return int(np.clip(z, 0, self.image.data.shape[0] - 1))

    def spacing_zyx_mm(self) -> tuple[float, float, float] | None:
        """The image layer's scale (the reader sets it to the voxel size in mm)."""
        scale = tuple(float(v) for v in getattr(self.w.image, "scale", ()))
        return scale if len(scale) == 3 and all(v > 0 for v in scale) else None

    def _can_run(self, label: int) -> bool:
        self._record_layer_paints()
        if self.w.image is None or self.labels is None:
            show_warning("MedSAM: choose a 3D image layer first.")
            return False
        if self.is_locked(label):
            show_warning(f"MedSAM: '{self.state.registry.name(label)}' is locked; unlock it first.")
            return False
        return True

    def _options(self) -> PropagationOptions:
        """The Advanced fold's settings, the scan's spacing and (if asked) the labels as negatives."""
        others = self.w.controls.others_negative_check.isChecked()
        return PropagationOptions(
            spacing_zyx_mm=self.spacing_zyx_mm(),
            negatives_from_zyx=np.array(self.labels.data) if others else None,  # a copy
            **self.controls.advanced.options(),
        )

    def _corrected_masks(self, label: int, extra=()) -> dict[int, np.ndarray]:
        zs = set(self.state.corrected_zs(label)) | {int(z) for z in extra}
        return {z: np.asarray(self.labels.data[z]) == label for z in sorted(zs)}

    def propagate(self, start_z: int | None = None, again: bool = False) -> int | None:
        """Propagate the current object on the worker; returns the job id.

        Propagate (``again=False``): from ``start_z`` (default: the slice shown)
        both ways through the volume, passing through corrected slices (seeded by
        their masks, never overwritten) and clearing past the object's new ends.
        Re-propagate (``again=True``): spread the slices corrected since the last
        run (or, if none, ``start_z`` / the slice corrected last) by the one policy
        of :mod:`napari_medsam.session.policy`: fill the gaps to the neighbouring
        corrected slices, propagate beyond the outermost.
        """
        w, label = self.w, self.label
        if not self._can_run(label):
            return None
        if again:
            changed = self._changed_zs.get(label, set()) & set(self.state.corrected_zs(label))
            if start_z is not None or not changed:
                last = self._last_corrected.get(label)
                start = start_z if start_z is not None else last
                changed = {int(self.current_z() if start is None else start)}
            return self._submit_repropagation(label, changed)
        start_z = self.current_z() if start_z is None else int(start_z)
        seed = np.asarray(self.labels.data[start_z]) == label
        if np.count_nonzero(seed) < DEFAULT_MIN_AREA:
            show_warning(
                f"MedSAM: object {label} is not on slice {start_z}: segment it there first."
            )
            return None
        locked_masks = self._corrected_masks(label)
        locked_masks.pop(start_z, None)
        options = self._options().replace(
            locked_zs=set(locked_masks), locked_masks=locked_masks, clear_past_end=True,
            seed_score=self._seed_scores(label).get(start_z),
        )  # fmt: skip
        task = propagate_job(
            w.holder, w.image.data, w.current_window(), start_z, seed, label, w._volume_key(),
            options,
        )  # fmt: skip
        return self._submit(task, label, "propagate")

    def _submit_repropagation(self, label: int, changed: set[int]) -> int | None:
        w = self.w
        masks = self._corrected_masks(label, changed)
        if any(np.count_nonzero(masks[z]) < DEFAULT_MIN_AREA for z in changed):
            empty = min(z for z in changed if np.count_nonzero(masks[z]) < DEFAULT_MIN_AREA)
            show_warning(f"MedSAM: object {label} is not on slice {empty}: segment it there first.")
            return None
        task = repropagate_job(
            w.holder, w.image.data, w.current_window(), sorted(changed), masks, label,
            w._volume_key(), self.controls.advanced.policy(), self._options(),
            self._seed_scores(label),
        )  # fmt: skip
        return self._submit(task, label, "propagate")

    def fill(self) -> int | None:
        """Fill between the current object's corrected slices (corrected slices kept)."""
        w, label = self.w, self.label
        if not self._can_run(label):
            return None
        masks = self._corrected_masks(label)
        present = [z for z, m in masks.items() if np.count_nonzero(m) >= DEFAULT_MIN_AREA]
        if len(present) < 2:
            show_warning("MedSAM: fill needs the object on two or more corrected slices.")
            return None
        task = fill_job(
            w.holder, w.image.data, w.current_window(), masks, label, w._volume_key(),
            fill_refine=self.controls.advanced.fill_refine(), spacing_zyx_mm=self.spacing_zyx_mm(),
        )  # fmt: skip
        return self._submit(task, label, "fill")

    def _name(self, label: int) -> str:
        registry = self.state.registry
        return registry.name(label) if label in registry else f"label {label}"

    def _submit(self, task, label: int, verb: str) -> int:
        self.end_propagation()
        self._ensure_registered(label)
        self._changed_zs.pop(label, None)
        self._ends = []
        self.undo_stack.begin_group(f"{verb} {self._name(label)}", label)
        self.propagation_job = self.w.segment_runner.submit(task)
        self.controls.set_propagating(True)
        return self.propagation_job

    def on_direction_end(self, end: DirectionEnd) -> None:
        """A direction of the running propagation ended: keep it for the report."""
        if self.w.segment_runner.job_id == self.propagation_job:
            self._ends.append(end)

    def stop_report(self) -> str:
        """``label 1: stopped above slice 24: overlap 0.53 < 0.60; stopped below ...``."""
        if not self._ends:
            return ""
        label = self._ends[0].label
        return f"label {label}: " + "; ".join(e.describe() for e in self._ends)

    def cancel(self) -> None:
        """Stop the running propagation; the slices painted so far stay (one undo step)."""
        self.w.segment_runner.cancel()
        self.end_propagation()

    def end_propagation(self) -> None:
        """Close the propagation's undo step (finished, cancelled or superseded); report stops."""
        if self.propagation_job is None:
            return
        self.propagation_job = None
        if self.undo_stack.in_group:
            self.undo_stack.end_group()
        self.controls.set_propagating(False)
        report = self.stop_report()
        self.controls.stop_label.setText(report)
        if report:
            self.w._update_status(report)
            show_info(f"MedSAM: {report}")
        self._ends = []
        self._changed()

    def _on_runner_finished(self, job_id: int) -> None:
        if self.propagation_job is not None and not self.w.segment_runner.busy:
            self.end_propagation()
