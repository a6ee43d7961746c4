"""The GUI face of a scan's autosaved session (:class:`napari_medsam.session.files.SessionFiles`).

Its warnings and notices become napari notifications, and the saver thread's health
changes reach the GUI thread through a queued Qt signal. GUI thread only.
"""

from __future__ import annotations

from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject, Signal, Slot

from napari_medsam.session.autosave import SaveHealth
from napari_medsam.session.files import SessionFiles


class _HealthRelay(QObject):
    """Carries the saver thread's health changes to the GUI thread (queued signal)."""

    changed = Signal(object)

    def __init__(self, files: SessionFiles) -> None:
        super().__init__()
        self._files = files
        self.changed.connect(self._on_changed)

    @Slot(object)
    def _on_changed(self, health: SaveHealth) -> None:
        self._files.saver_health(health)


def gui_session_files() -> SessionFiles:
    """A :class:`SessionFiles` that notifies through napari and relays health to the GUI thread."""
    # looked up at each call, so tests can replace show_warning / show_info here
    files = SessionFiles(warn=lambda text: show_warning(text), inform=lambda text: show_info(text))
    files.relay = _HealthRelay(files)  # kept alive with the files
    files.on_saver_health = files.relay.changed.emit  # from the saver thread, queued
    return files
