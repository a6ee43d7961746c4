"""The dock's first minutes: the model loads as soon as the dock opens, the status says
when it is ready, and a box-only model asks for a box at the point of use.

What a model can take comes from its capability flag
(:attr:`~napari_medsam.tasks.engine_holder.EngineHolder.needs_box`), never from its name, so a
click-trained checkpoint gets the click-first behaviour without a code change.
GUI thread only.
"""

from __future__ import annotations

from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from napari_medsam._qt import prompt_layers as wl
from napari_medsam.session.texts import NEEDS_BOX, NEEDS_BOX_HINT
from napari_medsam.tasks.engine_holder import BUNDLED_NAME, preload_enabled
from napari_medsam.tasks.jobs import preload_job


def schedule_preload(widget) -> None:
    """Start loading the bundled model once the event loop runs (if nothing is loaded).

    Deferred by one event-loop turn, so code that sets ``widget.engine`` right after
    making the dock (tests, scripts) is not overtaken by a load.
    """
    if preload_enabled():
        QTimer.singleShot(0, lambda: start_preload(widget))


def start_preload(widget) -> int | None:
    """Load the bundled model on the model worker now; the job id, or None if not needed."""
    if widget.holder.engine is not None or widget.model_runner.busy:
        return None
    widget.controls.model_label.setText(f"{BUNDLED_NAME} (bundled)")
    widget._update_status(f"loading {BUNDLED_NAME}…")
    return widget.model_runner.submit(preload_job(widget.holder, BUNDLED_NAME))


def select_first_prompt_layer(widget) -> None:
    """Make the prompt the model starts from the active layer: boxes or clicks.

    Also shows the matching help text in the dock.
    """
    box_first = widget.holder.needs_box
    widget.controls.show_help(box_first)
    layer = widget._boxes() if box_first else widget._clicks()
    if layer is not None and layer in widget.viewer.layers:
        widget.viewer.layers.selection.active = layer


def click_needs_box(widget, z: int) -> bool:
    """Whether a click on slice ``z`` can do nothing: a box-only model and no box there."""
    if not widget.holder.needs_box:
        return False
    boxes = widget._boxes()
    return boxes is None or wl.latest_box_on_slice(boxes, widget.image, z) is None


def ask_for_box(widget) -> None:
    """Say what to do at the point of use and select the boxes layer."""
    widget.controls.set_message(NEEDS_BOX_HINT)
    widget._update_status(NEEDS_BOX)
    show_info(f"MedSAM: {NEEDS_BOX_HINT}")
    boxes = widget._boxes()
    if boxes is not None:
        boxes.mode = "add_rectangle"
        widget.viewer.layers.selection.active = boxes


def clear_box_hint(widget) -> None:
    """Drop the hint once a box was drawn."""
    if widget.controls.message_label.text() == NEEDS_BOX_HINT:
        widget.controls.set_message("")
