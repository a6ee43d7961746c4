"""Both voxel frames of the cursor in napari's status bar.

napari shows the cursor in world millimetres. The command line takes voxel indices:
``--box-zyx`` / ``--point-zyx`` in the display's (z, y, x) voxels, ``--box`` /
``--point`` in the file's own (i, j, k). The status bar gets both, e.g.
``voxel zyx [12 40 33] · file ijk [33 60 12]``. GUI thread only.
"""

from __future__ import annotations

import numpy as np

from napari_medsam.io.orientation import zyx_to_file_ijk

_GRID_KEYS = ("ornt", "file_shape")


def voxel_text(image, position_world) -> str | None:
    """``"voxel zyx [z y x] · file ijk [i j k]"`` for a world position inside ``image``.

    Parameters
    ----------
    image : napari Image
        The 3D image being segmented (its metadata holds the source grid, if any).
    position_world : sequence of float
        The cursor in world coordinates (napari's ``viewer.cursor.position``).

    Returns
    -------
    str or None
        None outside the volume; only the display voxels when the image has no file grid.
    """
    if image is None or image.ndim != 3 or len(position_world) < 3:
        return None
    zyx = np.round(np.asarray(image.world_to_data(position_world[-3:]), float)).astype(int)
    shape = np.asarray(image.data.shape)
    if np.any(zyx < 0) or np.any(zyx >= shape):
        return None
    text = f"voxel zyx [{zyx[0]} {zyx[1]} {zyx[2]}]"
    meta = image.metadata
    if all(k in meta for k in _GRID_KEYS):
        try:
            i, j, k = (int(v) for v in zyx_to_file_ijk(zyx, meta))
        except ValueError:
            return text
        text += f" · file ijk [{i} {j} {k}]"
    return text


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
