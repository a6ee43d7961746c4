"""The prompts behind each undo step: the clicks and boxes a step added or removed.

A user prompt's mask is one undo step (:class:`napari_medsam._qt.session_view.Session3D`).
Undoing it must take its click or box off the prompt layers too, and redo must put
it back, or the next click would re-segment from a prompt the user undid.
:class:`PromptHistory` collects what changed on the prompt layers (rows added or
removed, in each layer's data frame) and in the session's stored prompts since the
last step, and hands it over as the step's ``extra``; :func:`replay_prompts` applies
it backwards (undo) or forwards (redo). :class:`SessionPrompts` ties both to the
widget's layers, and draws a restored session's prompts. GUI thread only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from napari_medsam._qt import prompt_layers as wl
from napari_medsam.session import SessionState
from napari_medsam.types import SlicePrompt

ROWS_KEY = "prompt_rows"  # Step.extra: (rows added, rows removed)
STATE_KEY = "prompts"  # Step.extra: {(label, z): (prompt before, prompt after)}
LABEL_KEY = "prompt_label"  # Step.extra: the object whose prompts the rows are


@dataclass(frozen=True, eq=False)
class PromptRow:
    """One click of the clicks layer or one shape of the boxes layer.

    Attributes
    ----------
    layer : str
        ``wl.CLICKS_NAME`` or ``wl.BOXES_NAME``.
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


def _layer_name(layer) -> str:
    return wl.CLICKS_NAME if isinstance(layer, wl.Points) else wl.BOXES_NAME


def read_rows(layer, indices: Iterable[int]) -> list[PromptRow]:
    """The rows ``indices`` of a clicks (Points) or boxes (Shapes) layer, copied."""
    rows = []
    for i in indices:
        i = int(i) % len(layer.data)  # napari's events may use negative indices
        data = np.array(layer.data[i], float)
        if isinstance(layer, wl.Points):
            positive = bool(np.asarray(layer.features["positive"])[i])
            rows.append(PromptRow(wl.CLICKS_NAME, data, positive=positive))
        else:
            rows.append(PromptRow(wl.BOXES_NAME, data, shape_type=str(layer.shape_type[i])))
    return rows


def remove_rows(layer, rows: Iterable[PromptRow]) -> int:
    """Remove the latest row of ``layer`` equal to each of ``rows``; the number removed."""
    current = read_rows(layer, range(len(layer.data))) if len(layer.data) else []
    doomed: set[int] = set()
    for row in rows:
        for i in range(len(current) - 1, -1, -1):
            if i not in doomed and current[i].same_as(row):
                doomed.add(i)
                break
    if doomed:
        layer.remove(sorted(doomed))
        layer.selected_data = set()
    return len(doomed)


def add_rows(layer, rows: Iterable[PromptRow]) -> None:
    """Append ``rows`` to their layer (clicks keep their sign, shapes their type)."""
    rows = list(rows)
    if not rows:
        return
    if isinstance(layer, wl.Points):
        default = bool(layer.feature_defaults["positive"].iloc[0])
        try:
            for row in rows:
                layer.feature_defaults["positive"] = row.positive
                layer.add(row.data[None])
        finally:
            layer.feature_defaults["positive"] = default
    else:
        for row in rows:
            layer.add(row.data, shape_type=row.shape_type)
    layer.selected_data = set()


class PromptHistory:
    """Prompt changes since the last undo step of the current object."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget what is pending (another object, or a new undo stack)."""
        self._added: list[PromptRow] = []
        self._removed: list[PromptRow] = []
        self._before: dict[tuple[int, int], SlicePrompt | None] = {}

    def note_added(self, layer, indices: Iterable[int]) -> None:
        """The user added rows ``indices`` to a prompt layer."""
        self._added.extend(read_rows(layer, indices))

    def note_removed(self, layer, indices: Iterable[int]) -> None:
        """The user is removing rows ``indices`` (call while they are still in the layer)."""
        for row in read_rows(layer, indices):
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


def replay_prompts(
    extra: Mapping,
    undo: bool,
    layers: Mapping[str, object],
    state: SessionState,
    logits: MutableMapping[tuple[int, int], np.ndarray],
) -> None:
    """Undo (or redo) the prompt changes of a step.

    Parameters
    ----------
    extra : mapping
        The step's ``extra`` (from :meth:`PromptHistory.take`).
    undo : bool
        True to undo, False to redo.
    layers : mapping
        ``{wl.CLICKS_NAME: Points, wl.BOXES_NAME: Shapes}`` to change; empty to change
        only ``state`` (the layers show another object's prompts).
    state : SessionState
        Its stored prompts are put back to before (undo) or after (redo) the step.
    logits : mutable mapping
        ``(label, z) -> low-res logits`` of the widget: entries of the slices whose
        prompts change are dropped, so the next click does not feed back a stale mask.
    """
    added, removed = extra.get(ROWS_KEY, ((), ()))
    take_off, put_back = (added, removed) if undo else (removed, added)
    for name, layer in layers.items():
        if layer is not None:
            remove_rows(layer, [r for r in take_off if r.layer == name])
            add_rows(layer, [r for r in put_back if r.layer == name])
    for (label, z), (before, after) in extra.get(STATE_KEY, {}).items():
        prompt = before if undo else after
        if prompt is None:
            state.clear_prompts(label, z)
        else:
            state.set_prompt(label, z, prompt)
        logits.pop((label, z), None)


def draw_session_prompts(clicks, boxes, image, prompts_by_z: Mapping[int, SlicePrompt]) -> None:
    """Replace the prompt layers' rows by one object's saved prompts (``z -> SlicePrompt``)."""
    if len(clicks.data):
        clicks.remove(list(range(len(clicks.data))))
    if len(boxes.data):
        boxes.remove(list(range(len(boxes.data))))
    for z, prompt in sorted(prompts_by_z.items()):
        wl.draw_slice_prompt(clicks, boxes, image, z, prompt)
    clicks.selected_data = set()
    boxes.selected_data = set()


class SessionPrompts:
    """The prompt layers' share of a :class:`~napari_medsam._qt.session_view.Session3D`.

    Parameters
    ----------
    widget : MedSamWidget
        Its clicks / boxes layers, ``_ignore_layer_events`` flag and ``_logits`` are used.
    """

    def __init__(self, widget) -> None:
        self.w = widget
        self.history = PromptHistory()

    @contextmanager
    def quiet(self):
        """Change the prompt layers without their events starting a segmentation."""
        self.w._ignore_layer_events, before = True, self.w._ignore_layer_events
        try:
            yield
        finally:
            self.w._ignore_layer_events = before

    def draw_saved(self, state: SessionState, label: int) -> None:
        """Show object ``label``'s saved clicks and boxes (they feed its next prompts).

        Only the current object's: every click on a slice joins the next prompt there.
        """
        clicks, boxes = self.w._clicks(), self.w._boxes()
        if clicks is not None and boxes is not None and self.w.image is not None:
            with self.quiet():
                draw_session_prompts(clicks, boxes, self.w.image, state.prompts.get(label, {}))

    def replay(self, extra: Mapping, undo: bool, state: SessionState, label: int) -> None:
        """Undo / redo a step's prompt changes; the layers change if they show its object."""
        if LABEL_KEY not in extra and STATE_KEY not in extra:
            return
        layers = {}
        if extra.get(LABEL_KEY) == int(label):  # else they show another object's prompts
            layers = {wl.CLICKS_NAME: self.w._clicks(), wl.BOXES_NAME: self.w._boxes()}
        with self.quiet():
            replay_prompts(extra, undo, layers, state, self.w._logits)
