"""Menu commands of the plugin (``Plugins > MedSAM interactive segmentation``).

napari runs npe2 command contributions through app-model, which injects the
arguments it can provide by type annotation: ``viewer: napari.viewer.Viewer``
receives the current viewer. The annotation is kept unquoted (no postponed
evaluation in this module) so that it resolves to the real class.
"""

import logging

import napari.viewer

logger = logging.getLogger(__name__)

PLUGIN = "napari-medsam"
WIDGET_NAME = "MedSAM segmentation"


def find_widget(viewer, create: bool = True):
    """The docked :class:`~napari_medsam._qt.dock.MedSamWidget` (docking one if asked)."""
    from napari_medsam._qt.dock import MedSamWidget

    for widget in viewer.window.dock_widgets.values():
        if isinstance(widget, MedSamWidget):
            return widget
    if not create:
        return None
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET_NAME)
    return widget


def load_checkpoint(viewer: napari.viewer.Viewer, path: str | None = None):
    """Load a model checkpoint into the MedSAM widget, off the GUI thread.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Injected by napari when run from the Plugins menu.
    path : str, optional
        Checkpoint file; None opens a file dialog. A wrong, corrupt or pickled
        file gives an error notification and the current model stays in use.

    Returns
    -------
    int or None
        Job id of the load on the widget's model runner; None if cancelled.
    """
    if path is None:
        from napari_medsam._qt.dialogs import ask_checkpoint_path

        path = ask_checkpoint_path()
        if path is None:
            return None
    widget = find_widget(viewer)
    logger.info("loading checkpoint %s", path)
    return widget.load_checkpoint(path)


def use_box_only_model(viewer: napari.viewer.Viewer):
    """Switch the MedSAM widget to the bundled LiteMedSAM alone (boxes only)."""
    from napari_medsam.model.click.default import PLAIN_LITEMEDSAM

    return find_widget(viewer).load_checkpoint(PLAIN_LITEMEDSAM)


def use_default_model(viewer: napari.viewer.Viewer):
    """Switch the MedSAM widget back to the default (LiteMedSAM + the click decoder)."""
    return find_widget(viewer).load_checkpoint(None)
