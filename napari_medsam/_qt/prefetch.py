"""Background embedding: the slices next to a click's result, and "Embed nearby slices".

After a click's result is painted, :class:`Prefetcher` embeds the neighbouring slices on
its own low-priority runner once the user pauses, so the next click there is fast. Every
new prompt cancels it, between slices. GUI thread only; the work is
:func:`napari_medsam.tasks.jobs.embed_job`.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer

from napari_medsam._qt.workers import JobRunner
from napari_medsam.tasks.jobs import embed_job

EMBED_AROUND = 20  # slices "Embed nearby slices" precomputes around the current one
PREFETCH_DZ = (1, -1, 2, -2)  # after a click's result: embed these neighbours, if idle
PREFETCH_IDLE_MS = 400  # ... once no prompt came for this long (clicks in a row go first)


class Prefetcher:
    """Embeds the neighbours of the last result's slice while the user pauses.

    Parameters
    ----------
    widget : MedSamWidget
        Its engine holder, image layer and model window are used.
    """

    def __init__(self, widget) -> None:
        self.w = widget
        self.runner = JobRunner("prefetch", widget)  # low priority: its own runner
        self._timer = QTimer(widget)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREFETCH_IDLE_MS)
        self._z: int | None = None
        self._timer.timeout.connect(lambda: self.run(self._z))

    def schedule(self, z: int) -> None:
        """A result was painted on slice ``z``: embed its neighbours once the user pauses."""
        self._z = int(z)
        self._timer.start()

    def pending(self) -> bool:
        """True while a prefetch is scheduled or running."""
        return self._timer.isActive() or self.runner.busy

    def cancel(self) -> None:
        self._timer.stop()
        self.runner.cancel()

    def run(self, z: int | None) -> int | None:
        """Embed the slices next to ``z`` now (cancelled between slices); the job id or None."""
        w = self.w
        if z is None or w.image is None or w.engine is None:
            return None
        zs = [z + dz for dz in PREFETCH_DZ]
        task = embed_job(w.holder, w.image.data, w.current_window(), zs, w._volume_key())
        return self.runner.submit(task)


def embed_nearby_task(widget):
    """The task of "Embed nearby slices": ~20 slices around the one in view, or None."""
    if widget.image is None:
        return None
    z = int(np.round(widget.image.world_to_data(widget.viewer.dims.point)[0]))
    zs = range(z - EMBED_AROUND // 2, z + EMBED_AROUND // 2)
    window, key = widget.current_window(), widget._volume_key()
    return embed_job(widget.holder, widget.image.data, window, zs, key)
