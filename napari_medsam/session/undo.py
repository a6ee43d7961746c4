"""Multi-level undo / redo of label edits, stored as sparse diffs.

A *step* is what one user action changed: flat voxel indices with their old and
new values (never whole volumes), the labels it touched, and an optional
``extra`` payload the caller restores itself (e.g. the prompts before and after).
Edits recorded inside ``with stack.group("propagate liver"):`` form one step, so
a whole propagation undoes at once. Within a step each voxel appears once (first
old value, last new value).

Undo and redo take an optional label: ``undo(labels, label=5)`` undoes the most
recent step that touched label 5, even if later steps touched other labels. Such
an out-of-order undo restores only the voxels that still hold the step's new
value; voxels changed again since then are left alone (and likewise for redo).

Memory is bounded: the oldest steps are dropped when the stack holds more than
``max_steps`` steps or ``max_bytes`` of diffs (the newest step is always kept).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from napari_medsam.session.painting import paint_mask, read_flat, write_flat


@dataclass
class Step:
    """One undoable action.

    Attributes
    ----------
    name : str
    labels : frozenset of int
        Label ids the step touched (declared, plus every non-zero old/new value).
    index : np.ndarray
        (N,) uint32 or int64 C-order flat voxel indices, unique and sorted.
    old, new : np.ndarray
        (N,) values before and after the step.
    extra : dict
        Caller data (e.g. prompts before/after); returned by undo/redo untouched.
    """

    name: str
    labels: frozenset[int]
    index: np.ndarray
    old: np.ndarray
    new: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.index.nbytes + self.old.nbytes + self.new.nbytes)

    def __len__(self) -> int:
        return int(self.index.size)


class _Builder:
    def __init__(self, name: str, labels: set[int], extra: dict | None):
        self.name = name
        self.labels = set(labels)
        self.extra = dict(extra or {})
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, index, old, new, label):
        if label is not None:
            self.labels.add(int(label))
        if len(index):
            self.parts.append((np.asarray(index, np.int64), np.asarray(old), np.asarray(new)))

    def build(self) -> Step | None:
        if self.parts:
            index = np.concatenate([p[0] for p in self.parts])
            old = np.concatenate([p[1] for p in self.parts])
            new = np.concatenate([p[2] for p in self.parts])
            # first occurrence of each voxel carries the old value, the last one the new
            order = np.argsort(index, kind="stable")
            index, old, new = index[order], old[order], new[order]
            first = np.ones(index.size, bool)
            first[1:] = index[1:] != index[:-1]
            last = np.ones(index.size, bool)
            last[:-1] = index[1:] != index[:-1]
            index, old, new = index[first], old[first], new[last]
            keep = old != new
            index, old, new = index[keep], old[keep], new[keep]
        else:
            index = np.zeros(0, np.int64)
            old = new = np.zeros(0, np.int64)
        if index.size == 0 and not self.extra:
            return None
        labels = self.labels | {int(v) for v in np.unique(np.concatenate([old, new])) if v != 0}
        if index.size and index[-1] < 2**32:
            index = index.astype(np.uint32)
        return Step(self.name, frozenset(labels), index, old, new, self.extra)


class UndoStack:
    """Undo / redo of edits to one labels volume.

    Parameters
    ----------
    max_steps : int
        Most steps kept (undo and redo together).
    max_bytes : int
        Most bytes of diffs kept.
    """

    def __init__(self, max_steps: int = 100, max_bytes: int = 256 * 2**20) -> None:
        self.max_steps = int(max_steps)
        self.max_bytes = int(max_bytes)
        self._undo: list[Step] = []
        self._redo: list[Step] = []
        self._open: _Builder | None = None
        self._depth = 0

    # -- recording ---------------------------------------------------------------
    def begin_group(self, name: str, label: int | None = None, extra: dict | None = None) -> None:
        """Open a step that collects every edit until the matching :meth:`end_group`.

        For work whose results arrive asynchronously (a propagation's slices reach
        the GUI thread one by one), where a ``with`` block cannot span them.
        Nested calls join the outermost step.
        """
        if self._open is None:
            self._open = _Builder(name, set() if label is None else {int(label)}, extra)
        elif extra:
            self._open.extra.update(extra)
        self._depth += 1

    def end_group(self) -> Step | None:
        """Close the step opened by :meth:`begin_group`; returns it once the outermost closes."""
        if self._depth == 0:
            raise RuntimeError("end_group without begin_group")
        self._depth -= 1
        if self._depth:
            return None
        builder, self._open = self._open, None
        step = builder.build()
        self._push(step)
        return step

    @property
    def in_group(self) -> bool:
        return self._open is not None

    @contextmanager
    def group(
        self, name: str, label: int | None = None, extra: dict | None = None
    ) -> Iterator[None]:
        """Record every edit inside the block as one step (nested groups join the outer one).

        Parameters
        ----------
        name : str
            Shown in an undo menu, e.g. ``"propagate liver"``.
        label : int, optional
            The object the step is about (also counted when nothing changed).
        extra : dict, optional
            Caller data kept with the step; :meth:`set_extra` adds more inside the block.
        """
        self.begin_group(name, label, extra)
        try:
            yield
        finally:
            self.end_group()

    def set_extra(self, **items) -> None:
        """Add items to the ``extra`` of the open group."""
        if self._open is None:
            raise RuntimeError("set_extra needs an open group")
        self._open.extra.update(items)

    def record(
        self,
        changed_index: np.ndarray,
        old_values: np.ndarray,
        new_values: np.ndarray,
        label: int | None = None,
        name: str = "edit",
        extra: dict | None = None,
    ) -> None:
        """Record an edit already applied to the volume (e.g. napari's brush).

        Parameters
        ----------
        changed_index : np.ndarray
            (N,) C-order flat voxel indices.
        old_values, new_values : np.ndarray
            (N,) values before and after.
        label : int, optional
            The object being edited.
        name : str
            Step name when not inside a group.
        extra : dict, optional
            Caller data (outside a group only; inside use :meth:`set_extra`).
        """
        with self.group(name, label, extra):
            self._open.add(changed_index, old_values, new_values, label)

    def paint(
        self,
        labels_zyx: np.ndarray,
        z: int,
        mask_yx: np.ndarray,
        label: int,
        locked_ids=frozenset(),
        overwrite_unlocked: bool = False,
        name: str = "paint",
    ) -> np.ndarray:
        """Apply :func:`~napari_medsam.session.painting.paint_mask` and record it.

        Returns
        -------
        np.ndarray
            (N,) int64 flat indices that changed (for refreshing the display).
        """
        index, old = paint_mask(labels_zyx, z, mask_yx, label, locked_ids, overwrite_unlocked)
        self.record(index, old, read_flat(labels_zyx, index), label, name)
        return index

    def _push(self, step: Step | None) -> None:
        if step is None:
            return
        self._undo.append(step)
        self._redo.clear()
        self._trim()

    def _trim(self) -> None:
        while len(self._undo) > 1 and (
            len(self._undo) + len(self._redo) > self.max_steps or self.nbytes > self.max_bytes
        ):
            self._undo.pop(0)

    # -- undo / redo -------------------------------------------------------------
    @staticmethod
    def _find(steps: list[Step], label: int | None) -> int | None:
        for i in range(len(steps) - 1, -1, -1):
            if label is None or int(label) in steps[i].labels:
                return i
        return None

    def peek(self, label: int | None = None, redo: bool = False) -> Step | None:
        """The step :meth:`undo` (or :meth:`redo`) would apply next, without applying it."""
        steps = self._redo if redo else self._undo
        i = self._find(steps, label)
        return None if i is None else steps[i]

    def can_undo(self, label: int | None = None) -> bool:
        return self._find(self._undo, label) is not None

    def can_redo(self, label: int | None = None) -> bool:
        return self._find(self._redo, label) is not None

    def undo(self, labels_zyx: np.ndarray, label: int | None = None) -> Step | None:
        """Undo the last step (touching ``label`` when given), in place.

        Returns
        -------
        Step or None
            The step undone (its ``index`` says which voxels to refresh, its
            ``extra`` what the caller should restore), or None if there is none.
        """
        if self._open is not None:
            raise RuntimeError("cannot undo inside an open group")
        i = self._find(self._undo, label)
        if i is None:
            return None
        step = self._undo.pop(i)
        self._apply(labels_zyx, step.index, expect=step.new, values=step.old)
        self._redo.append(step)
        return step

    def redo(self, labels_zyx: np.ndarray, label: int | None = None) -> Step | None:
        """Redo the last undone step (touching ``label`` when given), in place."""
        if self._open is not None:
            raise RuntimeError("cannot redo inside an open group")
        i = self._find(self._redo, label)
        if i is None:
            return None
        step = self._redo.pop(i)
        self._apply(labels_zyx, step.index, expect=step.old, values=step.new)
        self._undo.append(step)
        return step

    @staticmethod
    def _apply(labels_zyx, index, expect, values) -> None:
        if index.size == 0:
            return
        index = index.astype(np.int64)
        # voxels changed again by a later step keep their newer value
        ok = read_flat(labels_zyx, index) == expect
        write_flat(labels_zyx, index[ok], values[ok])

    # -- inspection --------------------------------------------------------------
    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._undo) + sum(s.nbytes for s in self._redo)

    @property
    def undo_names(self) -> list[str]:
        """Step names, oldest first."""
        return [s.name for s in self._undo]

    @property
    def redo_names(self) -> list[str]:
        """Undone step names, the next redo last."""
        return [s.name for s in self._redo]
