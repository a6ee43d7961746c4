"""Which image layers the MedSAM widget can segment, and what to say about the others."""

from __future__ import annotations

from napari.layers import Image, Labels

from napari_medsam._qt.labels_layer import SOURCE_KEY
from napari_medsam.session.texts import NO_IMAGE_MESSAGE, no_volume_reason, opened_as_labels_reason


def image_layer_names(viewer) -> list[str]:
    """Names of all image layers, in layer-list order."""
    return [layer.name for layer in viewer.layers if isinstance(layer, Image)]


def is_volume(layer) -> bool:
    """Whether ``layer`` is a single-channel 3D image (z, y, x)."""
    return isinstance(layer, Image) and not layer.rgb and layer.ndim == 3


def default_image_name(viewer, names: list[str], current: str | None) -> str | None:
    """Keep ``current`` if it is still there, else the first 3D image, else the first image."""
    if current in names:
        return current
    volumes = [name for name in names if is_volume(viewer.layers[name])]
    return (volumes or names or [None])[0]


def labels_that_may_be_scans(viewer) -> list[str]:
    """Labels layers the user opened (not the widget's own): a scan the reader took for labels."""
    return [
        layer.name
        for layer in viewer.layers
        if isinstance(layer, Labels) and layer.ndim == 3 and SOURCE_KEY not in layer.metadata
        and "source_path" in layer.metadata
    ]


def unsupported_reason(layer, viewer=None) -> str | None:
    """A message for an image the widget cannot segment; None for a 3D volume.

    With no image at all, a file opened as labels is named, with the way to turn it
    into an image (issue: scans named like labels opened as labels, and the dock
    then had no image and no explanation).
    """
    if layer is None:
        candidates = labels_that_may_be_scans(viewer) if viewer is not None else []
        return opened_as_labels_reason(candidates[0]) if candidates else NO_IMAGE_MESSAGE
    if is_volume(layer):
        return None
    return no_volume_reason(layer.name, layer.ndim, tuple(layer.data.shape), layer.rgb)
