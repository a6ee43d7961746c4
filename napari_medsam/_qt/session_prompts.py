"""The prompt layers' rows behind each undo step (GUI thread only).

The history itself is data (:mod:`napari_medsam.session.prompt_history`): what a step
added to or removed from the clicks and boxes layers, and the stored prompts it changed.
This face reads those rows off the layers, takes them off or puts them back on undo /
redo, and draws a restored session's prompts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from napari_medsam._qt import prompt_layers as wl
from napari_medsam.session import SessionState
from napari_medsam.session.prompt_history import (
    LABEL_KEY,
    PromptRow,
    rows_matching,
    rows_to_replay,
    saved_prompt_rows,
)
from napari_medsam.types import SlicePrompt


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
    doomed = rows_matching(current, rows)
    if doomed:
        layer.remove(doomed)
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


def draw_session_prompts(clicks, boxes, image, prompts_by_z: Mapping[int, SlicePrompt]) -> None:
    """Replace the prompt layers' rows by one object's saved prompts (``z -> SlicePrompt``)."""
    for layer in (clicks, boxes):
        if len(layer.data):
            layer.remove(list(range(len(layer.data))))
        rows = [r for r in saved_prompt_rows(prompts_by_z) if r.layer == layer.name]
        to_layer = lambda zyx: wl.from_image_zyx(layer, zyx, image).reshape(zyx.shape)  # noqa: E731
        add_rows(layer, [replace(r, data=to_layer(r.data)) for r in rows])


class SessionPrompts:
    """The prompt layers' share of a :class:`~napari_medsam._qt.session_view.Session3D`.

    Parameters
    ----------
    widget : MedSamWidget
        Its clicks / boxes layers and ``_ignore_layer_events`` flag are used.
    """

    def __init__(self, widget) -> None:
        self.w = widget

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

    def replay(self, extra: Mapping, undo: bool, label: int) -> None:
        """Undo / redo a step's clicks and boxes, if the layers show its object ``label``.

        The session put its stored prompts back already
        (:func:`~napari_medsam.session.prompt_history.replay_stored_prompts`).
        """
        if extra.get(LABEL_KEY) != int(label):  # no rows, or another object's
            return
        take_off, put_back = rows_to_replay(extra, undo)
        with self.quiet():
            for layer in (self.w._clicks(), self.w._boxes()):
                if layer is not None:
                    remove_rows(layer, [r for r in take_off if r.layer == layer.name])
                    add_rows(layer, [r for r in put_back if r.layer == layer.name])
