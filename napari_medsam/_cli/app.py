"""``napari-medsam`` (no subcommand) and ``napari-medsam open SCAN``: the napari app.

Opens napari with the MedSAM widget docked, and either the synthetic CT
phantom sample or the given scan (read by this plugin's reader: NIfTI, NRRD,
MetaImage or a DICOM series folder).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

PLUGIN = "napari-medsam"
WIDGET_NAME = "MedSAM segmentation"
SAMPLE_KEY = "ct_phantom"
#: Share of the screen's free area (width and height) the window takes.
SCREEN_FRACTION = 1.0


def fit_window_to_screen(viewer, fraction: float = SCREEN_FRACTION) -> tuple[int, int, int, int]:
    """Size and centre the napari window on its screen; returns (left, top, width, height).

    napari opens at a fixed small size (about 1114 x 633), where the dock leaves the
    canvas a few hundred pixels; sized to the screen the scan gets most of the width.
    """
    from qtpy.QtWidgets import QApplication

    screen = QApplication.primaryScreen()
    if screen is None:  # pragma: no cover - no screen at all
        return viewer.window.geometry()
    free = screen.availableGeometry()
    width, height = int(free.width() * fraction), int(free.height() * fraction)
    left = free.x() + (free.width() - width) // 2
    top = free.y() + (free.height() - height) // 2
    viewer.window.set_geometry(left, top, width, height)
    return left, top, width, height


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``open SCAN``."""
    parser = subparsers.add_parser(
        "open",
        help="open a scan in napari with the MedSAM widget",
        description="Open a scan (.nii / .nii.gz, .nrrd, .mha / .mhd, or a DICOM series "
        "folder) in napari with the MedSAM widget docked.",
    )
    parser.add_argument("scan", type=Path, help="scan file or DICOM series folder")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    return run_app(args.scan)


def _pyqt5_notice_to_log() -> None:
    """napari 0.9 pops "PyQt5 backend is deprecated" over the middle of the scan at start.

    It is meant for developers (a user can do nothing with it at that moment), so the app
    logs it once instead; ``QT_API=pyqt6`` with PyQt6 >= 6.8 avoids it altogether.
    """
    try:
        from napari._qt import qt_main_window
    except ImportError:  # another napari layout: leave its notices alone
        return
    if getattr(qt_main_window, "SHOW_QT_WARNING", False):
        qt_main_window.SHOW_QT_WARNING = False
        logger.info("napari runs on PyQt5, which it deprecates; QT_API=pyqt6 with PyQt6 >= 6.8 "
                    "works too")  # fmt: skip


def build_viewer(path: str | Path | None = None, viewer=None):
    """Open the scan (or the phantom) in a viewer and dock the MedSAM widget.

    Parameters
    ----------
    path : str or Path, optional
        Scan (file or DICOM folder) to open with this plugin's reader; None opens the
        phantom sample.
    viewer : napari.Viewer, optional
        Viewer to use; by default a new one is created.

    Returns
    -------
    tuple
        ``(viewer, widget)``.

    The window is sized to the screen (:func:`fit_window_to_screen`) and the view
    reset so that the scan fills the canvas beside the dock.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (checked before any window opens).
    """
    if path is not None and not Path(path).exists():
        raise FileNotFoundError(f"no such file: {path}")
    if viewer is None:
        import napari

        _pyqt5_notice_to_log()
        viewer = napari.Viewer(title="napari-medsam")
    fit_window_to_screen(viewer)
    if path is None:
        viewer.open_sample(PLUGIN, SAMPLE_KEY)
    else:
        viewer.open(str(path), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET_NAME)
    viewer.reset_view()  # fit the scan to the canvas the dock leaves
    return viewer, widget


def run_app(path: str | Path | None = None, on_ready: Callable | None = None) -> int:
    """Run napari with the MedSAM widget until the window closes; returns 0.

    Parameters
    ----------
    path : str or Path, optional
        As for :func:`build_viewer`.
    on_ready : callable, optional
        Called as ``on_ready(viewer, widget)`` once both exist, before the event
        loop starts (the crash test's driver injects its engine and edits there).
    """
    import napari

    viewer, widget = build_viewer(path)
    if on_ready is not None:
        on_ready(viewer, widget)
    napari.run()
    return 0
