"""napari-medsam: click and box segmentation of 3D medical scans in napari.

Importing the package pulls in neither torch nor Qt; those load lazily where
they are needed.
"""

__version__ = "0.1.0"
