"""The prompts behind each undo step, as data rows: the clicks and boxes a step added or removed.

Qt-free. A user prompt's mask is one undo step. Undoing it must take its click or box
off the prompt layers too, and redo must put it back, or the next click would
re-segment from a prompt the user undid. :class:`PromptHistory` collects what changed
(rows added or removed, in each prompt layer's data frame, and the session's stored
prompts) since the last step, and hands it over as the step's ``extra``;
:func:`rows_to_replay` and :func:`replay_stored_prompts` apply it backwards (undo) or
forwards (redo). The napari face reads and writes the rows on its layers
(:mod:`napari_medsam._qt.session_prompts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

import numpy as np

from napari_medsam.session.state import SessionState
from napari_medsam.types import SlicePrompt

CLICKS = "clicks"  # the name of the clicks (points) prompt layer
BOXES = "boxes"  # the name of the boxes (shapes) prompt layer
ROWS_KEY = "prompt_rows"  # Step.extra: (rows added, rows removed)
STATE_KEY = "prompts"  # Step.extra: {(label, z): (prompt before, prompt after)}
LABEL_KEY = "prompt_label"  # Step.extra: the object whose prompts the rows are


@dataclass(frozen=True, eq=False)
class PromptRow:
    """One click of the clicks layer or one shape of the boxes layer.

    Attributes
    ----------
    layer : str
        :data:`CLICKS` or :data:`BOXES`.
    data : np.ndarray
        (3,) point or (V, 3) shape vertices, in that layer's data frame.
    positive : bool
        A positive click (clicks only).
    shape_type : str
        napari shape type (boxes only).
    """

    layer: str
    data: np.ndarray
    positive: bool = True
    shape_type: str = "rectangle"

    def same_as(self, other: PromptRow) -> bool:
        return (
            self.layer == other.layer
            and self.data.shape == other.data.shape
            and np.allclose(self.data, other.data)
            and self.positive == other.positive
            and self.shape_type == other.shape_type
        )


def rows_matching(current: list[PromptRow], rows: Iterable[PromptRow]) -> list[int]:
    """Indices into ``current`` of the latest row equal to each of ``rows`` (sorted, unique)."""
    doomed: set[int] = set()
    for row in rows:
        for i in range(len(current) - 1, -1, -1):
            if i not in doomed and current[i].same_as(row):
                doomed.add(i)
                break
    return sorted(doomed)


class PromptHistory:
    """Prompt changes since the last undo step of the current object."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget what is pending (another object, or a new undo stack)."""
        self._added: list[PromptRow] = []
        self._removed: list[PromptRow] = []
        self._before: dict[tuple[int, int], SlicePrompt | None] = {}

    def note_added(self, rows: Iterable[PromptRow]) -> None:
        """The user added ``rows`` to a prompt layer."""
        self._added.extend(rows)

    def note_removed(self, rows: Iterable[PromptRow]) -> None:
        """The user removed ``rows`` from a prompt layer."""
        for row in rows:
            match = next((r for r in reversed(self._added) if r.same_as(row)), None)
            if match is not None:  # added and removed again before any step: no change
                self._added.remove(match)
            else:
                self._removed.append(row)

    def note_state(self, state: SessionState, label: int, z: int) -> None:
        """``state``'s prompt of (``label``, ``z``) is about to change: keep the one before."""
        self._before.setdefault((int(label), int(z)), state.get_prompt(label, z))

    def take(self, state: SessionState, label: int) -> dict:
        """The step ``extra`` items for the changes pending (empty if none); resets."""
        extra: dict = {}
        if self._added or self._removed:
            extra[ROWS_KEY] = (tuple(self._added), tuple(self._removed))
            extra[LABEL_KEY] = int(label)
        prompts = {key: (before, state.get_prompt(*key)) for key, before in self._before.items()}
        prompts = {k: (b, a) for k, (b, a) in prompts.items() if b is not None or a is not None}
        if prompts:
            extra[STATE_KEY] = prompts
        self.clear()
        return extra


def rows_to_replay(extra: Mapping, undo: bool) -> tuple[tuple[PromptRow, ...], ...]:
    """``(rows to take off, rows to put back)`` on the prompt layers to undo / redo a step."""
    added, removed = extra.get(ROWS_KEY, ((), ()))
    return (tuple(added), tuple(removed)) if undo else (tuple(removed), tuple(added))


def replay_stored_prompts(
    extra: Mapping,
    undo: bool,
    state: SessionState,
    logits: MutableMapping[tuple[int, int], np.ndarray],
) -> None:
    """Put ``state``'s stored prompts back to before (undo) or after (redo) a step.

    The ``logits`` (``(label, z) -> low-res logits``) of every slice whose prompt
    changes are dropped, so the next click there does not feed back a stale mask.
    """
    for (label, z), (before, after) in extra.get(STATE_KEY, {}).items():
        prompt = before if undo else after
        if prompt is None:
            state.clear_prompts(label, z)
        else:
            state.set_prompt(label, z, prompt)
        logits.pop((label, z), None)


def saved_prompt_rows(prompts_by_z: Mapping[int, SlicePrompt]) -> list[PromptRow]:
    """One object's saved prompts as layer rows, in the image's (z, y, x) voxel frame.

    Parameters
    ----------
    prompts_by_z : mapping of int to SlicePrompt
        ``z -> prompt``: points (row, col) with labels 1 / 0, box (y0, x0, y1, x1)
        inclusive corners.

    Returns
    -------
    list of PromptRow
        By slice: its clicks ((3,) zyx each, with their sign), then its box as a
        rectangle ((4, 3) zyx corners). A GUI maps ``data`` to its layers' frames.
    """
    rows = []
    for z, prompt in sorted(prompts_by_z.items()):
        points_yx = np.asarray(prompt.points_yx, float).reshape(-1, 2)
        positive = np.asarray(prompt.point_labels).reshape(-1) > 0
        for (y, x), is_positive in zip(points_yx, positive, strict=True):
            rows.append(PromptRow(CLICKS, np.array([z, y, x], float), bool(is_positive)))
        if prompt.box_yxyx is not None:
            y0, x0, y1, x1 = (float(v) for v in prompt.box_yxyx)
            corners_zyx = [(z, y0, x0), (z, y0, x1), (z, y1, x1), (z, y1, x0)]
            rows.append(PromptRow(BOXES, np.array(corners_zyx, float)))
    return rows
