"""The autosaved session of one scan, without Qt: open, autosave, health messages."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from napari_medsam.session import LabelRegistry
from napari_medsam.session.autosave import SaveHealth
from napari_medsam.session.files import SessionFiles, scan_path

SHAPE = (3, 8, 8)


def _files():
    said = []
    files = SessionFiles(warn=lambda t: said.append(("warning", t)),
                         inform=lambda t: said.append(("info", t)))  # fmt: skip
    lines = []
    files.show_line = lines.append
    return files, said, lines


def test_scan_path_reads_reader_metadata_then_napari_source():
    assert scan_path(SimpleNamespace(metadata={"source_path": "/a/ct.nii.gz"})) == "/a/ct.nii.gz"
    image = SimpleNamespace(metadata={}, source=SimpleNamespace(path="/b/mr.nii"))
    assert scan_path(image) == "/b/mr.nii"
    assert scan_path(SimpleNamespace(metadata=None)) is None


def test_an_image_without_file_is_never_saved(tmp_path):
    files, said, lines = _files()
    state, labels_zyx = files.open(None, SHAPE, None)
    assert labels_zyx is None and state.shape_zyx == SHAPE and state.scan_path is None
    assert lines[-1] == "Session: not saved (no scan file). Hover here for help."
    files.autosave(np.zeros(SHAPE, np.uint16), state)
    assert files.saver is None and said == []


def test_a_new_scan_takes_names_from_its_sidecar_and_autosaves(tmp_path):
    scan = tmp_path / "ct.nii.gz"
    scan.write_bytes(b"")  # only its name matters here
    registry = LabelRegistry()
    registry.add("liver", 5)
    registry.save_sidecars(scan)
    files, said, lines = _files()
    affine = np.eye(4)
    state, labels_zyx = files.open(str(scan), SHAPE, affine, ask=lambda info: True)
    assert labels_zyx is None and state.registry.name(5) == "liver"
    assert state.affine_ras == tuple(np.eye(4).reshape(-1))
    assert "autosaves beside the scan" in lines[-1]
    files.autosave(np.zeros(SHAPE, np.uint16), state)
    try:
        assert files.saver is not None
    finally:
        files.close()
    assert files.saver is None


def test_a_failing_autosave_warns_once_and_its_recovery_is_announced():
    files, said, lines = _files()
    status = []
    files.show_status = status.append
    where = Path("/x/ct.medsam-session")
    files.show_health(SaveHealth(False, "disk full", where))
    files.show_health(SaveHealth(False, "disk full", where))
    assert said == [("warning", "MedSAM: the session is not being autosaved: disk full")]
    assert files.status_warning == "autosave FAILED: disk full"
    files.show_health(SaveHealth(True, "", where))
    assert said[-1] == ("info", f"MedSAM: autosave works again ({where})")
    assert files.status_warning == "" and status == ["", "autosave works again"]
    assert lines[-1] == "Session: autosaved in ct.medsam-session."


def test_health_of_a_closed_scans_saver_is_ignored():
    files, said, lines = _files()
    files.saver_health(SaveHealth(False, "gone", Path("/old.medsam-session")))  # no saver now
    assert said == [] and lines == []


def test_save_labels_writes_nifti_and_registers_every_id_with_sidecars(tmp_path):
    from napari_medsam.session.files import save_labels

    labels = np.zeros(SHAPE, np.uint16)
    labels[1, 2:4, 2:4] = 5
    labels[2, 0, 0] = 9
    registry = LabelRegistry()
    registry.add("liver", 5)
    written = save_labels(labels, registry, tmp_path / "out", {"scale": (2.0, 1.0, 1.0)})
    assert written == tmp_path / "out.nii.gz" and written.is_file()
    assert 9 in registry and registry.name(5) == "liver"
    assert LabelRegistry.load_sidecar(written).name(5) == "liver"
