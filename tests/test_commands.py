"""The "Load checkpoint…" command: through the Plugins menu, with good and bad files."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeEngine

# napari's fixture swaps in a test app-model instance; this accessor returns it
from napari._app_model import get_app_model
from napari.utils.notifications import NotificationSeverity, notification_manager

from napari_medsam._qt import commands as _commands

COMMAND_ID = "napari-medsam.load_checkpoint"


@pytest.fixture(scope="module")
def tiny_sam_checkpoint(tmp_path_factory):
    """A tiny random SAM state dict, the kind of file a user fine-tuned."""
    from napari_medsam.model.triton_guard import keep_triton_away_from_mesa_llvm

    keep_triton_away_from_mesa_llvm()  # as the widget does before importing torch
    import torch

    from napari_medsam.model.registry import build_model
    from napari_medsam.model.sam import tiny_sam_config

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam.pth"
    torch.save({"model": build_model(tiny_sam_config()).state_dict()}, path)
    return path


@pytest.fixture
def viewer_with_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    ramp = (np.arange(4 * 32 * 32) % 400 - 200).reshape(4, 32, 32)  # not blank in any window
    viewer.add_image(ramp.astype(np.int16), name="vol")
    _, widget = viewer.window.add_plugin_dock_widget("napari-medsam", "MedSAM segmentation")
    widget.engine = FakeEngine()
    return viewer, widget


def _errors_since(n0):
    return [
        r for r in notification_manager.records[n0:] if r.severity == NotificationSeverity.ERROR
    ]


def _menu_command_ids(app, menu_id):
    return [i.command.id for i in app.menus.get_menu(menu_id) if hasattr(i, "command")]


def test_command_is_in_a_napari_menu(make_napari_viewer):
    make_napari_viewer()
    app = get_app_model()
    # Layers > Segment; the Plugins menu itself lists the widget
    assert COMMAND_ID in _menu_command_ids(app, "napari/layers/segment")
    assert "napari-medsam.widget" in _menu_command_ids(app, "napari/plugins")


def test_load_tiny_sam_checkpoint_replaces_the_model(
    qtbot, viewer_with_widget, tiny_sam_checkpoint
):
    viewer, widget = viewer_with_widget
    with qtbot.waitSignal(widget.model_runner.finished, timeout=30000):
        job = _commands.load_checkpoint(viewer, path=str(tiny_sam_checkpoint))
    assert job == widget.model_runner.job_id
    assert widget.engine.name.startswith("SAM custom")
    assert "tiny_sam.pth" in widget.controls.model_label.text()
    assert widget.engine.name in widget.controls.status_label.text()


@pytest.mark.parametrize("kind", ["garbage", "pickle", "missing", "nan"])
def test_bad_checkpoint_keeps_the_current_model(qtbot, viewer_with_widget, tmp_path, kind):
    viewer, widget = viewer_with_widget
    fake = widget.engine
    path = tmp_path / "bad.pth"
    if kind == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 100)
    elif kind == "pickle":
        import argparse

        import torch

        # arbitrary objects need unsafe unpickling, which weights_only refuses
        torch.save({"model": argparse.Namespace(weights=[1, 2])}, path)
    elif kind == "nan":  # loads, but fails the sanity pass (issue 12, item 10)
        import torch
        from bad_inputs import tiny_sam_state

        state = tiny_sam_state()
        state["mask_decoder.iou_token.weight"][0, 0] = float("nan")
        torch.save(state, path)
    n0 = len(notification_manager.records)
    with qtbot.waitSignal(widget.model_runner.failed, timeout=30000):
        _commands.load_checkpoint(viewer, path=str(path))
    errors = _errors_since(n0)
    assert len(errors) == 1 and "could not load the checkpoint" in errors[0].message
    assert "Keeping FakeEngine" in errors[0].message
    assert kind != "nan" or "NaN" in errors[0].message
    assert widget.engine is fake


def test_menu_command_gets_the_viewer_and_opens_a_dialog(
    qtbot, make_napari_viewer, monkeypatch, tiny_sam_checkpoint
):
    from qtpy.QtWidgets import QFileDialog

    viewer = make_napari_viewer()
    asked = []

    def fake_dialog(*args, **kwargs):
        asked.append(args)
        return str(tiny_sam_checkpoint), ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake_dialog))
    app = get_app_model()
    app.commands.execute_command(COMMAND_ID).result()
    assert asked  # no path given: the dialog was asked
    widget = _commands.find_widget(viewer, create=False)
    assert widget is not None  # the command docked the widget
    qtbot.waitUntil(lambda: widget.engine is not None, timeout=30000)
    assert widget.engine.name.startswith("SAM custom")


def test_cancelled_dialog_does_nothing(make_napari_viewer, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    viewer = make_napari_viewer()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    assert _commands.load_checkpoint(viewer) is None
    assert _commands.find_widget(viewer, create=False) is None


def test_medsa_checkpoint_runs_clicks_through_the_click_maps(
    qtbot, viewer_with_widget, tmp_path, monkeypatch
):
    """Load checkpoint… with a Med-SA file: the widget then runs Med-SA, and a click
    reaches both the click maps (click embedding) and the prompt encoder."""
    import torch

    from napari_medsam.model.medsa.build import backbone_spec, build_medsa
    from napari_medsam.model.medsa.checkpoint import save_medsa
    from napari_medsam.model.medsa.config import MedSAConfig, is_medsa_key
    from napari_medsam.model.medsa.engine import MedSAEngine

    torch.manual_seed(0)
    weights = backbone_spec("tiny_sam").builder().state_dict()
    model = build_medsa("tiny_sam", weights, MedSAConfig(backbone="tiny_sam"))
    with torch.no_grad():  # a "trained" click embedding, so clicks change the embedding
        for key, param in model.named_parameters():
            if is_medsa_key(key) and "click_embed" in key:
                param.copy_(torch.randn(param.shape) * 0.3)
    path = save_medsa(model, tmp_path / "medsa_tiny.pt", full=True)

    viewer, widget = viewer_with_widget
    with qtbot.waitSignal(widget.model_runner.finished, timeout=30000):
        _commands.load_checkpoint(viewer, path=str(path))
    engine = widget.engine
    assert isinstance(engine, MedSAEngine) and engine.clicks_change_embedding

    seen = []
    real_maps = engine.click_maps_tensor

    def spy(images, prompts):
        seen.append([p.points_yx.copy() for p in prompts])
        return real_maps(images, prompts)

    monkeypatch.setattr(engine, "click_maps_tensor", spy)
    image = viewer.layers["vol"]
    clicks = viewer.layers["clicks"]
    clicks.add(clicks.world_to_data(image.data_to_world((2, 10, 20))))
    qtbot.waitUntil(lambda: bool(seen), timeout=30000)
    qtbot.waitUntil(lambda: not widget.segment_runner.busy, timeout=30000)
    np.testing.assert_allclose(seen[0][0], [[10, 20]])
    assert engine.name in widget.controls.status_label.text()


@pytest.mark.slow
def test_menu_switches_between_the_box_only_and_the_default_model(qtbot, viewer_with_widget):
    viewer, widget = viewer_with_widget
    app = get_app_model()
    menu = _menu_command_ids(app, "napari/layers/segment")
    assert {"napari-medsam.use_box_only_model", "napari-medsam.use_default_model"} <= set(menu)
    with qtbot.waitSignal(widget.model_runner.finished, timeout=120000):
        _commands.use_box_only_model(viewer)
    assert widget.engine.name == "LiteMedSAM" and widget.engine.needs_box
    with qtbot.waitSignal(widget.model_runner.finished, timeout=120000):
        _commands.use_default_model(viewer)
    assert not widget.engine.needs_box and widget.engine.name == "LiteMedSAM + clicks"
