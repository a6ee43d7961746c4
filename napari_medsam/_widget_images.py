"""Which image layers the MedSAM widget can segment, and what to say about the others."""

from __future__ import annotations

from napari.layers import Image

NO_IMAGE_MESSAGE = "Open a 3D CT or MR scan (File > Open, or File > Open Sample)."


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


def unsupported_reason(layer) -> str | None:
    """A message for an image the widget cannot segment; None for a 3D volume."""
    if layer is None:
        return NO_IMAGE_MESSAGE
    if is_volume(layer):
        return None
    kind = "an RGB image" if layer.rgb else f"{layer.ndim}D {tuple(layer.data.shape)}"
    return f"'{layer.name}' is {kind}: MedSAM needs a 3D volume (z, y, x). Choose a 3D image layer."
