"""What the dock says: help, tooltips and the messages its lines and notifications show.

Qt-free: plain strings and functions that build them from data. The Qt side
(:mod:`napari_medsam._qt`) only puts them on its widgets, so the wording can be
read, changed and tested without a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_medsam.io.orientation import zyx_to_file_ijk

_CLICKS_HELP = (
    "<b>Click</b> on the <i>clicks</i> layer: positive (green). "
    "<b>Shift+click</b>, or tick <i>Negative clicks</i> (key <b>N</b>): negative (red).<br>"
)
_BOX_HELP = "<b>Box</b>: on the <i>boxes</i> layer, drag a rectangle around the object.<br>"
_COMMON_HELP = (
    "Each click or box segments the current object on that slice. "
    "<b>Enter</b> (or <i>Commit object</i>) finishes it; the next object gets the next id. "
    "Ctrl+Z / Ctrl+Shift+Z: undo / redo."
)
#: Help for a click-capable model: clicks first.
HELP_TEXT = _CLICKS_HELP + _BOX_HELP + _COMMON_HELP
#: Help for a box-only model (the bundled LiteMedSAM): a box first, clicks refine.
HELP_TEXT_BOX_FIRST = (
    "<b>This model needs a box first.</b> " + _BOX_HELP + "Then clicks refine it: " + _CLICKS_HELP
    + _COMMON_HELP
)

HELP_3D = (
    "<b>Propagate</b> (key <b>P</b> on the clicks/boxes layer) segments the current object "
    "on the slices above and below the one shown, from its mask there. Correct any slice "
    "with clicks, a box or napari's brush, then <b>Re-propagate</b> (<b>Shift+P</b>) from "
    "that slice: the slices between it and the next corrected slices are filled, beyond them "
    "it propagates; hand-corrected slices are kept. <b>Fill</b> (<b>F</b>) fills every gap "
    "between the object's corrected slices (interpolation refined by the model). <b>Ctrl+Z</b> / <b>Ctrl+Shift+Z</b>: "
    "undo / redo of the current object's steps (a whole propagation is one step; undoing a "
    "click's or box's result takes it off the layer too). The session autosaves next to the scan."
)

#: Tooltips of the main controls (:class:`napari_medsam._qt.controls.Controls`), by attribute.
CONTROLS_TOOLTIPS = {
    "image_combo": "3D image layer to segment",
    "window_combo": (
        "Sets the image contrast limits; the model always sees the current contrast limits"
    ),
    "backend_combo": (
        "Image encoder and click decoder: auto = OpenVINO on a CPU when installed "
        "(3-5x faster), else torch"
    ),
    "load_button": "LiteMedSAM, SAM ViT-B/L/H or Med-SA weights (also under Layers > Segment)",
    "label_spin": "Label id of the object being segmented",
    "others_negative_check": (
        "Add negative clicks inside the other labelled objects that the box reaches "
        "(or that lie near the clicks), on each slice segmented or propagated, so the "
        "new object stays out of them. For click-trained models (SAM, Med-SA): the "
        "box-trained LiteMedSAM does worse with any click (spleen Dice 0.95 -> 0.73)."
    ),
    "zoom_check": (
        "Click model: after the first mask on a slice, predict corrections on a crop "
        "around the object re-embedded at the model's size (sharper edges on small "
        "lesions; a new crop costs one embedding)."
    ),
    "embed_button": "Precompute the model's embeddings of 20 slices around this one",
}
ADVANCED_TOOLTIP = "Device, other model checkpoints, other objects as negatives, embeddings"

#: Tooltips of the 3D section (:class:`napari_medsam._qt.session_controls.Session3DControls`).
SESSION_TOOLTIPS = {
    "name_combo": "Name of the current object: a TotalSegmentator class or any text (Enter)",
    "lock_check": "A locked object's voxels are never overwritten",
    "overwrite_check": (
        "Off: a new mask only takes background voxels. On: it also takes voxels of "
        "other objects that are not locked."
    ),
    "propagate_button": "Segment the current object through the volume from the slice shown",
    "repropagate_button": (
        "Propagate again from the last corrected slice; corrected slices are kept"
    ),
    "fill_button": (
        "Fill the slices between the current object's corrected slices: shape "
        "interpolation, refined by the model; corrected slices are kept"
    ),
    "save_button": "NIfTI on the scan's grid, with label names for 3D Slicer / ITK-SNAP",
    "stop_label": "Where the last propagation stopped in each direction, and why",
    "session_label": HELP_3D,
}

#: Tooltips of the 3D section's "Advanced" fold, by attribute.
ADVANCED_PROPAGATION_TOOLTIPS = {
    "stop_score_spin": (
        "Stop a direction where the model's predicted IoU falls below this. "
        "Auto: the measured rule (fitted to the object's first slice)."
    ),
    "stop_overlap_spin": (
        "Stop where the mask overlaps the previous slice's (IoU) less than this. "
        "Auto: fitted to the slice spacing and the object's size (thick slices allow less)."
    ),
    "mask_prompt_combo": (
        "How the previous slice's mask prompts the next slice besides its box: none (box "
        "only), the model's logits, or the binary mask as SAM's dense prompt"
    ),
    "gaps_combo": (
        "Re-propagate between corrected slices: fill (interpolate, then refine with the "
        "model), propagate from the corrected slice, or keep what is there"
    ),
    "refine_combo": (
        "Fill between slices: keep the interpolated masks (none), or let the model "
        "refine each from its box (box) or box and mask (box+mask)"
    ),
}

NEEDS_BOX = "this model needs a box first"
NEEDS_BOX_HINT = (
    f"{NEEDS_BOX}: draw a rectangle around the object on the boxes layer (now selected); "
    "clicks then refine it. The click was taken off."
)
NO_IMAGE_MESSAGE = "Open a 3D CT or MR scan (File > Open, or File > Open Sample)."


def no_volume_reason(name: str, ndim: int, shape: tuple[int, ...], rgb: bool) -> str:
    """Why the image layer ``name`` (``ndim``-D, of ``shape``) cannot be segmented."""
    kind = "an RGB image" if rgb else f"{ndim}D {tuple(shape)}"
    return f"'{name}' is {kind}: MedSAM needs a 3D volume (z, y, x). Choose a 3D image layer."


def opened_as_labels_reason(name: str) -> str:
    """No image layer, but ``name`` (a file opened as labels) may be the scan."""
    return (
        f"No image layer: '{name}' was opened as labels (its values looked "
        "like a label map). If it is a scan, right-click it in the layer list > "
        "Convert to Image."
    )


def model_text(name: str, checkpoint: str | None) -> str:
    """The model line: ``"<engine name> (<checkpoint file> or bundled)"``."""
    source = Path(checkpoint).name if checkpoint else "bundled"
    return f"{name} ({source})"


def undo_tooltips(last: str | None, next_redo: str | None) -> tuple[str, str]:
    """Tooltips of the Undo and Redo buttons, from the names of the steps they would take."""
    undo = f"Undo {last} (Ctrl+Z)" if last else "Nothing to undo for this object"
    redo = f"Redo {next_redo} (Ctrl+Shift+Z)" if next_redo else "Nothing to redo for this object"
    return undo, redo


def slice_result_text(
    z: int, pixels: int, score: float, latency_ms: float | None = None, with_load: bool = False
) -> str:
    """Status line after a slice was painted: its size, score and (for a prompt) latency."""
    text = f"slice {z}: {int(pixels)} px, score {score:.2f}"
    if latency_ms is not None:
        text += f", {latency_ms:.0f} ms" + (" with model load" if with_load else "")
    return text


_GRID_KEYS = ("ornt", "file_shape")


def voxel_text(zyx, shape_zyx: tuple[int, ...], metadata) -> str | None:
    """``"voxel zyx [z y x] \u00b7 file ijk [i j k]"`` for a position in a volume's voxel frame.

    Parameters
    ----------
    zyx : sequence of float
        (3,) the cursor in the volume's (z, y, x) voxel frame; rounded to a voxel.
    shape_zyx : tuple of int
        The volume's shape.
    metadata : mapping
        The image's metadata: with the source file's grid (``ornt``, ``file_shape``) the
        file's own (i, j, k) are added.

    Returns
    -------
    str or None
        None outside the volume; only the display voxels when there is no file grid.
    """
    zyx = np.round(np.asarray(zyx, float)).astype(int)
    if np.any(zyx < 0) or np.any(zyx >= np.asarray(shape_zyx)):
        return None
    text = f"voxel zyx [{zyx[0]} {zyx[1]} {zyx[2]}]"
    if all(k in metadata for k in _GRID_KEYS):
        try:
            i, j, k = (int(v) for v in zyx_to_file_ijk(zyx, metadata))
        except ValueError:
            return text
        text += f" \u00b7 file ijk [{i} {j} {k}]"  # a middle dot (the package is ASCII)
    return text
