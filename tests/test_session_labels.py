"""Label registry: presets, next free id, locks, sidecar round trips (JSON, ITK-SNAP, Slicer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_medsam.session.labels import LabelInfo, LabelRegistry, sidecar_paths, sidecar_stem
from napari_medsam.session.presets import TOTALSEGMENTATOR_NAMES, default_color, preset_id

CLASSES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg_ct_full" / "classes.json"
)


@pytest.mark.skipif(not CLASSES.is_file(), reason="shared data folder not present")
def test_presets_match_totalsegmentator_classes():
    classes = {int(k): v for k, v in json.loads(CLASSES.read_text()).items()}
    assert classes == TOTALSEGMENTATOR_NAMES


def test_add_uses_preset_id_then_next_free_id():
    reg = LabelRegistry()
    liver = reg.add("liver")
    assert (liver.id, liver.name) == (5, "liver")
    assert reg.add("Urinary bladder").id == 21  # case and spaces tolerated
    assert reg.add("my tumour").id == 1  # not a preset: first free id
    assert reg.add("spleen").id == 2  # preset id 1 taken: next free
    assert reg.next_free_id() == 3
    assert reg.add(label_id=7).name == "pancreas"
    with pytest.raises(ValueError, match="already exists"):
        reg.add("x", label_id=5)
    with pytest.raises(ValueError):
        reg.add("x", label_id=0)


def test_locks_and_sync_with_volume():
    reg = LabelRegistry()
    reg.add("liver")
    reg.set_locked(5)
    assert reg.locked_ids() == {5}
    reg.set_locked(5, False)
    assert reg.locked_ids() == frozenset()
    vol = np.zeros((2, 3, 3), np.uint8)
    vol[0, 0, 0], vol[1, 1, 1], vol[1, 2, 2] = 5, 1, 200
    assert reg.sync_with(vol) == [1, 200]
    assert reg.name(1) == "spleen" and reg.name(200) == "label 200"
    assert reg.name(999) == "label 999"


def test_default_colors_are_deterministic_and_distinct():
    colors = {default_color(i) for i in range(1, 118)}
    assert len(colors) > 100
    assert default_color(42) == default_color(42)
    assert all(0 <= c <= 255 for rgb in colors for c in rgb)


def _registry():
    reg = LabelRegistry()
    reg.add("liver")
    reg.add("kidney_left")
    reg.add('odd "name" here')
    reg.set_locked(5)
    reg.set_visible(3, False)
    reg.set_color(1, (1, 2, 3))
    return reg


def test_sidecar_names():
    assert sidecar_stem("/a/b/scan.nii.gz") == Path("/a/b/scan")
    assert sidecar_stem("/a/b/scan.NII") == Path("/a/b/scan")
    paths = sidecar_paths("/a/b/scan_labels.nii.gz")
    assert paths["json"].name == "scan_labels.labels.json"
    assert paths["itksnap"].name == "scan_labels.label.txt"
    assert paths["slicer"].name == "scan_labels.ctbl"


def test_json_sidecar_round_trip(tmp_path):
    reg = _registry()
    written = reg.save_sidecars(tmp_path / "seg.nii.gz")
    assert all(p.is_file() for p in written.values())
    back = LabelRegistry.load_sidecar(tmp_path / "seg.nii.gz")
    assert back == reg
    assert back.locked_ids() == {5}


def test_itksnap_round_trip_keeps_ids_names_colors_visibility(tmp_path):
    reg = _registry()
    text = reg.to_itksnap()
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines[0].split()[0] == "0" and '"Clear Label"' in lines[0]
    back = LabelRegistry.from_itksnap(text)
    assert [i.id for i in back] == [1, 3, 5]
    for info in reg:
        other = back[info.id]
        assert other.color == info.color and other.visible == info.visible
    assert back[5].name == "liver"
    assert back[1].name == "odd 'name' here"
    # without the JSON the ITK-SNAP file is read (locks are not part of that format)
    reg.save_sidecars(tmp_path / "seg.nii")
    sidecar_paths(tmp_path / "seg.nii")["json"].unlink()
    fallback = LabelRegistry.load_sidecar(tmp_path / "seg.nii")
    assert fallback.ids() == [1, 3, 5] and fallback.locked_ids() == frozenset()
    assert LabelRegistry.load_sidecar(tmp_path / "none.nii.gz") is None


def test_itksnap_rejects_garbage():
    with pytest.raises(ValueError, match="ITK-SNAP"):
        LabelRegistry.from_itksnap("1 2 3\n")


def test_slicer_color_table_lines():
    reg = _registry()
    rows = [ln.split() for ln in reg.to_slicer_ctbl().splitlines() if not ln.startswith("#")]
    assert rows[0] == ["0", "Background", "0", "0", "0", "0"]
    by_id = {int(r[0]): r for r in rows[1:]}
    assert by_id[5] == ["5", "liver", "221", "130", "101", "255"]
    assert by_id[1][1] == 'odd_"name"_here' and len(by_id[1]) == 6


def test_label_info_from_dict_defaults_color():
    info = LabelInfo.from_dict({"id": 5, "name": "liver"})
    assert info.color == default_color(5) and not info.locked and info.visible
    assert preset_id("nonexistent organ") is None


def test_session_package_is_pure_python_numpy():
    import ast

    forbidden = {
        "qtpy",
        "PyQt5",
        "PyQt6",
        "PySide2",
        "PySide6",
        "napari",
        "magicgui",
        "superqt",
        "vispy",
        "torch",
    }
    root = Path(__file__).resolve().parents[1] / "napari_medsam" / "session"
    files = sorted(root.glob("*.py"))
    assert len(files) >= 6
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & forbidden, (path.name, names)


def test_a_preset_name_brings_its_preset_colour_unless_the_user_chose_one():
    from napari_medsam.session.presets import default_color, preset_id

    registry = LabelRegistry()
    registry.add("label 1", 1)
    assert registry[1].color == default_color(1)
    registry.rename(1, "liver")  # automatic colour: follows the organ, not the id
    assert registry[1].color == default_color(preset_id("liver")) != default_color(1)
    registry.add("liver", 7)
    assert registry[7].color == default_color(preset_id("liver"))
    registry.set_color(1, (1, 2, 3))
    registry.rename(1, "spleen")  # the user's colour stays
    assert registry[1].color == (1, 2, 3)
    registry.rename(7, "my tumour")  # back to the id's colour
    assert registry[7].color == default_color(7)


def test_the_name_menu_lists_every_class_once_common_organs_first():
    from napari_medsam.session.presets import COMMON_ABDOMINAL, TOTALSEGMENTATOR_NAMES, menu_names

    names = menu_names()
    assert names[0] == "liver" and names[1] == "spleen"  # COMMON_ABDOMINAL's order
    assert names[: len(COMMON_ABDOMINAL)] == [TOTALSEGMENTATOR_NAMES[i] for i in COMMON_ABDOMINAL]
    assert sorted(names) == sorted(TOTALSEGMENTATOR_NAMES.values())


def test_registry_colors_keep_the_cycle_for_unregistered_ids():
    from napari_medsam.session.labels import LabelRegistry, UNLISTED_RGBA, registry_colors

    cycle = np.array([[0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]], float)
    registry = LabelRegistry()
    registry.add("liver", 5)
    registry.set_color(5, (255, 0, 51))
    registry.add("hidden", 6)
    registry.set_visible(6, False)
    colors = registry_colors(registry, cycle, max_id=300)
    assert colors[None] == UNLISTED_RGBA and colors[0][3] == 0.0
    assert len(colors) == 2 + 300  # ids 1..max(255, 300)
    assert colors[1] == (1, 0, 0, 1) and colors[4] == (1, 0, 0, 1)  # the cycle skips row 0
    assert colors[5] == (1.0, 0.0, 0.2, 1.0) and colors[6][3] == 0.0
    assert len(registry_colors(LabelRegistry(), cycle, max_id=10**6)) == 2 + 4095


def test_set_name_registers_renames_and_ignores_empty_or_same_names():
    from napari_medsam.session.labels import LabelRegistry

    registry = LabelRegistry()
    assert not registry.set_name(3, "  ") and 3 not in registry
    assert registry.set_name(3, " my tumour ") and registry.name(3) == "my tumour"
    assert not registry.set_name(3, "my tumour")
    assert registry.set_name(3, "kidney_left") and registry.name(3) == "kidney_left"
