"""The annotation session: one object that the app, the 3D benchmark and scripts drive.

Qt-free and napari-free. An :class:`AnnotationSession` holds, for one scan:

- the label volume it paints (a numpy array, or any array-like whose fancy-index
  writes the caller routes, e.g. through a napari layer's ``data_setitem``);
- the :class:`~napari_medsam.session.state.SessionState` (object registry and
  locks, corrected slices, prompts as data);
- the logits cache (``(label, z) -> low-res logits``, fed back to the next prompt
  on that slice) and the model's score of every prompted slice;
- the :class:`~napari_medsam.session.undo.UndoStack`, and the prompt changes each of
  its steps carries (:class:`~napari_medsam.session.prompt_history.PromptHistory`);
- the propagation policy: which request a Propagate, Re-propagate or Fill becomes
  (:mod:`napari_medsam.tasks.policy`, :class:`PropagationOptions`);
- an autosave hook, called after every change (``on_change``).

Its verbs return data: :meth:`segment_request`, :meth:`propagate_request` and
:meth:`fill_request` give a request of :mod:`napari_medsam.session.requests` to run
(on a worker, or inline); :meth:`apply_result` paints what came back, by the one
painting rule (:func:`~napari_medsam.session.painting.paint_mask`: locked objects are
never overwritten). ``eval --protocol 3d`` runs on this object, so it measures the
policy the app ships.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from napari_medsam.session.painting import paint_mask
from napari_medsam.session.prompt_history import PromptHistory, replay_stored_prompts
from napari_medsam.tasks.policy import DEFAULT_POLICY, RepropagationPolicy
from napari_medsam.session.requests import (
    FillRequest,
    PropagateRequest,
    RepropagateRequest,
    SegmentRequest,
)
from napari_medsam.session.state import SessionState
from napari_medsam.session.undo import UndoStack
from napari_medsam.tasks.propagate import DEFAULT_MIN_AREA
from napari_medsam.tasks.propagate_options import DEFAULT_OPTIONS, PropagationOptions
from napari_medsam.types import DirectionEnd, SliceMask, SlicePrompt


class ObjectLockedError(ValueError):
    """The object is locked: no prompt, propagation or paint may change it."""


class AnnotationSession:
    """Objects, prompts, logits, undo and the propagation policy of one scan.

    Parameters
    ----------
    labels_zyx : array-like
        (Z, Y, X) integer label volume the session paints (read with ``[z]``, written
        with ``[(zs, ys, xs)] = values``).
    state : SessionState, optional
        Restored state (default: a new one).
    policy : RepropagationPolicy
        What Re-propagate does between and beyond corrected slices.
    options : PropagationOptions
        Settings of every propagation (stop rule, mask prompt, spacing, ...).
    on_change : callable, optional
        ``on_change()`` after every change outside a running propagation (autosave).
    """

    def __init__(
        self,
        labels_zyx,
        state: SessionState | None = None,
        policy: RepropagationPolicy = DEFAULT_POLICY,
        options: PropagationOptions = DEFAULT_OPTIONS,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.labels = labels_zyx
        self.state = state if state is not None else SessionState()
        self.policy = policy
        self.options = options
        self.on_change = on_change or (lambda: None)
        self.undo_stack = UndoStack()
        self.prompt_history = PromptHistory()  # prompt changes the next user step carries
        self.logits: dict[tuple[int, int], np.ndarray] = {}
        self.scores: dict[tuple[int, int], float] = {}
        self.overwrite_unlocked = False
        self._changed_zs: dict[int, set[int]] = {}  # label -> corrected since the last run
        self._last_corrected: dict[int, int] = {}
        self._running = False
        self.ends: list[DirectionEnd] = []  # where the current (or last) run stopped, and why

    # ------------------------------------------------------------ objects
    def is_locked(self, label: int) -> bool:
        registry = self.state.registry
        return label in registry and registry[label].locked

    def _check_unlocked(self, label: int) -> None:
        if self.is_locked(label):
            raise ObjectLockedError(f"'{self.state.registry.name(label)}' is locked; unlock it first")

    def ensure_registered(self, label: int, name: str = "") -> None:
        """Register ``label`` (as ``name``, or ``label N``) if it is not yet."""
        if label not in self.state.registry:
            self.state.registry.add(name or f"label {label}", int(label))

    def select_object(self, label: int) -> None:
        """``label`` becomes the current object: others' logits and pending prompt changes go."""
        self.state.active_label = int(label)
        self.prompt_history.clear()
        for other in {key[0] for key in self.logits} - {int(label)}:
            self.forget_logits(other)

    def commit_object(self) -> int:
        """Finish the current object; the next free label id (one more than the largest)."""
        self.logits.clear()
        labels = np.asarray(self.labels[...])
        return int(labels.max()) + 1 if labels.size else 1

    # ------------------------------------------------------------ prompts
    def segment_request(
        self, label: int, z: int, prompt: SlicePrompt, others_negative: bool = False
    ) -> SegmentRequest:
        """A user prompt on slice ``z``: the request to run (the stored logits fed back).

        Raises
        ------
        ObjectLockedError
            The object is locked.
        ValueError
            An empty prompt.
        """
        self._check_unlocked(label)
        if prompt.is_empty:
            raise ValueError("the prompt has neither clicks nor a box")
        label, z = int(label), int(z)
        prompt = replace(prompt, prev_logits_lowres=self.logits.get((label, z)))
        self.prompt_history.note_state(self.state, label, z)
        self.state.set_prompt(label, z, prompt)
        others = np.array(self.labels[z]) if others_negative else None  # a copy
        return SegmentRequest(label, z, prompt, others)

    def forget_logits(self, label: int, z: int | None = None) -> None:
        """Drop the stored logits of ``label`` on ``z`` (all its slices when None)."""
        for key in [k for k in self.logits if k[0] == label and (z is None or k[1] == z)]:
            del self.logits[key]

    # ------------------------------------------------------------ painting
    def apply_result(
        self, result: SliceMask, by_user: bool, name: str | None = None, extra: dict | None = None
    ) -> bool:
        """Paint a result as an undo step (inside a running propagation: part of its step).

        A user prompt's slice becomes corrected: re-propagation keeps it and spreads it,
        and its step carries the prompt changes since the last step (undo takes them back).
        Returns False when nothing was painted (the object is locked).
        """
        label, z = int(result.label), int(result.z)
        if self.is_locked(label):
            return False
        if by_user:
            extra = {**(extra or {}), **self.prompt_history.take(self.state, label)}
        self.ensure_registered(label)
        newly = [(label, z)] if by_user and z not in self.state.corrected_zs(label) else []
        slice_yx = np.array(self.labels[z], copy=True)
        locked = self.state.registry.locked_ids()
        in_slice, old = paint_mask(
            slice_yx[None], 0, result.mask_yx, label, locked, self.overwrite_unlocked
        )
        new = slice_yx.reshape(-1)[in_slice]
        if in_slice.size:
            ys, xs = np.divmod(in_slice, slice_yx.shape[1])
            self.labels[(np.full(in_slice.size, z, np.intp), ys, xs)] = new
        step_extra = dict(extra or {}, **({"corrected": newly} if newly else {}))
        name = name or (f"segment slice {z}" if by_user else "propagate")
        index = in_slice + z * slice_yx.size
        self.undo_stack.record(index, old, new, label, name, step_extra or None)
        if result.logits_lowres is not None:
            self.logits[(label, z)] = result.logits_lowres
        if by_user:
            self.note_corrected(label, z, float(result.score))
        self._changed()
        return True

    def clear_slice(self, label: int, z: int) -> bool:
        """Take object ``label`` off slice ``z`` (its last prompt there was deleted).

        One undo step: the voxels, the stored prompt and the corrected mark come back on
        undo. The prompt and the mark go even if the object is locked (nothing is painted;
        returns False).
        """
        label, z = int(label), int(z)
        self.prompt_history.note_state(self.state, label, z)
        self.state.clear_prompts(label, z)
        extra = {"uncorrected": [(label, z)]} if z in self.state.corrected_zs(label) else {}
        self.state.unmark_corrected(label, z)
        extra.update(self.prompt_history.take(self.state, label))
        empty = SliceMask(z, label, np.zeros(tuple(self.labels.shape[1:]), bool), 0.0, None)
        return self.apply_result(empty, False, f"clear slice {z}", extra)

    def record_edit(self, index, old, new, label: int, name: str = "brush") -> bool:
        """A hand edit (brush, eraser, fill) changed the voxels: record it as one undo step.

        Parameters
        ----------
        index, old, new : np.ndarray
            (N,) C-order flat voxel indices and their values before and after.
        label : int
            The current object: the step's owner, and the object corrected when the
            edit only erased background.

        Every object the edit touched counts as corrected on the slices it touched (the
        next Re-propagate spreads them). Returns False for an empty edit.
        """
        if index.size == 0:
            return False
        zs = np.unique(index // int(np.prod(tuple(self.labels.shape[1:]))))
        touched = {int(v) for v in np.unique(np.concatenate([old, new])) if v} or {int(label)}
        newly = [
            (lab, int(z)) for lab in touched for z in zs if z not in self.state.corrected_zs(lab)
        ]
        for lab in touched:
            for z in zs:
                self.note_corrected(lab, int(z))
        extra = {"corrected": newly} if newly else None
        self.undo_stack.record(index, old, new, label, name, extra)
        self._changed()
        return True

    def note_corrected(self, label: int, z: int, score: float | None = None) -> None:
        """Slice ``z`` of ``label`` was corrected (by a prompt scored ``score``, or by hand)."""
        label, z = int(label), int(z)
        self.state.mark_corrected(label, z)
        self._changed_zs.setdefault(label, set()).add(z)
        self._last_corrected[label] = z
        if score is None:
            self.scores.pop((label, z), None)
        else:
            self.scores[(label, z)] = float(score)

    def _changed(self) -> None:
        if not self._running:
            self.on_change()

    # ------------------------------------------------------------ propagation
    def corrected_masks(self, label: int, extra=()) -> dict[int, np.ndarray]:
        """``z -> (Y, X) bool`` of the object on its corrected slices (and ``extra``)."""
        zs = set(self.state.corrected_zs(label)) | {int(z) for z in extra}
        return {z: np.asarray(self.labels[z]) == label for z in sorted(zs)}

    def seed_scores(self, label: int) -> dict[int, float]:
        return {z: s for (lab, z), s in self.scores.items() if lab == label}

    def _options(self, others_negative: bool) -> PropagationOptions:
        if not others_negative:  # the options' own negatives (a label file of the CLI), if any
            return self.options
        return self.options.replace(negatives_from_zyx=np.array(self.labels[...]))  # a copy

    def propagate_request(
        self,
        label: int,
        start_z: int | None = None,
        again: bool = False,
        others_negative: bool = False,
    ) -> PropagateRequest | RepropagateRequest:
        """The request of Propagate (``again=False``) or Re-propagate (``again=True``).

        Propagate: from ``start_z`` both ways through the volume, passing through the
        corrected slices (seeded by their masks, never overwritten), clearing past the
        object's new ends. Re-propagate: spread the slices corrected since the last run
        (if none: ``start_z``, else the slice corrected last) by the policy.

        Raises
        ------
        ObjectLockedError
            The object is locked.
        ValueError
            No start slice, or the object is not on a slice the run starts from.
        """
        self._check_unlocked(label)
        label = int(label)
        if again:
            changed = self._changed_zs.get(label, set()) & set(self.state.corrected_zs(label))
            if start_z is not None or not changed:
                start = start_z if start_z is not None else self._last_corrected.get(label)
                if start is None:
                    raise ValueError(f"object {label} has no corrected slice to start from")
                changed = {int(start)}
            masks = self.corrected_masks(label, changed)
            self._require_on(label, masks, changed)
            return RepropagateRequest(
                label, tuple(sorted(changed)), masks, self.policy,
                self._options(others_negative), self.seed_scores(label),
            )  # fmt: skip
        if start_z is None:
            raise ValueError("Propagate needs the slice to start from")
        start_z = int(start_z)
        seed = np.asarray(self.labels[start_z]) == label
        self._require_on(label, {start_z: seed}, {start_z})
        locked = self.corrected_masks(label)
        locked.pop(start_z, None)
        options = self._options(others_negative).replace(
            locked_zs=set(locked), locked_masks=locked, clear_past_end=True,
            seed_score=self.scores.get((label, start_z)),
            start_logits_lowres=self.logits.get((label, start_z)),
        )  # fmt: skip
        return PropagateRequest(label, start_z, seed, options)

    def fill_request(self, label: int) -> FillRequest:
        """Fill between the object's corrected slices (needs two with the object on them)."""
        self._check_unlocked(label)
        masks = self.corrected_masks(label)
        present = [z for z, m in masks.items() if np.count_nonzero(m) >= DEFAULT_MIN_AREA]
        if len(present) < 2:
            raise ValueError("fill needs the object on two or more corrected slices")
        return FillRequest(int(label), masks, self.policy.fill_refine, self.options.spacing_zyx_mm)

    @staticmethod
    def _require_on(label: int, masks: dict, zs) -> None:
        empty = sorted(z for z in zs if np.count_nonzero(masks[z]) < DEFAULT_MIN_AREA)
        if empty:
            raise ValueError(f"object {label} is not on slice {empty[0]}: segment it there first")

    def begin_run(self, label: int, verb: str = "propagate") -> None:
        """A propagation, re-propagation or fill starts: its results make one undo step."""
        name = self.state.registry.name(label) if label in self.state.registry else f"label {label}"
        self.ensure_registered(label)
        self._changed_zs.pop(int(label), None)
        self.undo_stack.begin_group(f"{verb} {name}", int(label))
        self._running = True
        self.ends = []

    def end_run(self) -> None:
        """The run finished, was cancelled or superseded: close its step, save once."""
        if not self._running:
            return
        self._running = False
        if self.undo_stack.in_group:
            self.undo_stack.end_group()
        self._changed()

    def stop_report(self) -> str:
        """``label 1: stopped above slice 24: overlap 0.53 < 0.60; stopped below ...``."""
        if not self.ends:
            return ""
        return f"label {self.ends[0].label}: " + "; ".join(e.describe() for e in self.ends)

    @property
    def running(self) -> bool:
        """Whether a run's results are being collected into one step."""
        return self._running

    @contextmanager
    def run(self, label: int, verb: str = "propagate"):
        """:meth:`begin_run` ... :meth:`end_run` around a run done inline."""
        self.begin_run(label, verb)
        try:
            yield self
        finally:
            self.end_run()

    def has_start(self, label: int) -> bool:
        """Whether Re-propagate knows where to start without a slice given."""
        pending = self._changed_zs.get(int(label), set()) & set(self.state.corrected_zs(label))
        return bool(pending) or int(label) in self._last_corrected

    # ------------------------------------------------------------ undo / redo
    def undo(self, label: int | None = None):
        """Undo ``label``'s latest step (any object's when None); the step or None."""
        return self._undo_redo(label, undo=True)

    def redo(self, label: int | None = None):
        """Redo ``label``'s latest undone step; the step or None."""
        return self._undo_redo(label, undo=False)

    def _undo_redo(self, label, undo: bool):
        stack = self.undo_stack
        step = stack.undo(self.labels, label) if undo else stack.redo(self.labels, label)
        if step is not None:
            self.state.replay_corrections(step.extra, undo)
            replay_stored_prompts(step.extra or {}, undo, self.state, self.logits)
            self._changed()
        return step
