"""NIfTI input/output (nibabel + numpy only) and the synthetic CT phantom.

Modules: :mod:`~napari_medsam.io.nifti` (load for display, save labels on the source
grid), :mod:`~napari_medsam.io.orientation` (file <-> display index maps),
:mod:`~napari_medsam.io.napari_reader` / :mod:`~napari_medsam.io.napari_writer` (npe2
hooks), :mod:`~napari_medsam.io.phantom` (sample data). Nothing is imported here so that
``import napari_medsam.io`` stays cheap.
"""
