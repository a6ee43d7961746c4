"""Both voxel frames of the cursor in napari's status bar.

napari shows the cursor in world millimetres. The command line takes voxel indices:
``--box-zyx`` / ``--point-zyx`` in the display's (z, y, x) voxels, ``--box`` /
``--point`` in the file's own (i, j, k). The status bar gets both, e.g.
``voxel zyx [12 40 33] · file ijk [33 60 12]``. GUI thread only.
"""

from __future__ import annotations

from napari_medsam.session import texts


def voxel_text(image, position_world) -> str | None:
    """:func:`napari_medsam.session.texts.voxel_text` of a world position in ``image`` (or None)."""
    if image is None or image.ndim != 3 or len(position_world) < 3:
        return None
    zyx = image.world_to_data(position_world[-3:])
    return texts.voxel_text(zyx, tuple(image.data.shape), image.metadata)


class CursorStatus:
    """Appends :func:`voxel_text` to napari's status after napari has set it."""

    def __init__(self, widget) -> None:
        self.widget = widget
        # connected after the viewer's own handler, so this runs second
        widget.viewer.cursor.events.position.connect(self._on_cursor_position)

    def _on_cursor_position(self, event=None) -> None:
        viewer = self.widget.viewer
        status = viewer.status
        if not isinstance(status, dict):
            return
        text = voxel_text(self.widget.image, viewer.cursor.position)
        if text is None:
            return
        coordinates = status.get("coordinates", "")
        if text not in coordinates:
            viewer.status = {**status, "coordinates": f"{coordinates}  ·  {text}"}

    def disconnect(self) -> None:
        self.widget.viewer.cursor.events.position.disconnect(self._on_cursor_position)
