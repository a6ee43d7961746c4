"""The label registry on the labels layer: its colours, and a copy in the layer's metadata.

The colours make the layer look like the saved sidecars (TotalSegmentator preset
colours, or the user's). The metadata copy (key
:data:`~napari_medsam.session.labels.LAYER_METADATA_KEY`) is what napari's own
*File > Save Selected Layers* hands to the npe2 writer, which then writes the
label-name sidecars next to the NIfTI. GUI thread only.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Labels
from napari.utils.colormaps import CyclicLabelColormap, DirectLabelColormap, label_colormap

from napari_medsam.session import LabelRegistry
from napari_medsam.session.labels import LAYER_METADATA_KEY

MIN_FALLBACK_IDS = 255  # ids 1..N that keep napari's cyclic colours when not registered
MAX_FALLBACK_IDS = 4095  # never list more than this many unregistered ids
UNLISTED_RGBA = (0.7, 0.7, 0.7, 1.0)  # unregistered ids above the listed range still show


def cyclic_colors(cmap: CyclicLabelColormap, ids: np.ndarray) -> np.ndarray:
    """(N, 4) RGBA that ``cmap`` gives label ``ids`` (N,) >= 1, ignoring any selection mode."""
    colors = np.asarray(cmap.colors, float)
    return colors[(np.asarray(ids, np.int64) - 1) % (len(colors) - 1) + 1]


def registry_colormap(
    registry: LabelRegistry, fallback: CyclicLabelColormap, max_id: int = 0
) -> DirectLabelColormap:
    """A direct colormap: registry colours (hidden labels transparent), else ``fallback``'s.

    Parameters
    ----------
    registry : LabelRegistry
    fallback : CyclicLabelColormap
        Colours of ids 1..N that are not registered, N = ``max(255, max_id)``
        (at most 4095); ids above get a light grey.
    max_id : int
        The largest id in the volume.
    """
    n = min(max(MIN_FALLBACK_IDS, int(max_id), *registry.ids(), 0), MAX_FALLBACK_IDS)
    ids = np.arange(1, n + 1)
    color_dict: dict = {None: UNLISTED_RGBA, 0: (0.0, 0.0, 0.0, 0.0)}
    color_dict.update(zip(ids.tolist(), cyclic_colors(fallback, ids), strict=True))
    for info in registry:
        alpha = 1.0 if info.visible else 0.0
        color_dict[info.id] = (*(c / 255.0 for c in info.color), alpha)
    return DirectLabelColormap(color_dict=color_dict)


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
        cmap = registry_colormap(registry, fallback, max_id)
        cmap.use_selection = bool(layer.show_selected_label)
        cmap.selection = int(layer.selected_label)
        layer.colormap = cmap
        return True
