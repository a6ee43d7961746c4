"""The labels layer: created on the image's grid, painted and undone through
``data_setitem``, coloured and tagged by the label registry, saved as NIfTI.

GUI thread only. Every edit goes through ``Labels.data_setitem`` so the display
refreshes and napari's own per-layer history stays a true log of what changed
(the session's :class:`~napari_medsam.session.undo.UndoStack` is the one the
keys drive; see :mod:`napari_medsam._qt.session_view`). The registry's colours make
the layer look like the saved sidecars; its copy in the layer's metadata (key
:data:`~napari_medsam.session.labels.LAYER_METADATA_KEY`) is what napari's own
*File > Save Selected Layers* hands to the npe2 writer.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import CyclicLabelColormap, DirectLabelColormap, label_colormap

from napari_medsam._qt.prompt_layers import grid_kwargs
from napari_medsam.session import LabelRegistry
from napari_medsam.session.labels import LAYER_METADATA_KEY, registry_colors

LABELS_DTYPE = np.uint16
SOURCE_KEY = "napari_medsam_image"  # labels metadata: name of the image it segments


def labels_name(image: Image) -> str:
    """Name of the labels layer that belongs to ``image``."""
    return f"{image.name} labels"


def ensure_labels_layer(viewer, image: Image) -> Labels:
    """Find or create the widget's labels layer for ``image``, on the image's grid.

    Only a layer this widget made (``metadata[SOURCE_KEY] == image.name``) is
    reused, so a ground-truth labels layer that happens to be called
    ``"<image> labels"`` is never painted over. The image's metadata (affine,
    header, orientation of the source file) is copied so that the NIfTI writer
    saves the labels on the scan's own grid.
    """
    for layer in viewer.layers:
        if (
            isinstance(layer, Labels)
            and layer.metadata.get(SOURCE_KEY) == image.name
            and layer.data.shape == image.data.shape
        ):
            return layer
    metadata = dict(image.metadata)
    metadata[SOURCE_KEY] = image.name
    return viewer.add_labels(
        np.zeros(image.data.shape, dtype=LABELS_DTYPE),
        name=labels_name(image),  # napari appends " [1]" if the name is taken
        metadata=metadata,
        opacity=0.6,
        **grid_kwargs(image),
    )


class LayerArray:
    """Array-like view of a Labels layer whose writes go through ``data_setitem``.

    :meth:`UndoStack.undo` / :meth:`UndoStack.redo` read and write voxels by
    fancy indexing; handing them this instead of ``layer.data`` makes every
    undo refresh the display and enter napari's history like any other edit.
    """

    def __init__(self, layer: Labels):
        self.layer = layer

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.layer.data.shape)

    @property
    def dtype(self):
        return self.layer.data.dtype

    def __getitem__(self, key):
        return self.layer.data[key]

    def __setitem__(self, key, values) -> None:
        values = np.broadcast_to(np.asarray(values, self.layer.data.dtype), np.shape(key[0]))
        self.layer.data_setitem(key, np.array(values))


class RegistryOnLayer:
    """Keeps a labels layer's colours and metadata in step with a registry."""

    def __init__(self) -> None:
        self._layer_id: object = None
        self._shown: dict | None = None
        self._fallback: CyclicLabelColormap | None = None

    def show(self, layer: Labels, registry: LabelRegistry) -> bool:
        """Apply ``registry`` to ``layer`` if it (or the layer) changed; True if applied."""
        record = registry.to_dict()
        layer_id = getattr(layer, "unique_id", id(layer))
        if layer_id != self._layer_id:
            self._layer_id, self._shown, self._fallback = layer_id, None, None
        elif record == self._shown:
            return False
        self._shown = record
        layer.metadata[LAYER_METADATA_KEY] = record
        if isinstance(layer.colormap, CyclicLabelColormap):  # napari's (or the user's shuffle)
            self._fallback = layer.colormap
        fallback = self._fallback or label_colormap(49, 0.5, background_value=0)
        if not len(registry):
            if not isinstance(layer.colormap, CyclicLabelColormap):
                layer.colormap = fallback
            return True
        max_id = int(np.max(layer.data)) if np.size(layer.data) else 0
        cmap = DirectLabelColormap(color_dict=registry_colors(registry, fallback.colors, max_id))
        cmap.use_selection = bool(layer.show_selected_label)
        cmap.selection = int(layer.selected_label)
        layer.colormap = cmap
        return True
