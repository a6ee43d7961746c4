"""The app entry points: the phantom sample or a scan, with the widget docked."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from napari_medsam import cli
from napari_medsam._cli.app import build_viewer


def test_app_opens_the_phantom_with_the_widget(make_napari_viewer):
    viewer, widget = build_viewer(None, viewer=make_napari_viewer())
    assert widget.image is not None and widget.image.ndim == 3
    assert "CT phantom" in viewer.layers
    assert widget.labels is not None and "clicks" in viewer.layers and "boxes" in viewer.layers
    # the sample's reference labels are hidden and stay separate from what the widget paints
    truth = viewer.layers["CT phantom reference"]
    assert widget.labels != truth and truth.data.any() and not widget.labels.data.any()
    assert not truth.visible and widget.labels.visible


def test_app_opens_a_scan_with_our_reader(make_napari_viewer, tmp_path):
    data_xyz = np.arange(20 * 24 * 6, dtype=np.int16).reshape(20, 24, 6)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data_xyz, np.diag([0.8, 0.8, 3.0, 1.0])), path)
    viewer, widget = build_viewer(path, viewer=make_napari_viewer())
    assert widget.image is not None and widget.image.data.shape[0] == 6  # slices first
    np.testing.assert_allclose(widget.image.scale[0], 3.0)
    assert widget.labels.data.shape == widget.image.data.shape


def test_open_missing_scan_is_one_clear_error(capsys):
    assert cli.main(["open", "/nonexistent/scan.nii.gz"]) == 2
    assert "no such file" in capsys.readouterr().err
