"""The napari face of napari-medsam: the dock widget, its controls and dialogs, the prompt
and labels layers, the session view and the one worker module.

Nothing outside this package (and the ``app`` / ``bench`` commands that open a viewer)
imports Qt or napari; the work is done by :mod:`napari_medsam.tasks` and
:mod:`napari_medsam.session`.
"""
