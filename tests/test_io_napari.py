"""The npe2 reader/writer hooks and the sample data, without a viewer."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import npe2
import numpy as np
import pytest

from napari_medsam.io.napari_reader import looks_like_labels, napari_get_reader
from napari_medsam.io.napari_writer import write_labels
from napari_medsam.io.nifti import NiftiError, load_nifti
from napari_medsam.io.phantom import make_sample_data

LPS_AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])


def _ct_file(tmp_path: Path, name="scan.nii.gz") -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 400, size=(12, 10, 6)).astype(np.int16)
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, LPS_AFFINE), path)
    return path


@pytest.mark.parametrize(
    "path",
    [
        None,
        123,
        b"scan.nii.gz",
        {"a": 1},
        [],
        "scan.png",
        "archive.gz",
        "scan.nii.gz.bak",
        "folder/",
        ["a.nii.gz", "b.tif"],
        Path("scan.tif"),
        object(),
    ],
)
def test_get_reader_declines_non_nifti(path):
    assert napari_get_reader(path) is None


@pytest.mark.parametrize(
    "path", ["a.nii", "a.NII.GZ", Path("x/a.nii.gz"), ["a.nii.gz"], "a.nrrd", "b.MHA", "c.mhd"]
)
def test_get_reader_accepts_nifti_names(path):
    assert callable(napari_get_reader(path))


def test_reader_makes_a_ct_image_layer(tmp_path):
    path = _ct_file(tmp_path)
    [(data, kwargs, layer_type)] = napari_get_reader(str(path))(str(path))
    assert layer_type == "image"
    assert data.shape == (6, 10, 12) and data.dtype == np.int16
    assert kwargs["name"] == "scan"
    assert kwargs["scale"] == pytest.approx((2.5, 0.8, 0.8))
    assert kwargs["colormap"] == "gray"
    assert kwargs["contrast_limits"] == (-160.0, 240.0)
    assert kwargs["axis_labels"] == ("axial", "coronal", "sagittal")  # not napari's "-3"
    meta = kwargs["metadata"]
    np.testing.assert_allclose(meta["affine_ras"], LPS_AFFINE, atol=1e-6)
    assert meta["file_shape"] == (12, 10, 6)
    assert meta["source_path"] == str(path)


def test_reader_makes_labels_layer_from_name_or_few_values(tmp_path):
    seg = np.zeros((8, 8, 8), np.uint8)
    seg[2:5, 2:5, 2:5] = 3
    for name in ("liver_seg.nii.gz", "thing.nii.gz"):
        nib.save(nib.Nifti1Image(seg, np.eye(4)), tmp_path / name)
        [(data, kwargs, layer_type)] = napari_get_reader(str(tmp_path / name))(str(tmp_path / name))
        assert layer_type == "labels", name
        assert "contrast_limits" not in kwargs
        assert kwargs["metadata"]["file_shape"] == (8, 8, 8)


def test_labels_heuristics():
    mr8 = (np.arange(4096) % 200).astype(np.uint8).reshape(16, 16, 16)
    assert not looks_like_labels(mr8, "ch2")  # 8-bit image, no name hint
    atlas = np.repeat(np.repeat(mr8[:, :2, :2], 8, axis=1), 8, axis=2)  # flat regions
    assert looks_like_labels(atlas, "aal")  # atlas with many labels
    assert looks_like_labels(atlas, "ROI_map")  # piecewise constant without a name hint
    # images named like labels (issue 12 item 8): their voxels vary from neighbour to neighbour
    for name in ("brain_masked", "atlas_t1", "seg_t1", "t1_mask", "labels_ct"):
        assert not looks_like_labels(mr8, name), name
    assert not looks_like_labels(mr8.astype(np.float32), "seg")  # floats are images
    assert not looks_like_labels(mr8.astype(np.int16) - 100, "mask")  # negatives
    assert looks_like_labels((mr8 > 100).astype(np.int16), "x")  # binary mask


def test_corrupt_nifti_raises_nifti_error(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    reader = napari_get_reader(str(bad))
    assert reader is not None
    with pytest.raises(NiftiError, match="bad.nii.gz"):
        reader(str(bad))


def test_writer_restores_the_source_grid(tmp_path):
    path = _ct_file(tmp_path)
    [(data, kwargs, _)] = napari_get_reader(str(path))(str(path))
    labels = (data > 0).astype(np.int32) * 2
    attributes = {"name": "seg", "scale": kwargs["scale"], "metadata": kwargs["metadata"]}
    out = tmp_path / "seg.nii.gz"
    assert write_labels(str(out), labels, attributes) == [str(out)]
    back = nib.load(out)
    np.testing.assert_allclose(back.affine, LPS_AFFINE, atol=1e-6)
    src = np.asarray(nib.load(path).dataobj)
    np.testing.assert_array_equal(np.asarray(back.dataobj), (src > 0).astype(np.uint8) * 2)


def test_writer_without_source_grid_uses_scale(tmp_path, caplog):
    labels = np.zeros((5, 6, 7), np.uint8)
    labels[4, 1, 2] = 9
    out = tmp_path / "new.nii"
    with caplog.at_level(logging.WARNING, logger="napari_medsam.io.napari_writer"):
        write_labels(str(out), labels, {"name": "new", "scale": (3.0, 0.5, 0.7), "metadata": {}})
    assert "no source image grid" in caplog.text
    vol = load_nifti(out)
    np.testing.assert_array_equal(vol.data_zyx, labels)  # reopens aligned
    assert vol.spacing_zyx_mm == pytest.approx((3.0, 0.5, 0.7))


def test_writer_refuses_2d_and_mismatched_shapes(tmp_path):
    meta = {"scale": (1, 1), "metadata": {}}
    with pytest.raises(NiftiError, match="3D"):
        write_labels(str(tmp_path / "a.nii"), np.zeros((4, 4), np.uint8), meta)
    [(_, img_kwargs, _)] = napari_get_reader(str(_ct_file(tmp_path)))(str(tmp_path / "scan.nii.gz"))
    with pytest.raises(NiftiError, match="does not match"):
        write_labels(str(tmp_path / "b.nii"), np.zeros((6, 10, 11), np.uint8), img_kwargs)


def test_sample_data_saves_and_reopens_aligned(tmp_path):
    (image, image_kwargs, image_type), (labels, labels_kwargs, labels_type) = make_sample_data()
    assert (image_type, labels_type) == ("image", "labels")
    assert image.dtype == np.int16 and labels.dtype == np.uint8
    assert image_kwargs["scale"] == labels_kwargs["scale"] == (4.0, 1.0, 1.0)
    assert image_kwargs["contrast_limits"] == (-160.0, 240.0)
    assert labels_kwargs["metadata"]["label_names"][1] == "liver"
    assert labels_kwargs["visible"] is False  # the scan opens unsegmented (issue 14 item 4)
    assert labels_kwargs["metadata"] is not image_kwargs["metadata"]
    out = tmp_path / "phantom_labels.nii.gz"
    write_labels(str(out), labels, labels_kwargs)
    vol = load_nifti(out)
    np.testing.assert_array_equal(vol.data_zyx, labels)
    assert vol.spacing_zyx_mm == pytest.approx((4.0, 1.0, 1.0))


def test_npe2_picks_our_reader_and_writer(tmp_path):
    pm = npe2.PluginManager.instance()
    pm.discover()
    assert "napari-medsam" in {m.name for m in pm.iter_manifests()}
    path = _ct_file(tmp_path, "discover.nii.gz")
    # napari's builtins also list *.nii.gz (through imageio, which cannot read it here);
    # napari offers every compatible reader, ours among them.
    compatible = [r.plugin_name for r in pm.iter_compatible_readers([str(path)])]
    assert "napari-medsam" in compatible
    layers, reader = npe2.read_get_reader(str(path), plugin_name="napari-medsam")
    assert reader.plugin_name == "napari-medsam"
    [(data, kwargs, layer_type)] = layers
    assert layer_type == "image" and data.shape == (6, 10, 12)
    assert kwargs["metadata"]["file_shape"] == (12, 10, 6)
    # A gzip file that is not NIfTI is not claimed by our reader.
    plugins = {r.plugin_name for r in pm.iter_compatible_readers([str(tmp_path / "x.csv.gz")])}
    assert "napari-medsam" not in plugins

    labels = (data > 0).astype(np.uint8)
    out = tmp_path / "written.nii.gz"
    written, writer = npe2.write_get_writer(
        str(out),
        [(labels, {"metadata": kwargs["metadata"], "scale": kwargs["scale"]}, "labels")],
        plugin_name="napari-medsam",
    )
    assert writer.plugin_name == "napari-medsam"
    assert [Path(p) for p in written] == [out]
    np.testing.assert_allclose(nib.load(out).affine, LPS_AFFINE, atol=1e-6)


def test_napari_layers_accept_our_tuples_and_save_through_the_writer(tmp_path):
    layers_mod = pytest.importorskip("napari.layers")
    npe2.PluginManager.instance().discover()  # what napari does at start-up
    path = _ct_file(tmp_path, "viewer.nii.gz")
    [(data, kwargs, layer_type)] = napari_get_reader(str(path))(str(path))
    image = layers_mod.Layer.create(data, kwargs, layer_type)
    assert tuple(image.scale) == pytest.approx((2.5, 0.8, 0.8))
    assert tuple(image.contrast_limits) == (-160.0, 240.0)
    # A labels layer made from the image carries its metadata, as the widget does.
    labels = layers_mod.Labels(
        (data > 0).astype(np.uint8), scale=image.scale, metadata=dict(image.metadata)
    )
    out = tmp_path / "viewer_seg.nii.gz"
    written = labels.save(str(out), plugin="napari-medsam")
    assert [Path(p) for p in written] == [out]
    back = nib.load(out)
    np.testing.assert_allclose(back.affine, LPS_AFFINE, atol=1e-6)
    np.testing.assert_array_equal(
        np.asarray(back.dataobj), (np.asarray(nib.load(path).dataobj) > 0).astype(np.uint8)
    )


def _registry_record(names_by_id: dict[int, str]) -> dict:
    from napari_medsam.session import LabelRegistry

    registry = LabelRegistry()
    for label_id, name in names_by_id.items():
        registry.add(name, label_id, color=(1, 2, 3))
    return registry.to_dict()


def test_writer_writes_label_sidecars_from_the_layer_metadata(tmp_path):
    from napari_medsam.session import LabelRegistry
    from napari_medsam.session.labels import LAYER_METADATA_KEY, sidecar_paths

    path = _ct_file(tmp_path)
    [(data, kwargs, _)] = napari_get_reader(str(path))(str(path))
    labels = np.zeros(data.shape, np.uint16)
    labels[1, 2, 3], labels[2, 2, 3] = 7, 5  # 5 is not in the registry
    metadata = {**kwargs["metadata"], LAYER_METADATA_KEY: _registry_record({7: "my tumour"})}
    out = tmp_path / "seg.nii.gz"
    assert write_labels(str(out), labels, {"name": "seg", "metadata": metadata}) == [str(out)]
    back = LabelRegistry.load_sidecar(out)
    assert back.ids() == [5, 7]
    assert back.name(7) == "my tumour" and back[7].color == (1, 2, 3)
    assert back.name(5) == "liver"  # TotalSegmentator's name for an unnamed id
    paths = sidecar_paths(out)
    assert '"my tumour"' in paths["itksnap"].read_text()
    assert "7 my_tumour 1 2 3 255" in paths["slicer"].read_text()
    assert [d["id"] for d in metadata[LAYER_METADATA_KEY]["labels"]] == [7]  # layer unchanged


def test_writer_without_a_registry_writes_no_sidecars(tmp_path):
    from napari_medsam.session.labels import sidecar_paths

    path = _ct_file(tmp_path)
    [(data, kwargs, _)] = napari_get_reader(str(path))(str(path))
    out = tmp_path / "plain.nii.gz"
    write_labels(str(out), (data > 0).astype(np.uint8), kwargs)
    assert out.is_file() and not any(p.exists() for p in sidecar_paths(out).values())


def test_writer_with_a_bad_registry_keeps_the_nifti_and_says_why(tmp_path, caplog):
    from napari_medsam.session.labels import LAYER_METADATA_KEY, sidecar_paths

    labels = np.zeros((4, 5, 6), np.uint8)
    meta = {"name": "seg", "scale": (1, 1, 1), "metadata": {LAYER_METADATA_KEY: {"format": "x"}}}
    out = tmp_path / "bad_names.nii.gz"
    with caplog.at_level(logging.WARNING, logger="napari_medsam.io.napari_writer"):
        assert write_labels(str(out), labels, meta) == [str(out)]
    assert out.is_file() and not sidecar_paths(out)["json"].exists()
    assert "not a label registry" in caplog.text and "without label names" in caplog.text


def test_napari_layer_save_writes_sidecars(tmp_path):
    layers_mod = pytest.importorskip("napari.layers")
    from napari_medsam.session import LabelRegistry
    from napari_medsam.session.labels import LAYER_METADATA_KEY

    npe2.PluginManager.instance().discover()
    path = _ct_file(tmp_path, "layer.nii.gz")
    [(data, kwargs, _)] = napari_get_reader(str(path))(str(path))
    metadata = {**kwargs["metadata"], LAYER_METADATA_KEY: _registry_record({1: "spleen tip"})}
    labels = layers_mod.Labels((data > 0).astype(np.uint8), metadata=metadata)
    out = tmp_path / "layer_seg.nii.gz"
    assert [Path(p) for p in labels.save(str(out), plugin="napari-medsam")] == [out]
    assert LabelRegistry.load_sidecar(out).name(1) == "spleen tip"
