"""Subcommands of the ``napari-medsam`` command line (one module each)."""
